"""Attribute search through the API: operator × type matrix, q= expressions, ordering, hostile input."""

from __future__ import annotations

import pytest

from tests.factories import DefinitionFactory, TenantFactory, UserFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/tenants/corp/users/"


@pytest.fixture
def corp():  # type: ignore[no-untyped-def]
    """Five users over one of each attribute type, plus a stranger tenant typing ``clearance`` as text."""
    tenant = TenantFactory(slug="corp")
    for key, kind, extra in [
        ("name", "string", {}),
        ("department", "enum", {"allowed_values": ["eng", "sales", "ops"]}),
        ("clearance", "integer", {}),
        ("score", "number", {}),
        ("contractor", "boolean", {}),
        ("hired", "date", {}),
        ("seen", "datetime", {}),
        ("groups", "string_list", {}),
    ]:
        DefinitionFactory(tenant=tenant, key=key, type=kind, **extra)
    rows = {
        "a": {"name": "Ada Lovelace", "department": "eng", "clearance": 5, "score": 9.5, "contractor": False,
              "hired": "2020-01-15", "seen": "2026-01-01T10:00:00Z", "groups": ["admins", "eng"]},
        "b": {"name": "Bob 100%_off", "department": "sales", "clearance": 2, "score": 4, "contractor": True,
              "hired": "2023-06-01", "seen": "2026-01-02T10:00:00+02:00", "groups": ["sales"]},
        "c": {"name": "carol", "department": "eng", "clearance": 3, "score": 7.25, "contractor": True,
              "hired": "2021-03-03", "groups": ["eng", "oncall"]},
        "d": {"department": "ops", "clearance": 1, "groups": []},
        "e": {},
    }  # fmt: skip
    for external_id, attributes in rows.items():
        UserFactory(tenant=tenant, external_id=external_id, attributes=attributes)
    other = TenantFactory(slug="other")
    DefinitionFactory(tenant=other, key="clearance", type="string")
    DefinitionFactory(tenant=other, key="hired", type="string")
    UserFactory(tenant=other, external_id="x", attributes={"clearance": "top", "hired": "2021-02-30"})
    return tenant


def ids(api, params) -> list[str]:  # type: ignore[no-untyped-def]
    response = api.get(URL, params)
    assert response.status_code == 200, response.content
    return sorted(user["external_id"] for user in response.json()["results"])


def bad(api, params, pointer: str, rule: str) -> dict:  # type: ignore[no-untyped-def]
    response = api.get(URL, params)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    error = response.json()["errors"][0]
    assert (error["pointer"], error["rule"]) == (pointer, rule), error
    return error


MATRIX = [
    # string
    ("name eq carol", ["c"]),
    ("name ne carol", ["a", "b"]),
    ('name in ("carol", "Ada Lovelace")', ["a", "c"]),
    ("name contains LOVE", ["a"]),
    ('name contains "0%_"', ["b"]),
    ("name startswith CA", ["c"]),
    ("name exists", ["a", "b", "c"]),
    ("name missing", ["d", "e"]),
    # enum
    ("department eq eng", ["a", "c"]),
    ("department ne eng", ["b", "d"]),
    ("department in (sales, ops)", ["b", "d"]),
    ("department startswith s", ["b"]),
    # integer
    ("clearance eq 3", ["c"]),
    ("clearance ne 3", ["a", "b", "d"]),
    ("clearance in (1, 5)", ["a", "d"]),
    ("clearance lt 3", ["b", "d"]),
    ("clearance le 3", ["b", "c", "d"]),
    ("clearance gt 3", ["a"]),
    ("clearance ge 3", ["a", "c"]),
    ("clearance between (2, 3)", ["b", "c"]),
    ("clearance missing", ["e"]),
    # number
    ("score eq 4", ["b"]),
    ("score eq 4.0", ["b"]),
    ("score gt 7.25", ["a"]),
    ("score between (4, 7.25)", ["b", "c"]),
    ("score exists", ["a", "b", "c"]),
    # boolean
    ("contractor eq true", ["b", "c"]),
    ("contractor ne true", ["a"]),
    ("contractor in (true, false)", ["a", "b", "c"]),
    ("contractor missing", ["d", "e"]),
    # date
    ("hired eq 2021-03-03", ["c"]),
    ("hired lt 2021-03-03", ["a"]),
    ("hired ge 2021-03-03", ["b", "c"]),
    ("hired between (2020-01-01, 2022-01-01)", ["a", "c"]),
    # datetime: +02:00 is 08:00Z
    ("seen lt 2026-01-02T09:00:00Z", ["a", "b"]),
    ("seen gt 2026-01-02T07:59:59Z", ["b"]),
    ('seen eq "2026-01-01T10:00:00Z"', ["a"]),
    # string_list
    ("groups has eng", ["a", "c"]),
    ("groups eq eng", ["a", "c"]),
    ("groups any (sales, oncall)", ["b", "c"]),
    ("groups all (eng, admins)", ["a"]),
    ("groups exists", ["a", "b", "c", "d"]),
    ("groups missing", ["e"]),
    # combinations
    ("clearance ge 3 AND department eq eng AND NOT contractor eq true", ["a"]),
    ("department eq sales OR clearance ge 5", ["a", "b"]),
    ("NOT clearance ge 3", ["b", "d", "e"]),
    ("NOT (clearance ge 3 OR groups has sales)", ["d", "e"]),
    ("not (name startswith a) and clearance exists", ["b", "c", "d"]),
    ("NOT NOT clearance eq 3", ["c"]),
]


# With the keys searchable, an equality is also compiled to the typed expression (for the key's
# index): it must find exactly what containment finds — case, offsets and 4 vs 4.0 included.
SEARCHABLE_EDGES = [
    ('name eq "ada lovelace"', []),  # containment is case-sensitive; lower() alone would match
    ('name eq "Ada Lovelace"', ["a"]),
    ("NOT name eq carol", ["a", "b", "d", "e"]),
    ("department eq eng", ["a", "c"]),
    ("score eq 9.50", ["a"]),
    ('seen eq "2026-01-02T08:00:00Z"', []),  # eq compares the stored text (+02:00)...
    ('seen between ("2026-01-02T08:00:00Z", "2026-01-02T08:00:00Z")', ["b"]),  # ...between the instant
    ("clearance between (3, 3)", ["c"]),
    ("NOT clearance between (3, 3)", ["a", "b", "d", "e"]),
    ("hired between (2021-03-03, 2021-03-03)", ["c"]),
]


@pytest.mark.parametrize(("expression", "expected"), MATRIX + SEARCHABLE_EDGES)
def test_operator_by_type_matrix(api, corp, expression, expected) -> None:  # type: ignore[no-untyped-def]
    assert ids(api, {"q": expression}) == expected


@pytest.mark.parametrize(("expression", "expected"), MATRIX + SEARCHABLE_EDGES)
def test_the_matrix_answers_the_same_when_the_keys_are_searchable(api, corp, expression, expected) -> None:  # type: ignore[no-untyped-def]
    from attributes.models import AttributeDefinition, SearchIndex
    from attributes.search_indexes import INDEXED_TYPES, index_name
    from core.guards import domain_write

    with domain_write():
        indexed = AttributeDefinition.objects.filter(tenant=corp, type__in=INDEXED_TYPES)
        indexed.update(searchable=True)
        for definition in indexed:  # the indexes' rows, as the worker leaves them (no index needed here)
            SearchIndex.objects.create(definition=definition, name=index_name(definition), state="ready")
    assert ids(api, {"q": expression}) == expected


def test_parameters_are_anded_and_plain_equality_still_works(api, corp) -> None:  # type: ignore[no-untyped-def]
    assert ids(api, {"attr.department": "eng"}) == ["a", "c"]
    assert ids(api, {"attr.groups": "eng"}) == ["a", "c"]
    assert ids(api, {"attr.clearance__ge": "3", "attr.contractor": "true"}) == ["c"]
    assert ids(api, {"attr.clearance__between": "1,2"}) == ["b", "d"]
    assert ids(api, {"attr.department__in": "sales,ops", "q": "clearance gt 1"}) == ["b"]
    assert ids(api, {"attr.name__missing": ""}) == ["d", "e"]
    assert ids(api, {"attr.groups__all": "eng,oncall", "status": "active"}) == ["c"]


def test_ordering_by_an_attribute_pages_with_the_cursor(api, corp) -> None:  # type: ignore[no-untyped-def]
    response = api.get(URL, {"ordering": "-attr.clearance", "page_size": 2})
    assert response.status_code == 200, response.content
    first = [u["external_id"] for u in response.json()["results"]]
    rest = api.get(response.json()["next"]).json()
    assert first + [u["external_id"] for u in rest["results"]] == ["a", "c", "b", "d"]
    assert [u["external_id"] for u in api.get(URL, {"ordering": "attr.hired"}).json()["results"]] == ["a", "c", "b"]
    bad(api, {"ordering": "attr.groups"}, "/ordering", "ordering")
    bad(api, {"ordering": "attr.nope"}, "/ordering", "ordering")


@pytest.mark.parametrize(
    ("params", "pointer", "rule"),
    [
        ({"q": "nope eq 1"}, "/q", "unknown"),
        ({"q": "clearance contains 3"}, "/q", "operator"),
        ({"q": "name lt b"}, "/q", "operator"),
        ({"q": "groups ge a"}, "/q", "operator"),
        ({"q": "contractor startswith t"}, "/q", "operator"),
        ({"q": "clearance ge three"}, "/q", "type"),
        ({"q": "clearance ge 1.5"}, "/q", "type"),
        ({"q": "clearance ge ١٢"}, "/q", "syntax"),
        ({"q": "score gt 1e999999"}, "/q", "type"),
        ({"q": "hired lt 2021-02-30"}, "/q", "type"),
        ({"q": "seen lt 2026-01-01T10:00:00"}, "/q", "type"),
        ({"q": "department eq hr"}, "/q", "enum"),
        ({"q": "contractor eq yes"}, "/q", "type"),
        ({"q": "clearance between (1)"}, "/q", "between"),
        ({"q": "clearance eq (1, 2)"}, "/q", "value"),
        ({"q": "clearance frobs 1"}, "/q", "operator"),
        ({"q": "(clearance eq 1"}, "/q", "syntax"),
        ({"q": "clearance eq 1)"}, "/q", "syntax"),
        ({"q": "clearance eq 1 AND"}, "/q", "syntax"),
        ({"q": ""}, "/q", "syntax"),
        ({"q": "(" * 50 + "clearance eq 1" + ")" * 50}, "/q", "too_deep"),
        ({"q": "NOT " * 50 + "clearance eq 1"}, "/q", "too_deep"),
        ({"q": " OR ".join(["clearance eq 1"] * 30)}, "/q", "too_many"),
        ({"q": "name eq " + "x" * 600}, "/q", "too_long"),
        ({"q": "x" * 5000}, "/q", "too_long"),
        ({"q": "name eq '1'; DROP TABLE users_user; --"}, "/q", "syntax"),
        ({"q": 'name eq "x" OR 1=1 --'}, "/q", "syntax"),
        ({"q": "clearance' OR '1'='1 eq 1"}, "/q", "syntax"),
        ({"q": "attributes->>'x' eq 1"}, "/q", "syntax"),
        ({"q": "Clearance eq 1"}, "/q", "key"),
        ({"q": "ᴄlearance eq 1"}, "/q", "syntax"),
        ({"q": "clearance eq 1 \u202e OR name eq x"}, "/q", "syntax"),
        ({"attr.nope": "1"}, "/attr.nope", "unknown"),
        ({"attr.clearance": "three"}, "/attr.clearance", "type"),
        ({"attr.clearance__frobs": "1"}, "/attr.clearance__frobs", "operator"),
        ({"attr.name__ge": "a"}, "/attr.name__ge", "operator"),
        ({"attr.clearance__in": ",".join(["1"] * 200)}, "/attr.clearance__in", "too_many"),
        ({"attr.clearance__exists": "false"}, "/attr.clearance__exists", "value"),
        ({"attr.x'; DROP TABLE users_user; --": "1"}, "/attr.x'; DROP TABLE users_user; --", "key"),
        ({"attr.clearance')::int OR 1=1--": "1"}, "/attr.clearance')::int OR 1=1--", "key"),
        ({"attr.name": "'; SELECT pg_sleep(10); --"}, None, None),
    ],
)
def test_bad_queries_are_400_naming_the_parameter_and_rule(api, corp, params, pointer, rule) -> None:  # type: ignore[no-untyped-def]
    if pointer is None:  # a hostile value that is a fine string: searched for literally, matches nothing
        assert ids(api, params) == []
        return
    bad(api, params, pointer, rule)


def test_nul_is_refused_before_the_search(api, corp) -> None:  # type: ignore[no-untyped-def]
    for params in ({"q": "name eq \x00"}, {"attr.name": "a\x00b"}):
        response = api.get(URL, params)
        assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"


def test_too_many_attribute_parameters(api, corp) -> None:  # type: ignore[no-untyped-def]
    params = {f"attr.k{i}": "1" for i in range(25)}
    bad(api, params, "/attr", "too_many")


def test_a_key_typed_differently_in_another_tenant_never_breaks_a_cast(api, corp) -> None:  # type: ignore[no-untyped-def]
    # tenant "other" stores clearance "top" and hired "2021-02-30" as strings: no cast error leaks
    assert ids(api, {"q": "clearance ge 0 OR hired ge 2000-01-01"}) == ["a", "b", "c", "d"]


# --- the console ----------------------------------------------------------------------------------
CHANGELIST = "/admin/users/user/"


def listed(response) -> list[str]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200
    return sorted(user.external_id for user in response.context["cl"].result_list)


def test_console_search_box_takes_expressions_for_the_chosen_tenant(admin_client_logged_in, corp) -> None:  # type: ignore[no-untyped-def]
    client = admin_client_logged_in
    tenant = {"tenant__id__exact": str(corp.id)}
    page = client.get(CHANGELIST, {"q": "clearance ge 3 AND NOT contractor eq true", **tenant})
    assert listed(page) == ["a"]
    assert listed(client.get(CHANGELIST, {"q": "groups any (sales, oncall)", **tenant})) == ["b", "c"]
    # the chosen tenant's keys and their operators are suggested under the box
    help_text = page.content.decode()
    assert 'id="search-keys"' in help_text and "<code>clearance</code> (integer)" in help_text
    assert "between" in help_text
    # plain text still searches external id, e-mail and name
    assert listed(client.get(CHANGELIST, {"q": "x@"})) == ["x"]


def test_console_expression_errors_are_messages_not_500s(admin_client_logged_in, corp) -> None:  # type: ignore[no-untyped-def]
    client = admin_client_logged_in
    page = client.get(CHANGELIST, {"q": "clearance contains 3", "tenant__id__exact": str(corp.id)})
    assert listed(page) == []
    assert "does not apply to integer" in page.content.decode()
    page = client.get(CHANGELIST, {"q": "clearance ge 3"})  # no tenant chosen: which definitions?
    assert listed(page) == [] and "Choose a tenant" in page.content.decode()
    page = client.get(CHANGELIST, {"q": "(" * 40 + "clearance eq 1" + ")" * 40, "tenant__id__exact": str(corp.id)})
    assert page.status_code == 200  # too deep: not an expression, so a (fruitless) text search


def test_searchable_is_editable_through_the_api(api, corp, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    url = "/api/v1/tenants/corp/attribute-definitions/clearance/"
    assert api.get(url).json()["searchable"] is False
    with django_capture_on_commit_callbacks() as callbacks:  # the index build is queued on commit
        response = api.patch(url, {"searchable": True}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["searchable"] is True and len(callbacks) == 1
    response = api.patch("/api/v1/tenants/corp/attribute-definitions/groups/", {"searchable": True}, format="json")
    assert response.status_code == 400 and response.json()["errors"][0]["pointer"] == "/searchable"


# --- the tenant's schema, held by the process between requests (attributes.selectors.tenant_schema) -----
def _definition_reads(api, params) -> tuple[int, list[str]]:  # type: ignore[no-untyped-def]
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        found = ids(api, params)
    return sum("attributes_attributedefinition" in q["sql"] for q in queries.captured_queries), found


def test_a_search_reads_the_tenants_schema_once_and_every_change_on_the_next_request(api, corp) -> None:  # type: ignore[no-untyped-def]
    assert _definition_reads(api, {"q": "clearance ge 3"}) == (1, ["a", "c"])
    assert _definition_reads(api, {"q": "clearance ge 3"}) == (0, ["a", "c"])  # held: no query
    bad(api, {"q": "level eq 2"}, "/q", "unknown")
    UserFactory(tenant=corp, external_id="f", attributes={})
    base = "/api/v1/tenants/corp/attribute-definitions/"
    created = api.post(base, {"key": "level", "type": "integer"}, format="json")
    assert created.status_code == 201, created.content
    # The write bumped the tenant's schema version: the next request, in any process, reads it again.
    assert _definition_reads(api, {"q": "level missing"}) == (1, ["a", "b", "c", "d", "e", "f"])
    deleted = api.delete(f"{base}level/", HTTP_IF_MATCH=created["ETag"])
    assert deleted.status_code == 204, deleted.content
    bad(api, {"q": "level missing"}, "/q", "unknown")


def test_a_change_that_bypasses_the_services_is_seen_once_the_held_schema_is_old(api, corp, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Every service that changes a definition bumps the tenant's schema version; anything else (a data
    fix in SQL) is seen within SCHEMA_SECONDS, as is a search index built by another process."""
    from attributes import selectors
    from attributes.models import AttributeDefinition
    from core.guards import domain_write

    assert ids(api, {"q": "clearance ge 3"}) == ["a", "c"]
    with domain_write():  # not through the services: no version bump
        AttributeDefinition.objects.create(tenant=corp, key="level", type="integer")
    bad(api, {"q": "level missing"}, "/q", "unknown")  # the held schema
    monkeypatch.setattr(selectors, "SCHEMA_SECONDS", 0.0)
    assert ids(api, {"q": "level missing"}) == ["a", "b", "c", "d", "e"]
