"""One table of bad attribute values, driven through the service, the API and the console form."""

from __future__ import annotations

import pytest

from core.errors import ValidationFailed
from outbox.models import OutboxEvent
from tests.factories import DefinitionFactory, TenantFactory
from users import services
from users.models import User

pytestmark = pytest.mark.django_db

SCHEMA = [
    {"key": "region", "type": "string", "required": True},
    {"key": "level", "type": "integer", "min_value": 1, "max_value": 5},
    {"key": "ratio", "type": "number"},
    {"key": "active", "type": "boolean"},
    {"key": "department", "type": "enum", "allowed_values": ["eng", "sales"]},
    {"key": "code", "type": "string", "pattern": "[A-Z]{3}"},
    {"key": "nickname", "type": "string", "max_length": 5},
    {"key": "bio", "type": "string"},
    {"key": "hired", "type": "date"},
    {"key": "last_login", "type": "datetime"},
    {"key": "groups", "type": "string_list", "max_items": 3, "allowed_values": ["a", "b", "c", "d"]},
]
GOOD = {
    "region": "eu",
    "level": 5,
    "ratio": 0.5,
    "active": False,
    "department": "eng",
    "code": "ABC",
    "nickname": "bob",
    "bio": "hello",
    "hired": "2024-02-29",
    "last_login": "2026-01-31T12:00:00+01:00",
    "groups": ["a", "b"],
}

# (name, attributes merged over {"region": "eu"}, expected pointer, expected rule)
BAD = [
    ("json true for an integer", {"level": True}, "/attributes/level", "type"),
    ("string '3' for an integer", {"level": "3"}, "/attributes/level", "type"),
    ("3.5 for an integer", {"level": 3.5}, "/attributes/level", "type"),
    ("integer above max", {"level": 9}, "/attributes/level", "max"),
    ("integer below min", {"level": 0}, "/attributes/level", "min"),
    ("string for a number", {"ratio": "1.5"}, "/attributes/ratio", "type"),
    ("1 for a boolean", {"active": 1}, "/attributes/active", "type"),
    ("unknown enum value", {"department": "hr"}, "/attributes/department", "enum"),
    ("pattern miss", {"code": "abc"}, "/attributes/code", "pattern"),
    ("over-long string", {"nickname": "toolong"}, "/attributes/nickname", "max_length"),
    ("list with a non-string", {"groups": ["a", 1]}, "/attributes/groups/1", "type"),
    ("list item not allowed", {"groups": ["a", "z"]}, "/attributes/groups/1", "enum"),
    ("list too long", {"groups": ["a", "b", "c", "d"]}, "/attributes/groups", "max_items"),
    ("string for a list", {"groups": "a"}, "/attributes/groups", "type"),
    ("impossible date", {"hired": "2026-02-30"}, "/attributes/hired", "type"),
    ("date in another format", {"hired": "31/01/2026"}, "/attributes/hired", "type"),
    ("datetime without a time zone", {"last_login": "2026-01-01T00:00:00"}, "/attributes/last_login", "type"),
    ("unknown key", {"shoe_size": 44}, "/attributes/shoe_size", "unknown"),
    ("key outside the charset", {"Bad-Key": 1}, "/attributes/Bad-Key", "key"),
    ("missing required key", {"region": None}, "/attributes/region", "required"),
    ("object for a string", {"region": {"a": 1}}, "/attributes/region", "type"),
    ("value over the size limit", {"bio": "x" * 5000}, "/attributes/bio", "too_large"),
    ("too many attributes", {f"k{i}": 1 for i in range(70)}, "/attributes", "too_many"),
]


@pytest.fixture
def tenant():  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    for definition in SCHEMA:
        DefinitionFactory(tenant=tenant, **definition)
    return tenant


def attributes_of(case: dict) -> dict:
    return {key: value for key, value in {"region": "eu", **case}.items() if value is not None}


def test_every_type_accepts_good_values(tenant) -> None:  # type: ignore[no-untyped-def]
    user = services.user_create(tenant=tenant, external_id="good", attributes=GOOD)
    assert user.attributes["last_login"] == "2026-01-31T12:00:00+01:00"
    assert user.attributes["level"] == 5 and user.attributes["active"] is False


def test_number_accepts_integers_and_datetime_is_normalised_to_z(tenant) -> None:  # type: ignore[no-untyped-def]
    user = services.user_create(
        tenant=tenant,
        external_id="n",
        attributes={"region": "eu", "ratio": 2, "last_login": "2026-01-31T12:00:00+00:00"},
    )
    assert user.attributes["ratio"] == 2
    assert user.attributes["last_login"] == "2026-01-31T12:00:00Z"


@pytest.mark.parametrize(("name", "case", "pointer", "rule"), BAD, ids=[b[0] for b in BAD])
def test_service_refuses(tenant, name, case, pointer, rule) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationFailed) as caught:
        services.user_create(tenant=tenant, external_id="bad", attributes=attributes_of(case))
    assert (pointer, rule) in {(e.pointer, e.rule) for e in caught.value.errors}
    assert not User.objects.filter(external_id="bad").exists()


@pytest.mark.parametrize(("name", "case", "pointer", "rule"), BAD, ids=[b[0] for b in BAD])
def test_api_answers_400_naming_attribute_and_rule(api, tenant, name, case, pointer, rule) -> None:  # type: ignore[no-untyped-def]
    events_before = OutboxEvent.objects.count()
    response = api.post(
        "/api/v1/tenants/acme/users/", {"external_id": "bad", "attributes": attributes_of(case)}, format="json"
    )
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert {"pointer": pointer, "rule": rule} in [{"pointer": e["pointer"], "rule": e["rule"]} for e in body["errors"]]
    assert all(e["detail"] for e in body["errors"])
    assert not User.objects.filter(external_id="bad").exists()
    assert OutboxEvent.objects.count() == events_before


# What a person can type into the console's typed fields, as posted (name, field → text, pointer, rule).
CONSOLE_BAD = [
    ("letters for an integer", {"level": "three"}, "/attributes/level", "type"),
    ("3.5 for an integer", {"level": "3.5"}, "/attributes/level", "type"),
    ("integer above max", {"level": "9"}, "/attributes/level", "max"),
    ("integer below min", {"level": "0"}, "/attributes/level", "min"),
    ("letters for a number", {"ratio": "half"}, "/attributes/ratio", "type"),
    ("unknown enum value", {"department": "hr"}, "/attributes/department", "enum"),
    ("pattern miss", {"code": "abc"}, "/attributes/code", "pattern"),
    ("over-long string", {"nickname": "toolong"}, "/attributes/nickname", "max_length"),
    ("list item not allowed", {"groups": "a\nz"}, "/attributes/groups/1", "enum"),
    ("list too long", {"groups": "a\nb\nc\nd"}, "/attributes/groups", "max_items"),
    ("impossible date", {"hired": "2026-02-30"}, "/attributes/hired", "type"),
    ("date in another format", {"hired": "31/01/2026"}, "/attributes/hired", "type"),
    ("datetime that is not one", {"last_login": "yesterday"}, "/attributes/last_login", "type"),
    ("missing required key", {"region": ""}, "/attributes/region", "required"),
    ("value over the size limit", {"bio": "x" * 5000}, "/attributes/bio", "too_large"),
]


@pytest.mark.parametrize(("name", "case", "pointer", "rule"), CONSOLE_BAD, ids=[b[0] for b in CONSOLE_BAD])
def test_console_form_shows_the_apis_error_on_the_typed_field(
    admin_client_logged_in, api, tenant, name, case, pointer, rule
) -> None:  # type: ignore[no-untyped-def]
    fields = {f"attr__{key}": text for key, text in {"region": "eu", **case}.items()}
    response = admin_client_logged_in.post(
        f"/admin/users/user/add/?tenant={tenant.pk}",
        {"tenant": str(tenant.pk), "external_id": "bad", "email": "", "display_name": "", "status": "active", **fields},
    )
    assert response.status_code == 200  # the form again, not a redirect
    form = response.context["adminform"].form
    key = pointer.split("/")[2]
    messages = form.errors.get(f"attr__{key}", [])
    # The API's own detail for the same value, on the field the value was typed into.
    value = form.fields[f"attr__{key}"].to_python(fields[f"attr__{key}"])
    body = api.post(
        f"/api/v1/tenants/{tenant.slug}/users/",
        {"external_id": "bad", "attributes": {k: v for k, v in {"region": "eu", key: value}.items() if v is not None}},
        format="json",
    ).json()
    details = [f"{e['pointer']} [{e['rule']}] {e['detail']}" for e in body["errors"] if e["pointer"] == pointer]
    assert details and set(details) <= set(messages), (details, form.errors)
    assert any(f"{pointer} [{rule}]" in message for message in messages)
    assert not User.objects.filter(external_id="bad").exists()


def test_patch_merges_and_null_removes(tenant) -> None:  # type: ignore[no-untyped-def]
    user = services.user_create(tenant=tenant, external_id="m", attributes={"region": "eu", "level": 2})
    user = services.user_update(user=user, attributes={"level": None, "code": "XYZ"}, merge_attributes=True)
    assert user.attributes == {"region": "eu", "code": "XYZ"}
    with pytest.raises(ValidationFailed) as caught:
        services.user_update(user=user, attributes={"region": None}, merge_attributes=True)
    assert caught.value.errors[0].rule == "required"


def test_a_stored_pattern_the_linear_time_engine_cannot_run_refuses_values_instead_of_backtracking() -> None:
    from attributes.models import AttributeDefinition
    from attributes.validation import validate_value

    legacy = AttributeDefinition(key="code", type="string", pattern=r"(a)\1")  # stored before RE2, never saved here

    _, errors = validate_value(legacy, "aa", "/attributes/code")

    assert [(e.pointer, e.rule) for e in errors] == [("/attributes/code", "pattern")]


USER_FIELD_CASES = [
    ("over-long email", {"email": "a" * 250 + "@x.io"}, "/email", "type"),
    ("not an email", {"email": "nope"}, "/email", "email"),
    ("over-long display name", {"display_name": "x" * 201}, "/display_name", "max_length"),
    ("unknown status", {"status": "gone"}, "/status", "enum"),
    ("padded external id", {"external_id": " bob"}, "/external_id", "whitespace"),
]


@pytest.mark.parametrize(("name", "case", "pointer", "rule"), USER_FIELD_CASES, ids=[c[0] for c in USER_FIELD_CASES])
def test_single_and_bulk_writes_refuse_a_field_by_the_same_rule(tenant, name, case, pointer, rule) -> None:  # type: ignore[no-untyped-def]
    row = {"external_id": "bob", "attributes": {"region": "eu"}, **case}
    events = OutboxEvent.objects.count()
    with pytest.raises(ValidationFailed) as single:
        services.user_create(tenant=tenant, **row)
    report = services.users_upsert(tenant=tenant, rows=[(1, row)])
    assert [(e.pointer, e.rule, e.detail) for e in single.value.errors] == [
        (pointer, rule, report.errors[0][2][0].detail)
    ]
    assert [(e.pointer, e.rule) for e in report.errors[0][2]] == [(pointer, rule)]
    assert report.invalid == 1 and not User.objects.exists() and OutboxEvent.objects.count() == events


def test_an_update_checks_a_changed_field_by_the_same_rule(tenant) -> None:  # type: ignore[no-untyped-def]
    user = services.user_create(tenant=tenant, external_id="bob", attributes={"region": "eu"})
    with pytest.raises(ValidationFailed) as refused:
        services.user_update(user=user, display_name="x" * 201)
    assert [(e.pointer, e.rule) for e in refused.value.errors] == [("/display_name", "max_length")]
