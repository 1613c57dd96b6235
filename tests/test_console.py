"""The console's schema-driven forms, changelists and index, through Django's test client.

The browser tests (tests/test_console_browser.py) drive the same pages in Chromium; these pin the
HTML and the writes exactly: which inputs a definition gets, that a save goes through the service and
writes one event (or none when nothing changed), what a tenant administrator may choose.
"""

from __future__ import annotations

import re

import pytest

from audit.models import AuditRecord
from core.guards import domain_write
from outbox.models import OutboxEvent
from tests.conftest import TENANT_ADMIN_PASSWORD
from tests.factories import DefinitionFactory, TenantFactory, UserFactory
from tests.html_support import Element, page
from users.models import User

pytestmark = pytest.mark.django_db

SCHEMA = [
    {
        "key": "region",
        "type": "string",
        "required": True,
        "max_length": 8,
        "pattern": "[a-z]+",
        "description": "Where.",
    },
    {"key": "level", "type": "integer", "min_value": 1, "max_value": 5},
    {"key": "ratio", "type": "number", "min_value": 0.5},
    {"key": "active", "type": "boolean"},
    {"key": "department", "type": "enum", "allowed_values": ["eng", "sales"]},
    {"key": "hired", "type": "date"},
    {"key": "last_login", "type": "datetime"},
    {"key": "groups", "type": "string_list", "max_items": 3},
]
STORED = {
    "region": "eu",
    "level": 2,
    "ratio": 0.75,
    "active": True,
    "department": "eng",
    "hired": "2024-02-29",
    "last_login": "2026-01-31T12:00:00+01:00",
    "groups": ["a", "b"],
}


@pytest.fixture
def acme():  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    for definition in SCHEMA:
        DefinitionFactory(tenant=tenant, **definition)
    DefinitionFactory(tenant=tenant, key="tier", type="integer", target="tenant", max_value=3)
    return tenant


@pytest.fixture
def alice(acme):  # type: ignore[no-untyped-def]
    return UserFactory(tenant=acme, external_id="alice", attributes=STORED)


def soup_of(response) -> Element:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.status_code
    return page(response.content.decode())


def posted_form(response) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """What a browser would post for the page's form as shown (unticked checkboxes left out)."""
    form = response.context["adminform"].form
    data: dict[str, str] = {}
    for bound in form:
        if bound.field.disabled:
            continue
        value = bound.value()
        if getattr(bound.field.widget, "input_type", "") == "checkbox":
            if value:
                data[bound.html_name] = "on"
            continue
        data[bound.html_name] = "" if value is None else str(bound.field.prepare_value(value))
    return data


def test_the_user_page_has_one_typed_input_per_definition(admin_client_logged_in, alice) -> None:  # type: ignore[no-untyped-def]
    html = soup_of(admin_client_logged_in.get(f"/admin/users/user/{alice.pk}/change/"))
    level = html.select_one("input[name=attr__level]")
    assert (level["type"], level["min"], level["max"], level["step"], level["value"]) == ("number", "1", "5", "1", "2")
    ratio = html.select_one("input[name=attr__ratio]")
    assert (ratio["type"], ratio["min"], ratio["step"], ratio["value"]) == ("number", "0.5", "any", "0.75")
    active = html.select_one("input[name=attr__active]")
    assert active["type"] == "checkbox" and active.has_attr("checked")
    department = html.select_one("select[name=attr__department]")
    assert [o["value"] for o in department.select("option")] == ["", "eng", "sales"]
    assert [o["value"] for o in department.select("option[selected]")] == ["eng"]
    assert html.select_one("input[name=attr__hired]")["type"] == "date"
    last_login = html.select_one("input[name=attr__last_login]")
    assert (last_login["type"], last_login["value"]) == ("datetime-local", "2026-01-31T11:00:00")  # shown in UTC
    groups = html.select_one("textarea[name=attr__groups]")
    assert groups.text.strip() == "a\nb"
    assert "at most 3 items" in html.select_one(".field-attr__groups .help").text
    region = html.select_one("input[name=attr__region]")
    assert (region["type"], region["maxlength"], region["pattern"]) == ("text", "8", "[a-z]+")
    assert "required" in html.select_one("label[for=id_attr__region]").classes
    assert "required" not in html.select_one("label[for=id_attr__level]").classes
    assert "Where." in html.select_one(".field-attr__region .help").text
    assert html.select_one("[name=attributes]") is None  # no raw JSON textarea any more


def test_saving_a_page_unchanged_writes_nothing_and_a_change_writes_one_event(admin_client_logged_in, alice) -> None:  # type: ignore[no-untyped-def]
    url = f"/admin/users/user/{alice.pk}/change/"
    data = posted_form(admin_client_logged_in.get(url))
    events = OutboxEvent.objects.count()
    assert admin_client_logged_in.post(url, data).status_code == 302
    alice.refresh_from_db()
    assert alice.attributes == STORED and alice.version == 1  # the datetime keeps its offset
    assert OutboxEvent.objects.count() == events

    data = {**data, "attr__level": "4", "attr__groups": "a\r\nb\r\n\r\nc"}
    data.pop("attr__active")  # untick
    assert admin_client_logged_in.post(url, data).status_code == 302
    alice.refresh_from_db()
    assert alice.attributes == {**STORED, "level": 4, "active": False, "groups": ["a", "b", "c"]}
    assert list(OutboxEvent.objects.filter(pk__gt=0).order_by("-sequence").values_list("event_type", flat=True))[
        :1
    ] == ["UserAttributesChanged"]
    assert OutboxEvent.objects.count() == events + 1


def test_the_same_instant_without_seconds_keeps_the_stored_datetime(admin_client_logged_in, alice) -> None:  # type: ignore[no-untyped-def]
    url = f"/admin/users/user/{alice.pk}/change/"
    data = posted_form(admin_client_logged_in.get(url))
    events = OutboxEvent.objects.count()
    # Browsers post a datetime-local without ":00" seconds; 11:00 UTC is the stored 12:00+01:00.
    assert admin_client_logged_in.post(url, {**data, "attr__last_login": "2026-01-31T11:00"}).status_code == 302
    alice.refresh_from_db()
    assert alice.attributes["last_login"] == "2026-01-31T12:00:00+01:00" and OutboxEvent.objects.count() == events
    assert admin_client_logged_in.post(url, {**data, "attr__last_login": "2026-01-31T11:30"}).status_code == 302
    alice.refresh_from_db()
    assert alice.attributes["last_login"] == "2026-01-31T11:30:00Z" and OutboxEvent.objects.count() == events + 1


def test_an_unset_boolean_stays_unset_and_a_cleared_field_unsets(admin_client_logged_in, acme) -> None:  # type: ignore[no-untyped-def]
    bob = UserFactory(tenant=acme, external_id="bob", attributes={"region": "eu", "level": 3})
    url = f"/admin/users/user/{bob.pk}/change/"
    data = posted_form(admin_client_logged_in.get(url))
    assert "attr__active" not in data
    assert admin_client_logged_in.post(url, {**data, "attr__level": ""}).status_code == 302
    bob.refresh_from_db()
    assert bob.attributes == {"region": "eu"}


def test_an_integer_over_its_max_shows_the_apis_message_and_writes_nothing(admin_client_logged_in, alice) -> None:  # type: ignore[no-untyped-def]
    url = f"/admin/users/user/{alice.pk}/change/"
    data = posted_form(admin_client_logged_in.get(url))
    events = OutboxEvent.objects.count()
    response = admin_client_logged_in.post(url, {**data, "attr__level": "9"})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["attr__level"] == ["/attributes/level [max] must be at most 5"]
    html = soup_of(response)
    assert "must be at most 5" in html.select_one(".field-attr__level .errorlist").text
    alice.refresh_from_db()
    assert alice.attributes["level"] == 2 and OutboxEvent.objects.count() == events


def test_a_stored_key_without_a_definition_is_shown_as_an_error_until_cleared(admin_client_logged_in, alice) -> None:  # type: ignore[no-untyped-def]
    with domain_write():  # as a row written before the definition was deleted
        User.objects.filter(pk=alice.pk).update(attributes={**STORED, "shoe_size": 44})
    url = f"/admin/users/user/{alice.pk}/change/"
    response = admin_client_logged_in.get(url)
    html = soup_of(response)
    assert html.select_one("input[name=attr__shoe_size]")["value"] == "44"
    error = html.select_one(".field-attr__shoe_size .errorlist").text
    assert "/attributes/shoe_size [unknown] no attribute definition 'shoe_size' for this tenant" in error
    data = posted_form(response)

    kept = admin_client_logged_in.post(url, data)  # left as it is: refused, nothing lost
    assert kept.status_code == 200 and "[unknown]" in kept.context["adminform"].form.errors["attr__shoe_size"][0]
    assert User.objects.get(pk=alice.pk).attributes["shoe_size"] == 44

    events = OutboxEvent.objects.count()
    assert admin_client_logged_in.post(url, {**data, "attr__shoe_size": ""}).status_code == 302
    assert "shoe_size" not in User.objects.get(pk=alice.pk).attributes
    assert OutboxEvent.objects.count() == events + 1


def test_the_tenant_of_an_existing_user_is_read_only(admin_client_logged_in, alice) -> None:  # type: ignore[no-untyped-def]
    other = TenantFactory(slug="other")
    url = f"/admin/users/user/{alice.pk}/change/"
    response = admin_client_logged_in.get(url)
    row = soup_of(response).select_one(".field-tenant")
    assert "acme" in row.text
    assert row.select("select, input, textarea") == []
    assert row.select(".related-widget-wrapper-link, .add-related, .change-related, .delete-related") == []
    data = {**posted_form(response), "tenant": str(other.pk)}
    assert admin_client_logged_in.post(url, data).status_code == 302
    assert User.objects.get(pk=alice.pk).tenant_id == alice.tenant_id


def test_adding_a_user_chooses_the_tenant_first(admin_client_logged_in, acme) -> None:  # type: ignore[no-untyped-def]
    chooser = soup_of(admin_client_logged_in.get("/admin/users/user/add/"))
    form = chooser.select_one("form#choose-tenant-form")
    assert form["method"] == "get" and form.select_one("select[name=tenant]") is not None
    assert chooser.select_one("input[name^=attr__]") is None

    response = admin_client_logged_in.get(f"/admin/users/user/add/?tenant={acme.pk}")
    html = soup_of(response)
    assert html.select_one("#chosen-tenant").text == "acme"
    assert html.select_one("input[type=hidden][name=tenant]")["value"] == str(acme.pk)
    assert html.select_one("input[name=attr__level]")["max"] == "5"

    data = {**posted_form(response), "external_id": "carol", "attr__region": "eu", "attr__level": "3"}
    assert admin_client_logged_in.post(f"/admin/users/user/add/?tenant={acme.pk}", data).status_code == 302
    response = admin_client_logged_in.post(
        f"/admin/users/user/add/?tenant={acme.pk}", {**data, "external_id": "dave", "_addanother": "1"}
    )
    assert response.status_code == 302 and response["Location"] == f"/admin/users/user/add/?tenant={acme.pk}"
    carol = User.objects.get(tenant=acme, external_id="carol")
    assert carol.attributes == {"region": "eu", "level": 3}
    assert OutboxEvent.objects.filter(event_type="UserCreated", aggregate_id=carol.pk).count() == 1


def test_a_tenant_administrator_cannot_choose_another_tenant(client, two_tenants) -> None:  # type: ignore[no-untyped-def]
    assert client.post("/admin/login/", {"username": "tadmin", "password": TENANT_ADMIN_PASSWORD}).status_code == 302
    other = client.get(f"/admin/users/user/add/?tenant={two_tenants['b'].pk}")
    html = soup_of(other)
    assert html.select_one("form#choose-tenant-form") is not None  # back to step one, B's schema not shown
    assert "tenant-b" not in other.content.decode()
    own = soup_of(client.get(f"/admin/users/user/add/?tenant={two_tenants['a'].pk}"))
    assert own.select_one("#chosen-tenant").text == "tenant-a"


def test_the_tenant_page_has_typed_fields_for_tenant_definitions(admin_client_logged_in, acme) -> None:  # type: ignore[no-untyped-def]
    url = f"/admin/tenants/tenant/{acme.pk}/change/"
    response = admin_client_logged_in.get(url)
    html = soup_of(response)
    assert html.select_one("input[name=attr__tier]")["max"] == "3"
    assert html.select_one("input[name=attr__level]") is None  # a user definition
    data = posted_form(response)
    refused = admin_client_logged_in.post(url, {**data, "attr__tier": "7"})
    assert refused.context["adminform"].form.errors["attr__tier"] == ["/attributes/tier [max] must be at most 3"]
    assert admin_client_logged_in.post(url, {**data, "attr__tier": "2"}).status_code == 302
    acme.refresh_from_db()
    assert acme.attributes == {"tier": 2}
    record = AuditRecord.objects.filter(object_id=acme.pk).order_by("-id").first()
    assert record.actor_kind == "console" and record.changes["attributes.tier"] == [None, 2]


def test_the_tenant_add_page_has_no_attribute_fields(admin_client_logged_in) -> None:  # type: ignore[no-untyped-def]
    html = soup_of(admin_client_logged_in.get("/admin/tenants/tenant/add/"))
    assert html.select_one("[name^=attr__]") is None and html.select_one("[name=attributes]") is None
    response = admin_client_logged_in.post(
        "/admin/tenants/tenant/add/", {"slug": "new", "name": "New", "status": "active"}
    )
    assert response.status_code == 302
    assert OutboxEvent.objects.filter(event_type="TenantCreated").count() == 1


def test_title_of_an_import_names_the_tenant_slug(acme) -> None:  # type: ignore[no-untyped-def]
    from imports.models import ImportJob

    job = ImportJob(tenant=acme, file_name="users.csv", status="succeeded")
    assert str(job) == "import users.csv into acme (succeeded)"
    assert not re.search(r"[0-9a-f]{8}-", str(job))


# --- the index and the changelists ------------------------------------------------------------------
def publish(sequences_and_minutes_ago: list[tuple[int, float]]) -> None:
    """Mark events published some minutes ago (as the relay would have)."""
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    for sequence, minutes in sequences_and_minutes_ago:
        OutboxEvent.objects.filter(sequence=sequence).update(
            status="published", published_at=now - timedelta(minutes=minutes)
        )


def test_the_index_shows_counts_outbox_figures_and_a_chart_of_published_events(admin_client_logged_in, alice) -> None:  # type: ignore[no-untyped-def]
    sequences = list(OutboxEvent.objects.order_by("sequence").values_list("sequence", flat=True))
    assert len(sequences) >= 5
    # Two events in the current minute, one 10.5 minutes ago, one 90 minutes ago (outside the hour).
    publish([(sequences[0], 0.1), (sequences[1], 0.2), (sequences[2], 10.5), (sequences[3], 90)])
    OutboxEvent.objects.filter(sequence=sequences[4]).update(status="failed")
    pending = OutboxEvent.objects.filter(status="pending").count()

    html = soup_of(admin_client_logged_in.get("/admin/"))
    figures = {name: html.select_one(f"#figure-{name}").text for name in ("tenants", "users", "pending", "failed")}
    assert figures == {"tenants": "1", "users": "1", "pending": str(pending), "failed": "1"}
    assert html.select_one("#figure-oldest-age").text.endswith("s")
    bars = html.select("#published-chart rect.bar")
    assert len(bars) == 60
    counts = [int(bar["data-count"]) for bar in bars]
    assert counts[-1] == 2 and counts[-11] == 1 and sum(counts) == 3  # oldest first, "now" last
    assert float(bars[-1]["height"]) == 64.0 and float(bars[-11]["height"]) == 32.0
    assert html.select_one("#published-last-hour").text == "3"
    fetched = [e.get("src") or e.get("href") for e in html.select("script[src], link[href]")]
    assert fetched and all(url.startswith("/") for url in fetched), fetched  # server-rendered, no CDN


def test_a_tenant_administrators_index_counts_only_their_tenants_and_hides_the_outbox(client, two_tenants) -> None:  # type: ignore[no-untyped-def]
    assert client.post("/admin/login/", {"username": "tadmin", "password": TENANT_ADMIN_PASSWORD}).status_code == 302
    html = soup_of(client.get("/admin/"))
    assert (html.select_one("#figure-tenants").text, html.select_one("#figure-users").text) == ("1", "1")
    assert html.select_one("#figure-pending") is None and html.select_one("#published-chart") is None


def test_changelists_are_newest_first_with_slugs_and_short_ids(admin_client_logged_in, alice) -> None:  # type: ignore[no-untyped-def]
    UserFactory(tenant=alice.tenant, external_id="zed", attributes={"region": "eu"})
    users = soup_of(admin_client_logged_in.get("/admin/users/user/"))
    assert [a.text for a in users.select("#result_list th.field-external_id a")] == ["zed", "alice"]

    outbox = admin_client_logged_in.get("/admin/outbox/outboxevent/")
    html = soup_of(outbox)
    headers = [th.text.strip().lower() for th in html.select("#result_list thead th") if th.text.strip()]
    for column in ("event type", "status", "attempts", "aggregate", "tenant", "age"):
        assert column in headers, headers
    sequences = [int(a.text.strip()) for a in html.select("#result_list th.field-sequence a")]
    assert sequences == sorted(sequences, reverse=True)
    table = html.select_one("#result_list").text
    assert "acme" in table and str(alice.pk) not in table and str(alice.pk)[:8] in table

    audit = soup_of(admin_client_logged_in.get("/admin/audit/auditrecord/"))
    tenants = {td.text for td in audit.select("#result_list td.field-tenant")}
    assert tenants == {"acme"}


def test_a_duplicate_external_id_is_refused_on_the_form_by_the_service_and_writes_nothing(
    admin_client_logged_in, alice
) -> None:  # type: ignore[no-untyped-def]
    response = admin_client_logged_in.get(f"/admin/users/user/add/?tenant={alice.tenant_id}")
    data = {**posted_form(response), "external_id": "alice", "attr__region": "eu", "email": "not an email"}
    html = soup_of(admin_client_logged_in.post(f"/admin/users/user/add/?tenant={alice.tenant_id}", data))
    assert "Enter a valid email address" in html.select_one(".field-email .errorlist").text  # the form's own field
    events = OutboxEvent.objects.count()

    data["email"] = "alice@example.com"
    html = soup_of(admin_client_logged_in.post(f"/admin/users/user/add/?tenant={alice.tenant_id}", data))
    assert "already exists in this tenant" in html.select_one(".errorlist.nonfield").text
    assert User.objects.filter(external_id="alice").count() == 1 and OutboxEvent.objects.count() == events


def test_the_services_rules_show_on_their_fields_attributes_and_own_fields_at_once(
    admin_client_logged_in, alice
) -> None:  # type: ignore[no-untyped-def]
    response = admin_client_logged_in.get(f"/admin/users/user/{alice.pk}/change/")
    data = {**posted_form(response), "external_id": " alice", "attr__level": "9"}
    html = soup_of(admin_client_logged_in.post(f"/admin/users/user/{alice.pk}/change/", data))
    assert "[whitespace]" in html.select_one(".field-external_id .errorlist").text
    assert "must be at most 5" in html.select_one(".field-attr__level .errorlist").text
    assert User.objects.get(pk=alice.pk).external_id == "alice"
