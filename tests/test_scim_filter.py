"""SCIM filters (RFC 7644 §3.4.2.2) parsed, compiled to SQL and run by PostgreSQL; hostile filters
are a 400 invalidFilter, never a database error."""

from __future__ import annotations

import pytest

from scim.filter import And, AttrPath, BadFilter, Compare, Not, Or, ValuePath, parse_filter, parse_path
from tests.factories import DefinitionFactory, GroupFactory, TenantFactory
from tests.scim_helpers import ENTERPRISE, TENANT_EXT, Scim, user_body

RFC_FILTERS = [
    'userName eq "bjensen"',
    'name.familyName co "O\'Malley"',
    'userName sw "J"',
    'urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J"',
    "title pr",
    'meta.lastModified gt "2011-05-13T04:42:34Z"',
    'meta.lastModified ge "2011-05-13T04:42:34Z"',
    'meta.lastModified lt "2011-05-13T04:42:34Z"',
    'meta.lastModified le "2011-05-13T04:42:34Z"',
    'title pr and userType eq "Employee"',
    'title pr or userType eq "Intern"',
    'schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"',
    'userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")',
    'userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")',
    'userType eq "Employee" and (emails.type eq "work")',
    'userType eq "Employee" and emails[type eq "work" and value co "@example.com"]',
    'emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]',
]


@pytest.mark.parametrize("text", RFC_FILTERS)
def test_the_rfc_examples_parse(text: str) -> None:
    assert parse_filter(text) is not None


def test_precedence_and_shapes() -> None:
    node = parse_filter('a eq 1 or b pr and not (c lt "x")')
    assert node == Or(
        Compare(AttrPath(None, "a"), "eq", 1),
        And(Compare(AttrPath(None, "b"), "pr"), Not(Compare(AttrPath(None, "c"), "lt", "x"))),
    )
    assert parse_filter('emails[type EQ "work"]') == ValuePath(
        AttrPath(None, "emails"), Compare(AttrPath(None, "type"), "eq", "work")
    )
    assert parse_filter(f"{ENTERPRISE}:manager.value eq null") == Compare(
        AttrPath(ENTERPRISE, "manager", "value"), "eq", None
    )
    path = parse_path('members[value eq "2819c223"].display')
    assert path.path == AttrPath(None, "members") and path.sub == "display"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "userName",
        "userName eq",
        'userName zz "x"',
        'userName eq "x" and',
        '(userName eq "x"',
        'userName eq "x")',
        "userName eq x",
        'emails[type eq "w"',
        'userName eq "x" ; DROP TABLE users_user',
        "userName eq 'x'",
        '"userName" eq "x"',
        "not userName eq 1",
        "a" * 3000,
        "(" * 40 + "a pr" + ")" * 40,
        'userName eq "\\x"',
        "userName eq 1e999999x",
    ],
)
def test_bad_filters_do_not_parse(text: str) -> None:
    with pytest.raises(BadFilter):
        parse_filter(text)


@pytest.fixture
def world(db):  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    DefinitionFactory(tenant=tenant, key="clearance", type="integer")
    DefinitionFactory(tenant=tenant, key="remote", type="boolean")
    DefinitionFactory(tenant=tenant, key="projects", type="string_list")
    DefinitionFactory(tenant=tenant, key="hired", type="datetime")
    scim = Scim(tenant)
    people = {
        "alice": {"emails": [{"value": "alice@work.example", "type": "work", "primary": True}], "title": "Boss",
                  "name": {"familyName": "Liddell"}, TENANT_EXT: {"clearance": 5, "remote": True, "projects": ["x", "y"],
                  "hired": "2020-01-01T00:00:00Z"}, ENTERPRISE: {"department": "Eng"}},
        "bob": {"emails": [{"value": "bob@home.example", "type": "home"}], "name": {"familyName": "O'Malley"},
                TENANT_EXT: {"clearance": 2, "remote": False, "projects": ["y"]}, "active": False},
        "Carol": {"externalId": "c-1", TENANT_EXT: {"clearance": 3}},
    }  # fmt: skip
    ids = {}
    for name, extra in people.items():
        created = scim.post("/Users", user_body(name, **extra))
        assert created.status_code == 201, created.body
        ids[name] = created.body["id"]
    group = GroupFactory(tenant=tenant, key="eng")
    from groups.services import group_members_add

    group_members_add(group=group, ids=[ids["alice"]])
    return scim, ids, group


QUERIES = [
    ('userName eq "ALICE"', {"alice"}),
    ('userName ne "alice"', {"bob", "Carol"}),
    ('userName sw "c"', {"Carol"}),
    ('userName ew "OB"', {"bob"}),
    ('userName co "li"', {"alice"}),
    ('userName gt "b"', {"bob", "Carol"}),
    ('externalId eq "c-1"', {"Carol"}),
    ('externalId eq "C-1"', set()),
    ("title pr", {"alice"}),
    ("not (title pr)", {"bob", "Carol"}),
    ("active eq false", {"bob"}),
    ('active eq "True"', {"alice", "Carol"}),
    ('name.familyName eq "o\'malley"', {"bob"}),
    ('emails co "work.example"', {"alice"}),
    ('emails[type eq "work" and value sw "alice"]', {"alice"}),
    ('emails[type eq "home"] or userName eq "carol"', {"bob", "Carol"}),
    ("emails.primary eq true", {"alice"}),
    ("emails pr", {"alice", "bob"}),
    (f"{TENANT_EXT}:clearance ge 3", {"alice", "Carol"}),
    (f"{TENANT_EXT}:clearance lt 2.5", {"bob"}),
    (f"{TENANT_EXT}:remote eq false", {"bob"}),
    (f'{TENANT_EXT}:projects eq "y"', {"alice", "bob"}),
    (f'{TENANT_EXT}:hired gt "2019-12-31T00:00:00Z"', {"alice"}),
    (f"{TENANT_EXT}:hired pr", {"alice"}),
    (f'{ENTERPRISE}:department eq "eng"', {"alice"}),
    ('meta.created gt "2000-01-01T00:00:00Z"', {"alice", "bob", "Carol"}),
    # RFC 7644 §3.4.2.2's example: the resources that carry the enterprise extension.
    (f'schemas eq "{ENTERPRISE}"', {"alice"}),
    (f'schemas eq "{ENTERPRISE.upper()}"', {"alice"}),
    (f'schemas eq "{TENANT_EXT}" and not (schemas eq "{ENTERPRISE}")', {"bob", "Carol"}),
    ('schemas eq "urn:ietf:params:scim:schemas:core:2.0:User"', {"alice", "bob", "Carol"}),
]


@pytest.mark.parametrize(("text", "expected"), QUERIES, ids=[q for q, _ in QUERIES])
def test_filters_run_in_sql(world, text, expected) -> None:  # type: ignore[no-untyped-def]
    scim, _, _ = world
    response = scim.get("/Users", {"filter": text})
    assert response.status_code == 200, response.body
    assert {r["userName"] for r in response.body["Resources"]} == expected
    assert response.body["totalResults"] == len(expected)


def test_groups_value_filter(world) -> None:  # type: ignore[no-untyped-def]
    scim, ids, group = world
    found = scim.get("/Users", {"filter": f'groups.value eq "{group.id}"'}).body
    assert [r["id"] for r in found["Resources"]] == [ids["alice"]]
    assert found["Resources"][0]["groups"][0]["value"] == str(group.id)


HOSTILE = [
    'userName eq "\\u0000"',
    f'{TENANT_EXT}:clearance gt "3; DROP TABLE users_user"',
    f'{TENANT_EXT}:clearance co "1"',
    f"{TENANT_EXT}:nope eq 1",
    f"{TENANT_EXT}:clearance eq true",
    'users_user.id eq "1"',
    'meta.created gt "yesterday"',
    "active gt true",
    'emails[value eq "x"].value eq "y"',
    "emails[emails[value pr]]",
    "urn:evil:thing eq 1",
    'urn:ietf:params:scim:schemas:core:2.0:User:password eq "x"',
    'name.nope eq "x"',
    "id eq 99999999999999999999999999999999",
    f"{TENANT_EXT}:clearance gt 1e400",
    "userName eq " + "9" * 500,
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_filters_are_400_invalid_filter(world, text) -> None:  # type: ignore[no-untyped-def]
    scim, _, _ = world
    response = scim.get("/Users", {"filter": text})
    assert response.status_code == 400, response.body
    assert response.body["scimType"] == "invalidFilter", response.body


def test_quotes_in_values_are_data(world) -> None:  # type: ignore[no-untyped-def]
    scim, _, _ = world
    for text in ("userName eq \"x' OR '1'='1\"", 'userName eq "x\' OR 1=1 --"', 'userName eq "x\\" or 1 eq 1"'):
        response = scim.get("/Users", {"filter": text})
        assert response.status_code == 200 and response.body["totalResults"] == 0, text


def test_sorting_and_pages(world) -> None:  # type: ignore[no-untyped-def]
    scim, _, _ = world
    names = lambda body: [r["userName"] for r in body["Resources"]]  # noqa: E731
    assert names(scim.get("/Users", {"sortBy": "userName"}).body) == ["alice", "bob", "Carol"]
    assert names(scim.get("/Users", {"sortBy": "userName", "sortOrder": "descending"}).body) == [
        "Carol",
        "bob",
        "alice",
    ]
    second = scim.get("/Users", {"sortBy": "userName", "startIndex": 2, "count": 1}).body
    assert (names(second), second["startIndex"], second["itemsPerPage"], second["totalResults"]) == (["bob"], 2, 1, 3)
    assert scim.get("/Users", {"count": 0}).body["Resources"] == []
    assert scim.get("/Users", {"startIndex": 0}).body["startIndex"] == 1
    assert scim.get("/Users", {"sortBy": "emails"}).status_code == 400
    assert scim.get("/Users", {"sortOrder": "sideways"}).status_code == 400
    assert scim.get("/Users", {"count": "many"}).status_code == 400


def test_attributes_and_excluded_attributes(world) -> None:  # type: ignore[no-untyped-def]
    scim, ids, _ = world
    only = scim.get("/Users", {"filter": 'userName eq "alice"', "attributes": "userName,name.familyName"}).body
    assert only["Resources"][0].keys() == {"schemas", "id", "userName", "name"}
    assert only["Resources"][0]["name"] == {"familyName": "Liddell"}
    ext = scim.get(f"/Users/{ids['alice']}", {"attributes": f"{TENANT_EXT}:clearance"}).body
    assert ext[TENANT_EXT] == {"clearance": 5} and "userName" not in ext
    without = scim.get(f"/Users/{ids['alice']}", {"excludedAttributes": f"emails,groups,{TENANT_EXT}"}).body
    assert "emails" not in without and "groups" not in without and TENANT_EXT not in without
    assert without["userName"] == "alice" and without[ENTERPRISE] == {"department": "Eng"}
