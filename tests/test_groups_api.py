"""The groups REST API: CRUD with ETag/If-Match, filters, members (bulk and single), bad input."""

from __future__ import annotations

import uuid

import pytest

from groups.models import Membership
from tests.factories import DefinitionFactory, GroupFactory, TenantFactory, UserFactory
from tests.outbox_helpers import events

pytestmark = pytest.mark.django_db
BASE = "/api/v1/tenants/acme/groups/"


@pytest.fixture
def acme():  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    DefinitionFactory(tenant=tenant, key="department", type="string", target="user_and_group")
    return tenant


def test_crud_with_etags(api, acme) -> None:  # type: ignore[no-untyped-def]
    created = api.post(BASE, {"key": "eng", "priority": 5, "attributes": {"department": "eng"}}, format="json")
    assert created.status_code == 201, created.content
    assert created["ETag"] == '"1"'
    group_id = created.json()["id"]
    assert api.get(f"{BASE}{group_id}/").json()["attributes"] == {"department": "eng"}
    stale = api.patch(f"{BASE}{group_id}/", {"priority": 6}, format="json", HTTP_IF_MATCH='"7"')
    assert stale.status_code == 412
    patched = api.patch(f"{BASE}{group_id}/", {"priority": 6}, format="json", HTTP_IF_MATCH='"1"')
    assert (
        patched.status_code == 200
        and patched["ETag"] == '"2"'
        and patched.json()["attributes"] == {"department": "eng"}
    )
    put = api.put(f"{BASE}{group_id}/", {"key": "engineering"}, format="json")
    assert put.json()["priority"] == 0 and put.json()["attributes"] == {}
    assert api.get(BASE, {"key": "engineering"}).json()["results"][0]["id"] == group_id
    assert api.get(BASE, {"key": "eng"}).json()["results"] == []
    assert api.delete(f"{BASE}{group_id}/", HTTP_IF_MATCH='"3"').status_code == 204
    assert api.get(f"{BASE}{group_id}/").status_code == 404
    assert [t for t, _ in events(aggregate_type="group")] == [
        "GroupCreated",
        "GroupUpdated",
        "GroupUpdated",
        "GroupDeleted",
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"key": "eng", "unknown": 1},
        {"key": "eng", "priority": "1"},
        {"key": "eng", "priority": True},
        {"key": "eng", "attributes": []},
        {"key": "eng", "attributes": {"nope": 1}},
        {"key": "eng", "attributes": {"\u0130stanbul": "x"}},
        {"key": "ENG"},
        {"key": "e\u0301ng"},
        {"key": "eng", "external_id": "a\nb"},
    ],
    ids=repr,
)
def test_bad_bodies_are_400(api, acme, body) -> None:  # type: ignore[no-untyped-def]
    response = api.post(BASE, body, format="json")
    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    assert events(aggregate_type="group") == []


def test_duplicate_key_is_409(api, acme) -> None:  # type: ignore[no-untyped-def]
    assert api.post(BASE, {"key": "eng"}, format="json").status_code == 201
    assert api.post(BASE, {"key": "eng"}, format="json").status_code == 409


def test_members_bulk_add_list_remove(api, acme) -> None:  # type: ignore[no-untyped-def]
    group = GroupFactory(tenant=acme, key="eng")
    users = [UserFactory(tenant=acme) for _ in range(3)]
    sub = GroupFactory(tenant=acme, key="backend")
    url = f"{BASE}{group.id}/members/"
    added = api.post(url, {"ids": [str(u.id) for u in users] + [str(sub.id)]}, format="json")
    assert added.status_code == 200, added.content
    assert added.json()["groups"] == [str(sub.id)] and len(added.json()["users"]) == 3 and added["ETag"] == '"2"'
    listed = api.get(url).json()["results"]
    assert sorted(m["type"] for m in listed) == ["group", "user", "user", "user"]
    assert {"type": "group", "id": str(sub.id), "key": "backend"} in listed
    assert api.get(BASE, {"member": str(users[0].id)}).json()["results"][0]["key"] == "eng"
    removed = api.post(f"{url}remove/", {"ids": [str(users[0].id)]}, format="json", HTTP_IF_MATCH='"2"')
    assert removed.json() == {"users": [str(users[0].id)], "groups": [], "version": 3}
    assert api.delete(f"{url}{users[1].id}/").status_code == 200
    assert api.delete(f"{url}{users[1].id}/").status_code == 404  # no longer a member
    assert api.put(f"{url}{users[1].id}/").status_code == 200
    assert [t for t, _ in events(aggregate_id=group.id)][1:] == [
        "GroupMembersAdded", "GroupMembersRemoved", "GroupMembersRemoved", "GroupMembersAdded",
    ]  # fmt: skip


def test_bad_member_input(api, acme) -> None:  # type: ignore[no-untyped-def]
    other = TenantFactory(slug="other")
    group = GroupFactory(tenant=acme)
    url = f"{BASE}{group.id}/members/"
    mine, theirs, nowhere = UserFactory(tenant=acme), UserFactory(tenant=other), uuid.uuid4()
    response = api.post(url, {"ids": [str(mine.id), str(nowhere)]}, format="json")
    assert response.status_code == 400
    assert [e["pointer"] for e in response.json()["errors"]] == ["/ids/1"] and str(nowhere) in response.json()["detail"]
    assert not Membership.objects.exists()
    # another tenant's user or group: 404 as if absent, on the single-member door ...
    assert api.put(f"{url}{theirs.id}/").status_code == 404
    assert api.put(f"{url}{GroupFactory(tenant=other).id}/").status_code == 404
    assert api.put(f"{url}{nowhere}/").status_code == 404
    assert api.put(f"{url}not-a-uuid/").status_code == 404
    # ... and in bulk the same 400 as an id that exists nowhere
    bulk = api.post(url, {"ids": [str(theirs.id)]}, format="json").json()
    assert bulk["errors"][0]["rule"] == "unknown"
    # another tenant's group in the path
    assert api.get(f"/api/v1/tenants/other/groups/{group.id}/members/").status_code == 404
    for body in ({}, {"ids": "x"}, {"ids": []}, {"ids": [str(mine.id)], "more": 1}, [str(mine.id)]):
        assert api.post(url, body, format="json").status_code == 400, body
    assert api.post(url, {"ids": [str(uuid.uuid4()) for _ in range(1001)]}, format="json").status_code == 400
    assert events(event_type="GroupMembersAdded") == []


def test_nesting_conflicts_are_409_with_the_path(api, acme, settings) -> None:  # type: ignore[no-untyped-def]
    settings.GROUPS_MAX_DEPTH = 2
    a, b, c = (GroupFactory(tenant=acme, key=key) for key in "abc")
    assert api.post(f"{BASE}{a.id}/members/", {"ids": [str(b.id)]}, format="json").status_code == 200
    cycle = api.post(f"{BASE}{b.id}/members/", {"ids": [str(a.id)]}, format="json")
    assert cycle.status_code == 409 and cycle.json()["path"] == ["a", "b", "a"]
    deep = api.put(f"{BASE}{b.id}/members/{c.id}/")
    assert deep.status_code == 409 and deep.json()["path"] == ["a", "b", "c"]


def test_the_bulk_limit_in_one_request(api, acme) -> None:  # type: ignore[no-untyped-def]
    group = GroupFactory(tenant=acme)
    ids = [str(UserFactory(tenant=acme).id) for _ in range(1000)]
    response = api.post(f"{BASE}{group.id}/members/", {"ids": ids}, format="json")
    assert response.status_code == 200 and len(response.json()["users"]) == 1000
    assert events(event_type="GroupMembersAdded") == [("GroupMembersAdded", 2)]


def test_scopes(api, acme) -> None:  # type: ignore[no-untyped-def]
    from access.keys import api_key_create

    group = GroupFactory(tenant=acme)
    _, reader = api_key_create(name="r", scopes=["directory:read"], tenants=[acme])
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {reader}")
    assert client.get(f"{BASE}{group.id}/members/").status_code == 200
    assert client.post(f"{BASE}{group.id}/members/", {"ids": []}, format="json").status_code == 403
    assert client.post(BASE, {"key": "x"}, format="json").status_code == 403


def test_a_keys_group_pages_read_the_pii_keys_from_the_held_schema(acme) -> None:  # type: ignore[no-untyped-def]
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from rest_framework.test import APIClient

    from access.keys import api_key_create

    DefinitionFactory(tenant=acme, key="badge", type="string", target="user_and_group", pii=True)
    GroupFactory(tenant=acme, attributes={"department": "eng", "badge": "b-1"})
    _, reader = api_key_create(name="r", scopes=["directory:read"], tenants=[acme])  # no pii:read
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {reader}")
    assert client.get(BASE).json()["results"][0]["attributes"] == {"department": "eng"}  # the schema, now held
    with CaptureQueriesContext(connection) as page:
        listed = client.get(BASE).json()["results"]
    assert listed[0]["attributes"] == {"department": "eng"}, "the PII value withheld"
    assert not [q["sql"] for q in page.captured_queries if "attributes_attributedefinition" in q["sql"]]
