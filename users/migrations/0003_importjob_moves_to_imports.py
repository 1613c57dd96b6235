"""ImportJob moves to the imports app (imports/migrations/0001_initial.py): the state only, the
table ``users_importjob`` stays where it is."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ('imports', '0001_initial'),
        ('users', '0002_importjob'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name='ImportJob')],
            database_operations=[],
        ),
    ]
