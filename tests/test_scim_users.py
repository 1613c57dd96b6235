"""SCIM Users (RFC 7644 §3.3-3.6): create, read, replace, patch, delete, through the user services."""

from __future__ import annotations

import pytest

from tests.factories import DefinitionFactory, TenantFactory
from tests.outbox_helpers import events
from tests.scim_helpers import ENTERPRISE, ERROR, TENANT_EXT, USER, Scim, user_body
from users.models import User

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme():  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    DefinitionFactory(tenant=tenant, key="clearance", type="integer", min_value=0, max_value=5)
    DefinitionFactory(tenant=tenant, key="contractor", type="boolean")
    DefinitionFactory(tenant=tenant, key="projects", type="string_list")
    return tenant


@pytest.fixture
def scim(acme):  # type: ignore[no-untyped-def]
    return Scim(acme)


BJENSEN = {
    "schemas": [USER, ENTERPRISE],
    "userName": "bjensen@example.com",
    "externalId": "bjensen",
    "name": {"formatted": "Ms. Barbara J Jensen III", "familyName": "Jensen", "givenName": "Barbara"},
    "displayName": "Babs Jensen",
    "title": "Tour Guide",
    "emails": [
        {"value": "bjensen@example.com", "type": "work", "primary": True},
        {"value": "babs@jensen.org", "type": "home"},
    ],
    ENTERPRISE: {"employeeNumber": "701984", "department": "Tour Operations", "manager": {"value": "26118915"}},
}


def test_create_then_get_round_trips_the_rfc_example(scim, acme) -> None:  # type: ignore[no-untyped-def]
    created = scim.post("/Users", {**BJENSEN, TENANT_EXT: {"clearance": 3}})
    assert created.status_code == 201, created.body
    assert created["Content-Type"].startswith("application/scim+json")
    body = created.body
    assert created["Location"].endswith(f"/scim/v2/tenants/acme/Users/{body['id']}")
    assert created["ETag"] == 'W/"1"' == body["meta"]["version"]
    assert body["userName"] == "bjensen@example.com" and body["active"] is True
    assert body[ENTERPRISE]["manager"] == {"value": "26118915"}
    assert body[TENANT_EXT] == {"clearance": 3}
    assert set(body["schemas"]) == {USER, ENTERPRISE, TENANT_EXT}
    user = User.objects.get(pk=body["id"])
    assert (user.external_id, user.email, user.display_name, user.attributes) == (
        "bjensen@example.com", "bjensen@example.com", "Babs Jensen", {"clearance": 3},
    )  # fmt: skip
    assert user.profile["name"]["familyName"] == "Jensen" and user.profile["externalId"] == "bjensen"
    fetched = scim.get(f"/Users/{body['id']}")
    assert fetched.status_code == 200 and fetched.body == body
    assert events(aggregate_type="user") == [("UserCreated", 1)]


def test_tenant_attributes_are_validated_like_every_door(scim) -> None:  # type: ignore[no-untyped-def]
    response = scim.post("/Users", user_body("x", **{TENANT_EXT: {"clearance": 9}}))
    assert response.status_code == 400 and response.body["scimType"] == "invalidValue"
    assert response.body["schemas"] == [ERROR] and response.body["status"] == "400"
    assert "clearance" in response.body["detail"]
    for bad in ({"nope": 1}, {"clearance": "3"}, {"projects": "a"}):
        assert scim.post("/Users", user_body("x", **{TENANT_EXT: bad})).status_code == 400, bad
    entra = scim.post("/Users", user_body("x", **{TENANT_EXT: {"contractor": "False", "projects": ["a"]}}))
    assert entra.status_code == 201 and entra.body[TENANT_EXT] == {"contractor": False, "projects": ["a"]}
