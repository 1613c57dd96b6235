"""The console index's figures: what a person checks first, read when the index is shown."""

from __future__ import annotations

from typing import Any

from django import template

from console.support import administered_tenant_ids

register = template.Library()

CHART_WIDTH, CHART_HEIGHT, BAR_GAP = 360, 64, 1


def chart_bars(counts: list[int]) -> list[dict[str, Any]]:
    """One SVG bar per minute, oldest first, scaled to the busiest minute."""
    peak = max(counts, default=0) or 1
    width = CHART_WIDTH / max(len(counts), 1)
    bars = []
    for index, count in enumerate(counts):
        height = round(CHART_HEIGHT * count / peak, 1)
        bars.append(
            {
                "x": round(index * width, 2),
                "y": round(CHART_HEIGHT - height, 1),
                "width": round(max(width - BAR_GAP, 1), 2),
                "height": height,
                "count": count,
                "minutes_ago": len(counts) - 1 - index,
            }
        )
    return bars


@register.inclusion_tag("admin/console_dashboard.html", takes_context=True)
def console_dashboard(context: Any) -> dict[str, Any]:
    from outbox.selectors import outbox_stats, published_per_minute
    from tenants.models import Tenant
    from users.models import User

    request = context["request"]
    tenant_ids = administered_tenant_ids(request)
    tenants = Tenant.objects.filter(deleted_at__isnull=True)
    users = User.objects.all()
    if tenant_ids is not None:
        tenants, users = tenants.filter(pk__in=tenant_ids), users.filter(tenant_id__in=tenant_ids)
    figures: dict[str, Any] = {"tenants": tenants.count(), "users": users.count()}
    if request.user.has_perm("outbox.view_outboxevent"):
        counts = published_per_minute(minutes=60)
        figures.update(
            outbox=outbox_stats(),
            published_last_hour=sum(counts),
            peak_per_minute=max(counts),
            bars=chart_bars(counts),
            chart_width=CHART_WIDTH,
            chart_height=CHART_HEIGHT,
        )
    return figures


@register.filter
def duration(seconds: float) -> str:
    """``0s``, ``42s``, ``7m 05s``, ``3h 12m``: an age at a glance."""
    total = int(seconds or 0)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m {total % 60:02d}s"
    return f"{total // 3600}h {total % 3600 // 60:02d}m"
