"""The admin console in a real headless Chromium: tenant scoping, the select2 tenant picker, field errors.

Playwright's sync API runs an asyncio loop in this thread, so Django's ORM would refuse to run here
(SynchronousOnlyOperation) while the browser is up: the module's browser fixture sets
``DJANGO_ALLOW_ASYNC_UNSAFE`` for its lifetime (the ORM calls stay sequential in the test thread; the
live server answers from its own thread and connection).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from outbox.models import OutboxEvent
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, DEFAULT_TIMEOUT_MS, console_login, require_chromium
from tests.conftest import ADMIN_PASSWORD, TENANT_ADMIN_PASSWORD
from users.models import User

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator:  # type: ignore[type-arg]
    require_chromium()
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            try:
                yield chromium
            finally:
                chromium.close()


@pytest.fixture
def page(browser) -> Iterator:  # type: ignore[no-untyped-def,type-arg]
    """A fresh context (no cookies) per test; records static files that failed to load."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    context.set_default_navigation_timeout(DEFAULT_TIMEOUT_MS)
    page = context.new_page()
    page.static_failures = []  # type: ignore[attr-defined]

    def record(response) -> None:  # type: ignore[no-untyped-def]
        if "/static/" in response.url and response.status >= 400:
            page.static_failures.append(f"{response.status} {response.url}")

    page.on("response", record)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def world(transactional_db, superuser, two_tenants):  # type: ignore[no-untyped-def]
    return two_tenants


def test_tenant_admin_logs_in_and_sees_only_their_tenants_users(page, live_server, world) -> None:  # type: ignore[no-untyped-def]
    console_login(page, live_server.url, "tadmin", TENANT_ADMIN_PASSWORD)
    page.locator("#content-main").get_by_role("link", name="Policy users", exact=True).click()
    page.wait_for_url(f"{live_server.url}/admin/users/user/")

    results = page.locator("#result_list")
    assert "alice-of-a" in results.inner_text()
    body = page.content()
    for secret in ("bob-of-b", str(world["ub"].pk)):
        assert secret not in body, f"tenant A's administrator saw {secret!r} of tenant B"
    assert page.static_failures == []


def test_tenant_admin_changelists_do_not_name_other_tenants(page, live_server, world) -> None:  # type: ignore[no-untyped-def]
    console_login(page, live_server.url, "tadmin", TENANT_ADMIN_PASSWORD)
    for path in ("/admin/users/user/", "/admin/attributes/attributedefinition/"):
        response = page.goto(f"{live_server.url}{path}")
        assert response is not None and response.status == 200
        body = page.content()
        for secret in ("tenant-b", str(world["b"].pk)):
            assert secret not in body, f"{path}: tenant A's administrator saw {secret!r} of tenant B"


def test_tenant_admin_adds_a_user_field_error_then_success(page, live_server, world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    console_login(page, live_server.url, "tadmin", TENANT_ADMIN_PASSWORD)
    page.goto(f"{live_server.url}/admin/users/user/add/")

    # Step one: the tenant picker is select2 fed by the admin's autocomplete view: only tenant A is offered.
    page.locator(".field-tenant .select2-selection").click()
    search = page.locator(".select2-container--open .select2-search__field")
    options = page.locator(".select2-container--open .select2-results__option")
    expect(options).to_have_text(["tenant-a"])  # waits past "Searching…"
    search.fill("tenant-b")
    expect(options).to_have_text(["No results found"])
    search.fill("tenant")
    expect(options).to_have_text(["tenant-a"])
    options.filter(has_text="tenant-a").click()
    assert page.locator("#id_tenant").input_value() == str(world["a"].pk)
    page.click("#choose-tenant-form input[type=submit]")

    # Step two: tenant A's form, with its typed attribute fields.
    expect(page.locator("#chosen-tenant")).to_have_text("tenant-a")
    page.fill("#id_external_id", "carol-of-a")
    page.fill("#id_attr__level", "3.5")
    page.click("input[name=_save]")
    error = page.locator(".field-attr__level .errorlist")
    expect(error).to_contain_text("/attributes/level [type] must be an integer, got number")
    page.locator(".field-attr__level").scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "attributes-field-error.png"), full_page=True)
    assert not User.objects.filter(external_id="carol-of-a").exists()

    page.fill("#id_attr__level", "3")
    page.click("input[name=_save]")
    page.wait_for_url(f"{live_server.url}/admin/users/user/")
    expect(page.locator(".messagelist .success")).to_contain_text("carol-of-a")
    user = User.objects.get(tenant=world["a"], external_id="carol-of-a")
    assert user.attributes == {"level": 3}
    assert OutboxEvent.objects.filter(event_type="UserCreated", aggregate_id=user.pk).count() == 1
    assert page.static_failures == []


def test_tenant_admin_gets_404_for_another_tenants_user(page, live_server, world) -> None:  # type: ignore[no-untyped-def]
    console_login(page, live_server.url, "tadmin", TENANT_ADMIN_PASSWORD)
    own = page.goto(f"{live_server.url}/admin/users/user/{world['ua'].pk}/change/")
    assert own is not None and own.status == 200
    other = page.goto(f"{live_server.url}/admin/users/user/{world['ub'].pk}/change/")
    assert other is not None and other.status == 404
    assert "bob-of-b" not in page.content()


def test_superuser_sees_outbox_counts_and_every_tenants_users(page, live_server, world) -> None:  # type: ignore[no-untyped-def]
    console_login(page, live_server.url, "root", ADMIN_PASSWORD)
    page.goto(f"{live_server.url}/admin/outbox/outboxevent/")
    stats = page.locator("#outbox-stats")
    assert stats.is_visible()
    pending = OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING).count()
    assert pending > 0
    assert page.locator("#outbox-pending").inner_text().strip() == str(pending)
    assert page.locator("#outbox-failed").inner_text().strip() == "0"

    page.goto(f"{live_server.url}/admin/users/user/")
    results = page.locator("#result_list").inner_text()
    assert "alice-of-a" in results and "bob-of-b" in results
    assert page.static_failures == []


# --- the schema-driven console, its layout at 1,400 px and on a phone -------------------------------
WIDE, PHONE = {"width": 1400, "height": 1000}, {"width": 390, "height": 844}
TYPED = [
    {"key": "clearance", "type": "integer", "min_value": 1, "max_value": 5, "description": "Security clearance."},
    {"key": "vip", "type": "boolean"},
    {"key": "department", "type": "enum", "allowed_values": ["eng", "sales", "ops"]},
    {"key": "teams", "type": "string_list", "max_items": 3},
    {"key": "started", "type": "date"},
    {"key": "last_seen", "type": "datetime"},
    {"key": "nickname", "type": "string", "max_length": 12, "pattern": "[a-z]+"},
]


@pytest.fixture
def typed_world(world):  # type: ignore[no-untyped-def]
    """Tenant A with a definition of every type; alice has some values; an import has run."""
    import json

    from imports.jobs import import_job_create
    from imports.runner import import_job_run
    from tests.factories import DefinitionFactory
    from users import services

    for definition in TYPED:
        DefinitionFactory(tenant=world["a"], **definition)
    world["ua"] = services.user_update(
        user=world["ua"], attributes={"level": 1, "clearance": 2, "department": "eng", "teams": ["red", "blue"]}
    )
    rows = [{"external_id": f"imported-{n}", "attributes": {"clearance": n % 5 + 1}} for n in range(3)]
    job = import_job_create(
        tenant=world["a"],
        content="".join(json.dumps(row) + "\n" for row in rows).encode(),
        file_name="people-of-alpha.jsonl",
        fmt="jsonl",
        dry_run=True,
    )
    world["job"] = import_job_run(job_id=str(job.pk))
    # Some events published over the last hour (as the relay would have), for the index's chart.
    now = timezone.now()
    for index, sequence in enumerate(OutboxEvent.objects.order_by("sequence").values_list("sequence", flat=True)[:8]):
        OutboxEvent.objects.filter(sequence=sequence).update(
            status="published", published_at=now - timedelta(minutes=7 * index)
        )
    return world


def no_horizontal_scroll(page) -> None:  # type: ignore[no-untyped-def]
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page scrolls sideways: {widths[0]} px wide in a {widths[1]} px window"


def fully_visible(page, selector: str) -> None:  # type: ignore[no-untyped-def]
    """``selector`` is shown, and its box lies inside the window's width (not cut off in a scroller)."""
    locator = page.locator(selector).first
    assert locator.is_visible(), f"{selector} not visible"
    box = locator.bounding_box()
    width = page.evaluate("window.innerWidth")
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (selector, box, width)
    clipped = locator.evaluate(
        """element => {
            const box = element.getBoundingClientRect();
            for (let up = element.parentElement; up; up = up.parentElement) {
                const outer = up.getBoundingClientRect();
                const style = getComputedStyle(up);
                if (style.overflowX !== 'visible' && (box.right > outer.right + 1 || box.left < outer.left - 1)) {
                    return up.className || up.tagName;
                }
            }
            return null;
        }"""
    )
    assert clipped is None, f"{selector} is cut off by a scrolling container ({clipped})"


PAGES = {
    "index": ("/admin/", ["#figure-tenants", "#figure-users", "#figure-pending", "#figure-failed",
                          "#figure-oldest-age", "#published-chart"]),
    "user": ("/admin/users/user/{ua}/change/", ["#id_attr__clearance", "#id_attr__vip", "#id_attr__department",
                                                "#id_attr__teams", ".field-tenant", "input[name=_save]"]),
    "outbox": ("/admin/outbox/outboxevent/", ["th.column-sequence", "th.column-event_type", "th.column-status",
                                              "th.column-attempts", "th.column-aggregate", "th.column-tenant",
                                              "th.column-age", "#changelist-filter"]),
    "users": ("/admin/users/user/", ["th.column-external_id", "th.column-tenant", "th.column-status",
                                     "th.column-updated_at"]),
    "audit": ("/admin/audit/auditrecord/", ["th.column-actor_kind", "th.column-action", "th.column-object_repr",
                                            "th.column-tenant"]),
    "imports": ("/admin/imports/importjob/", ["th.column-short", "th.column-tenant", "th.column-status",
                                            "th.column-outcome", "td.field-outcome"]),
    "import": ("/admin/imports/importjob/{job}/change/", [".field-status", ".field-outcome"]),
}  # fmt: skip


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["1400x1000", "390x844"])
def test_console_pages_fit_the_window_with_their_key_figures_in_view(  # type: ignore[no-untyped-def]
    browser, live_server, typed_world, viewport, tmp_path: Path
) -> None:
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page = context.new_page()
    try:
        console_login(page, live_server.url, "root", ADMIN_PASSWORD)
        for name, (path, selectors) in PAGES.items():
            url = live_server.url + path.format(ua=typed_world["ua"].pk, job=typed_world["job"].pk)
            response = page.goto(url)
            assert response is not None and response.status == 200, (name, response and response.status)
            shot = tmp_path / f"{name}-{viewport['width']}x{viewport['height']}.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}")
            no_horizontal_scroll(page)  # on a phone too: wide tables scroll inside their own box
            if viewport is WIDE:
                for selector in selectors:
                    fully_visible(page, selector)
            else:
                assert page.locator(selectors[0]).first.is_visible(), (name, selectors[0])
        page.goto(f"{live_server.url}/admin/")
        heights = page.locator("#published-chart rect.bar").evaluate_all("bars => bars.map(b => b.getBBox().height)")
        assert len(heights) == 60 and sum(1 for height in heights if height > 0) == 8
        for uuid in (str(typed_world["a"].pk), str(typed_world["ua"].pk)):
            page.goto(f"{live_server.url}/admin/outbox/outboxevent/")
            assert uuid not in page.locator("#result_list").inner_text()  # slugs and short ids
    finally:
        context.close()


def test_typed_fields_work_in_the_browser(page, live_server, typed_world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    from core.guards import domain_write

    ua = typed_world["ua"]
    url = f"{live_server.url}/admin/users/user/{ua.pk}/change/"
    console_login(page, live_server.url, "root", ADMIN_PASSWORD)
    page.goto(url)

    # The tenant is read-only: its slug as text, no picker, no add/change/delete icons.
    tenant_row = page.locator(".field-tenant")
    expect(tenant_row).to_contain_text("tenant-a")
    assert tenant_row.locator("select, input, .related-widget-wrapper-link").count() == 0

    # The enum is a select of the allowed values.
    options = page.locator("#id_attr__department option")
    assert options.evaluate_all("os => os.map(o => o.value)") == ["", "eng", "sales", "ops"]
    assert page.locator("#id_attr__department").input_value() == "eng"
    assert page.locator("#id_attr__clearance").get_attribute("max") == "5"
    assert page.locator("#id_attr__teams").input_value() == "red\nblue"

    # An integer over its max: the API's message, on that field; nothing written.
    page.fill("#id_attr__clearance", "9")
    page.click("input[name=_continue]")
    expect(page.locator(".field-attr__clearance .errorlist")).to_have_text(
        "/attributes/clearance [max] must be at most 5"
    )
    page.locator(".field-attr__clearance").scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "integer-over-max.png"), full_page=True)
    ua.refresh_from_db()
    assert ua.attributes["clearance"] == 2

    # A boolean checkbox round-trips: ticked → true, unticked → false.
    page.fill("#id_attr__clearance", "4")
    page.check("#id_attr__vip")
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist .success")).to_be_visible()
    ua.refresh_from_db()
    assert ua.attributes["vip"] is True and ua.attributes["clearance"] == 4
    assert page.locator("#id_attr__vip").is_checked()
    page.uncheck("#id_attr__vip")
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist .success")).to_be_visible()
    ua.refresh_from_db()
    assert ua.attributes["vip"] is False and not page.locator("#id_attr__vip").is_checked()

    # A stored key whose definition is gone: an error on its own field, the value kept.
    with domain_write():
        User.objects.filter(pk=ua.pk).update(attributes={**ua.attributes, "shoe_size": 44})
    page.goto(url)
    unknown = page.locator(".field-attr__shoe_size")
    expect(unknown.locator(".errorlist")).to_contain_text("[unknown] no attribute definition 'shoe_size'")
    assert page.locator("#id_attr__shoe_size").input_value() == "44"
    unknown.scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "unknown-key.png"), full_page=True)
    assert page.static_failures == []
