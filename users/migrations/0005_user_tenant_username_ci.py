"""SCIM's case-insensitive ``userName eq`` as one index probe, built without blocking writes to the users
table (``CREATE INDEX CONCURRENTLY``: outside a transaction)."""

import django.db.models.functions.text
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("users", "0004_user_profile"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="user",
            index=models.Index(
                models.F("tenant"), django.db.models.functions.text.Upper("external_id"), name="user_tenant_username_ci"
            ),
        ),
    ]
