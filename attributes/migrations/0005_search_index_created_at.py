"""Each searchable key's index becomes (expression, created_at): queue a rebuild of every one.

``CREATE INDEX CONCURRENTLY`` cannot run in a migration's transaction and may take minutes on a
large tenant, so, as when the flag is set, the worker builds each index once this migration has
committed (``attributes.sync_search_index``); the index of the first shape is dropped when its
successor is ready. Until then searches use the old index and answer the same.
"""

from typing import Any

from django.db import migrations, transaction


def queue_rebuilds(apps: Any, schema_editor: Any) -> None:
    definitions = apps.get_model("attributes", "AttributeDefinition")
    pending = [str(pk) for pk in definitions.objects.filter(searchable=True).values_list("pk", flat=True)]
    if not pending:
        return

    def queue() -> None:
        from attributes.tasks import sync_search_index_task

        for definition_id in pending:
            sync_search_index_task.delay(definition_id)

    transaction.on_commit(queue, robust=True)


class Migration(migrations.Migration):
    dependencies = [("attributes", "0004_typed_expression_cost")]

    operations = [migrations.RunPython(queue_rebuilds, migrations.RunPython.noop)]
