"""The admin console in a real headless Chromium: tenant scoping, the select2 tenant picker, field errors.

Playwright's sync API runs an asyncio loop in this thread, so Django's ORM would refuse to run here
(SynchronousOnlyOperation) while the browser is up: the module's browser fixture sets
``DJANGO_ALLOW_ASYNC_UNSAFE`` for its lifetime (the ORM calls stay sequential in the test thread; the
live server answers from its own thread and connection).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
