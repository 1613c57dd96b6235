"""Worker tasks of the attributes app: the search indexes of searchable definitions."""

from __future__ import annotations

from celery import shared_task

from attributes.search_indexes import search_index_drop, search_index_sync


@shared_task(name="attributes.sync_search_index", ignore_result=True)
def sync_search_index_task(definition_id: str) -> None:
    search_index_sync(definition_id=definition_id)


@shared_task(name="attributes.drop_search_index", ignore_result=True)
def drop_search_index_task(name: str) -> None:
    search_index_drop(name=name)
