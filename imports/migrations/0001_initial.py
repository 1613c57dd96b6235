"""ImportJob moves from the users app to this one: the model's state only, its table stays
``users_importjob`` (nothing in the database changes but the content type's app label)."""

import uuid

import django.db.models.deletion
from django.db import migrations, models


def content_type_to(app_label):
    def move(apps, schema_editor):
        ContentType = apps.get_model("contenttypes", "ContentType")
        old = "imports" if app_label == "users" else "users"
        if not ContentType.objects.filter(app_label=app_label, model="importjob").exists():
            ContentType.objects.filter(app_label=old, model="importjob").update(app_label=app_label)

    return move


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('tenants', '0003_tenant_deleted_at'),
        ('users', '0002_importjob'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='ImportJob',
                    fields=[
                        ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ('created_by', models.CharField(blank=True, default='', max_length=200)),
                        ('file_name', models.CharField(blank=True, default='', max_length=255)),
                        ('content', models.BinaryField(help_text='The uploaded file, kept until the job is purged.')),
                        ('format', models.CharField(choices=[('csv', 'CSV'), ('jsonl', 'JSON Lines')], max_length=8)),
                        ('mode', models.CharField(choices=[('atomic', 'Atomic'), ('partial', 'Partial')], default='atomic', max_length=8)),
                        ('dry_run', models.BooleanField(default=False)),
                        ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed')], default='queued', max_length=16)),
                        ('rows', models.PositiveIntegerField(default=0)),
                        ('created', models.PositiveIntegerField(default=0)),
                        ('updated', models.PositiveIntegerField(default=0)),
                        ('unchanged', models.PositiveIntegerField(default=0)),
                        ('invalid', models.PositiveIntegerField(default=0)),
                        ('written', models.BooleanField(default=False)),
                        ('error', models.TextField(blank=True, default='', help_text='Why the file could not be imported at all.')),
                        ('report', models.TextField(blank=True, default='', help_text='The error report (CSV).')),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='import_jobs', to='tenants.tenant')),
                    ],
                    options={
                        'db_table': 'users_importjob',
                        'ordering': ['-created_at'],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(content_type_to("imports"), content_type_to("users"), elidable=True),
    ]
