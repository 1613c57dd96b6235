from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

from console.support import ReadOnlyAdminMixin, age, short_id, tenant_slug_or_id, with_tenant_slug
from outbox import services
from outbox.models import OutboxEvent, QueuedEvent
from outbox.selectors import outbox_stats


class StatusFilter(admin.SimpleListFilter):
    """Status, with pending and parked events found through the relay's queue (a few rows) instead of
    a scan of every published row kept for retention. The parameter is the one Django's own filter
    used (``status__exact``), so the dashboard's links are unchanged."""

    title = "status"
    parameter_name = "status__exact"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(str(value), str(label)) for value, label in OutboxEvent.Status.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> QuerySet[OutboxEvent]:
        value = self.value()
        if value in (OutboxEvent.Status.PENDING, OutboxEvent.Status.FAILED):
            queued = QueuedEvent.objects.filter(status=value).values("event_id")
            return queryset.filter(sequence__in=queued, status=value)
        if value is not None:
            return queryset.filter(status=value)
        return queryset


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Watch the outbox: counts, the oldest pending age, parked events and their errors."""

    list_display = ["sequence", "event_type", "status", "attempts", "aggregate", "tenant", "age", "published_at"]
    list_display_links = ["sequence", "event_type"]
    list_filter = [StatusFilter, "event_type", "aggregate_type"]
    ordering = ["-sequence"]  # newest first
    search_fields = ["=event_id", "=aggregate_id", "=tenant_id"]
    actions = ["retry_failed", "requeue"]
    show_full_result_count = False
    readonly_fields = [f.name for f in OutboxEvent._meta.fields if f.name != "payload"] + ["payload_pretty"]
    exclude = ["payload"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[OutboxEvent]:
        return with_tenant_slug(super().get_queryset(request))

    @admin.display(description="aggregate")
    def aggregate(self, obj: OutboxEvent) -> str:
        return format_html("{} {} v{}", obj.aggregate_type, short_id(obj.aggregate_id), obj.aggregate_version)

    @admin.display(description="tenant")
    def tenant(self, obj: OutboxEvent) -> str:
        return tenant_slug_or_id(obj)

    @admin.display(description="age", ordering="created_at")
    def age(self, obj: OutboxEvent) -> str:
        return format_html('<span title="{}">{}</span>', obj.created_at.isoformat(), age(obj.created_at))

    @admin.display(description="payload")
    def payload_pretty(self, obj: OutboxEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2))

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        extra_context = {**(extra_context or {}), "outbox_stats": outbox_stats()}
        return super().changelist_view(request, extra_context)

    def get_actions(self, request: HttpRequest) -> dict:
        # Actions need only the view permission here: they do not edit events, they requeue them.
        actions = super().get_actions(request)
        if not request.user.is_superuser:
            actions.pop("requeue", None)
        return actions

    @admin.action(description="Retry selected failed (parked) events")
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
        count = services.outbox_retry(sequences=list(queryset.values_list("sequence", flat=True)))
        self.message_user(request, f"{count} parked events will be retried.", messages.SUCCESS)

    @admin.action(description="Publish selected events again (same ids)")
    def requeue(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
        count = services.outbox_requeue(sequences=list(queryset.values_list("sequence", flat=True)))
        self.message_user(request, f"{count} events queued for publishing again.", messages.SUCCESS)
