"""Query counts of the SCIM lists (no statement per row), and HEAD wherever GET is."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from groups.services import group_members_add
from tests.factories import GroupFactory, TenantFactory, UserFactory
from tests.scim_helpers import Scim

pytestmark = pytest.mark.django_db


def _statements(scim: Scim, path: str, params: dict | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    scim.get("/ServiceProviderConfig")  # the key's use recorded once, before counting
    with CaptureQueriesContext(connection) as queries:
        response = scim.get(path, params)
    assert response.status_code == 200, response.body
    return len(queries.captured_queries), response.body


def test_user_lists_read_groups_with_the_page() -> None:
    tenant = TenantFactory(slug="acme")
    scim = Scim(tenant)
    users = [UserFactory(tenant=tenant, external_id=f"u{i}") for i in range(12)]
    for index in range(3):
        group_members_add(group=GroupFactory(tenant=tenant), ids=[str(u.id) for u in users[index::3]])
    one, found = _statements(scim, "/Users", {"filter": 'userName eq "U1"'})
    # The lookup alone: the key is held, its revocation generation read in front of the lookup.
    assert one == 1 and found["totalResults"] == 1 and len(found["Resources"][0]["groups"]) == 1
    many, found = _statements(scim, "/Users", {"count": 5})
    # The page was full: a COUNT too. The key once: the lean door holds it and leaves a request that
    # is not a userName lookup to the full stack, which reads it (key, tenant, page, COUNT).
    assert many == 4 and found["totalResults"] == 12
    assert all(len(user["groups"]) == 1 for user in found["Resources"])


def test_group_lists_read_members_in_one_query() -> None:
    tenant = TenantFactory(slug="acme")
    scim = Scim(tenant)
    users = [str(UserFactory(tenant=tenant).id) for _ in range(6)]
    for index in range(3):
        group_members_add(group=GroupFactory(tenant=tenant), ids=users[index * 2 : index * 2 + 2])
    count, found = _statements(scim, "/Groups")
    assert count == 4 and [len(g["members"]) for g in found["Resources"]] == [2, 2, 2]  # key, tenant, page, members
    count, found = _statements(scim, "/Groups", {"excludedAttributes": "members"})
    assert count == 3 and all("members" not in g for g in found["Resources"])


def test_head_answers_like_get() -> None:
    tenant = TenantFactory(slug="acme")
    scim = Scim(tenant)
    user = UserFactory(tenant=tenant)
    for path in ("/Users", f"/Users/{user.id}", "/ServiceProviderConfig", "/Schemas"):
        response = scim.client.head(scim.base + path)
        assert response.status_code == 200 and response.content == b"", path


def test_the_lean_door_answers_the_user_name_lookup_as_the_full_stack_does() -> None:
    tenant = TenantFactory(slug="acme")
    scim = Scim(tenant)
    user = UserFactory(tenant=tenant, external_id="alice", attributes={})
    group_members_add(group=GroupFactory(tenant=tenant, key="eng"), ids=[str(user.id)])
    url = scim.base + "/Users"
    cases = [(url, {"filter": 'userName eq "ALICE"'}), (url, {"filter": 'userName eq "nobody"', "count": 3}),
             (f"/scim/v2/tenants/{tenant.id}/Users", {"filter": 'userName eq "alice"', "attributes": "userName,groups"})]  # fmt: skip
    for url, params in cases:
        lean = scim.client.get(url, params)
        full = scim.client.get(url, params, HTTP_ACCEPT="application/json")  # not the lean door's: the full stack's
        assert lean.status_code == full.status_code == 200
        assert lean.content == full.content and lean["Content-Type"] == "application/scim+json"
        assert lean["Allow"] == full["Allow"] and lean["Vary"] == "Accept"
    url = scim.base + "/Users"
    elsewhere = Scim(TenantFactory(slug="other"), name="other")
    refused = elsewhere.client.get(url, {"filter": 'userName eq "alice"'})  # a tenant the key does not reach
    assert refused.status_code == 404 and refused.json()["status"] == "404"
    bad_count = scim.client.get(url, {"filter": 'userName eq "alice"', "count": "x"})
    assert bad_count.status_code == 400 and bad_count["Content-Type"] == "application/scim+json"
    assert bad_count.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    reader = Scim(tenant, scopes=("pip:read",), name="reader")
    assert reader.client.get(url, {"filter": 'userName eq "alice"'}).status_code == 403  # the full stack's refusal
