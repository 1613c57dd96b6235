"""SCIM Groups: displayName, externalId, members (users and groups); PATCH of members by id, including
``members[value eq "…"]`` paths, without loading a large group's members."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from groups.models import Group, Membership
from groups.services import group_members_add
from tests.factories import GroupFactory, TenantFactory, UserFactory
from tests.outbox_helpers import events
from tests.scim_helpers import GROUP, Scim
from users.services import users_upsert

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme():  # type: ignore[no-untyped-def]
    return TenantFactory(slug="acme")


@pytest.fixture
def scim(acme):  # type: ignore[no-untyped-def]
    return Scim(acme)


def _members(group_id: str) -> set[str]:
    return {str(m.user_id or m.child_id) for m in Membership.objects.filter(group_id=group_id)}


def test_create_get_list_with_members(scim, acme) -> None:  # type: ignore[no-untyped-def]
    alice, bob = UserFactory(tenant=acme, external_id="alice"), UserFactory(tenant=acme, external_id="bob")
    sub = GroupFactory(tenant=acme, key="backend", display_name="Backend")
    created = scim.post(
        "/Groups",
        {"schemas": [GROUP], "displayName": "Tour Guides", "externalId": "okta-1",
         "members": [{"value": str(alice.id)}, {"value": str(sub.id), "type": "Group"}]},
    )  # fmt: skip
    assert created.status_code == 201, created.body
    body = created.body
    assert body["displayName"] == "Tour Guides" and body["externalId"] == "okta-1" and created["ETag"] == 'W/"2"'
    assert {(m["value"], m["type"]) for m in body["members"]} == {(str(alice.id), "User"), (str(sub.id), "Group")}
    assert Group.objects.get(pk=body["id"]).key == "tour-guides"
    assert scim.get(f"/Groups/{body['id']}").body == body
    found = scim.get("/Groups", {"filter": 'displayName eq "tour guides"', "excludedAttributes": "members"}).body
    assert found["totalResults"] == 1 and "members" not in found["Resources"][0]
    by_member = scim.get("/Groups", {"filter": f'members[value eq "{alice.id}"]'}).body
    assert [g["id"] for g in by_member["Resources"]] == [body["id"]]
    assert scim.get("/Groups", {"filter": 'externalId eq "okta-1"'}).body["totalResults"] == 1
    assert scim.get("/Groups", {"filter": 'members.type eq "group"'}).body["totalResults"] == 1
    user = scim.get(f"/Users/{alice.id}").body
    assert user["groups"] == [
        {
            "value": body["id"],
            "$ref": f"http://testserver/scim/v2/tenants/acme/Groups/{body['id']}",
            "display": "Tour Guides",
        }
    ]
    again = scim.post("/Groups", {"displayName": "Tour Guides"})
    assert again.status_code == 201 and Group.objects.get(pk=again.body["id"]).key.startswith("tour-guides-")
    assert scim.post("/Groups", {"displayName": "Other", "externalId": "okta-1"}).body["scimType"] == "uniqueness"
    assert bob.external_id == "bob"


def test_bad_groups_are_400_and_write_nothing(scim, acme) -> None:  # type: ignore[no-untyped-def]
    theirs = UserFactory(tenant=TenantFactory(slug="other"))
    for body in ({}, {"displayName": ""}, {"displayName": "x", "members": [{"value": str(theirs.id)}]},
                 {"displayName": "x", "members": [{"value": "nope"}]}, {"displayName": "x", "owner": "me"}):  # fmt: skip
        response = scim.post("/Groups", body)
        assert response.status_code == 400 and response.body["scimType"] == "invalidValue", body
    assert not Group.objects.exists() and events(aggregate_type="group") == []


def test_patch_members(scim, acme) -> None:  # type: ignore[no-untyped-def]
    users = [UserFactory(tenant=acme) for _ in range(4)]
    ids = [str(u.id) for u in users]
    group = scim.post("/Groups", {"displayName": "Eng"}).body
    url = f"/Groups/{group['id']}"
    added = scim.patch(url, [{"op": "Add", "path": "members", "value": [{"value": i} for i in ids[:3]]}])
    assert added.status_code == 204 and added["ETag"] == 'W/"2"' and _members(group["id"]) == set(ids[:3])
    removed = scim.patch(url, [{"op": "Remove", "path": f'members[value eq "{ids[0]}"]'}], HTTP_IF_MATCH='W/"2"')
    assert removed.status_code == 204 and _members(group["id"]) == set(ids[1:3])
    entra = scim.patch(url, [{"op": "Remove", "path": "members", "value": [{"value": ids[1]}]}])
    assert entra.status_code == 204 and _members(group["id"]) == {ids[2]}
    replaced = scim.patch(url, [{"op": "replace", "path": "members", "value": [{"value": ids[3]}, {"value": ids[2]}]}])
    assert replaced.status_code == 204 and _members(group["id"]) == {ids[2], ids[3]}
    renamed = scim.patch(
        url,
        [{"op": "replace", "value": {"id": group["id"], "displayName": "Engineering"}}],
        QUERY_STRING="attributes=displayName",
    )
    assert renamed.status_code == 200 and renamed.body["displayName"] == "Engineering" and "members" not in renamed.body
    everyone = scim.patch(url, [{"op": "remove", "path": "members"}])
    assert everyone.status_code == 204 and _members(group["id"]) == set()
    assert scim.patch(url, [{"op": "remove", "path": "members"}], HTTP_IF_MATCH='W/"2"').status_code == 412
    bad = scim.patch(url, [{"op": "remove", "path": 'members[type eq "User"]'}])
    assert bad.status_code == 400 and bad.body["scimType"] == "invalidFilter"
    assert (
        scim.patch(url, [{"op": "add", "path": 'members[value eq "x"]', "value": 1}]).body["scimType"] == "invalidPath"
    )
    assert [t for t, _ in events(aggregate_type="group")] == [
        "GroupCreated", "GroupMembersAdded", "GroupMembersRemoved", "GroupMembersRemoved",
        "GroupMembersAdded", "GroupUpdated", "GroupMembersRemoved",
    ]  # fmt: skip


def test_put_and_delete(scim, acme) -> None:  # type: ignore[no-untyped-def]
    a, b = UserFactory(tenant=acme), UserFactory(tenant=acme)
    group = scim.post("/Groups", {"displayName": "Eng", "members": [{"value": str(a.id)}]}).body
    url = f"/Groups/{group['id']}"
    put = scim.put(url, {"displayName": "Eng 2", "members": [{"value": str(b.id)}]})
    assert put.status_code == 200 and put.body["displayName"] == "Eng 2" and _members(group["id"]) == {str(b.id)}
    assert scim.delete(url, HTTP_IF_MATCH='W/"1"').status_code == 412
    assert scim.delete(url).status_code == 204 and scim.get(url).status_code == 404


def test_a_large_group_is_patched_without_reading_its_members(scim, acme) -> None:  # type: ignore[no-untyped-def]
    report = users_upsert(tenant=acme, rows=[(i, {"external_id": f"u{i}"}) for i in range(1200)])
    assert report.created == 1200
    from users.models import User

    ids = [str(pk) for pk in User.objects.filter(tenant=acme).values_list("id", flat=True)]
    small, large = GroupFactory(tenant=acme, key="small"), GroupFactory(tenant=acme, key="large")
    group_members_add(group=small, ids=ids[:2])
    group_members_add(group=large, ids=ids[:1000])
    group_members_add(group=large, ids=ids[1000:1198])
    newcomer = UserFactory(tenant=acme)
    counts = {}
    assert scim.get("/ServiceProviderConfig").status_code == 200  # the key and tenant read once, before counting
    for group in (small, large):
        with CaptureQueriesContext(connection) as queries:
            response = scim.patch(
                f"/Groups/{group.id}",
                [{"op": "add", "path": "members", "value": [{"value": str(newcomer.id)}]},
                 {"op": "remove", "path": f'members[value eq "{ids[1]}"]'}],
            )  # fmt: skip
        assert response.status_code == 204
        counts[group.key] = len(queries.captured_queries)
        assert not any(
            'FROM "groups_membership"' in q["sql"] and "SELECT" in q["sql"][:10] for q in queries.captured_queries
        )
    assert counts["small"] == counts["large"]
    assert Membership.objects.filter(group=large).count() == 1198
