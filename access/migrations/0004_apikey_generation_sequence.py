"""The revocation generation in PostgreSQL, for processes without a shared cache (access/keys.py)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0003_api_key_release"),
    ]

    operations = [
        migrations.RunSQL(
            "CREATE SEQUENCE IF NOT EXISTS access_apikey_generation",
            "DROP SEQUENCE IF EXISTS access_apikey_generation",
        ),
    ]
