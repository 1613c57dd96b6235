"""The PATCH examples of RFC 7644 §3.5.2 (add, remove, replace; on Users and Groups), as the RFC
writes them."""

from __future__ import annotations

import pytest

from groups.models import Membership
from tenants.models import Tenant
from tests.factories import TenantFactory, UserFactory
from tests.scim_helpers import Scim, user_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def scim():  # type: ignore[no-untyped-def]
    return Scim(TenantFactory(slug="example"))


@pytest.fixture
def babs(scim):  # type: ignore[no-untyped-def]
    body = user_body(
        "bjensen",
        emails=[{"value": "bjensen@example.com", "type": "work", "primary": True}],
        addresses=[{"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood"}],
    )
    return scim.post("/Users", body).body


def test_3_5_2_1_add_without_a_path(scim, babs) -> None:  # type: ignore[no-untyped-def]
    response = scim.patch(
        f"/Users/{babs['id']}",
        [{"op": "add", "value": {"emails": [{"value": "babs@jensen.org", "type": "home"}], "nickName": "Babs"}}],
    )
    assert response.status_code == 200, response.body
    assert [e["value"] for e in response.body["emails"]] == ["bjensen@example.com", "babs@jensen.org"]
    assert response.body["nickName"] == "Babs"


def test_3_5_2_2_remove_through_a_value_filter(scim, babs) -> None:  # type: ignore[no-untyped-def]
    response = scim.patch(
        f"/Users/{babs['id']}", [{"op": "remove", "path": 'emails[type eq "work" and value ew "example.com"]'}]
    )
    assert response.status_code == 200 and "emails" not in response.body


def test_3_5_2_3_replace(scim, babs) -> None:  # type: ignore[no-untyped-def]
    url = f"/Users/{babs['id']}"
    whole = scim.patch(url, [{"op": "replace", "path": 'addresses[type eq "work"]', "value": {
        "type": "work", "streetAddress": "911 Universal City Plaza", "locality": "Hollywood", "region": "CA",
        "postalCode": "91608", "country": "US", "formatted": "911 Universal City Plaza\nHollywood, CA 91608 US",
        "primary": True}}])  # fmt: skip
    assert whole.status_code == 200, whole.body
    assert whole.body["addresses"][0]["postalCode"] == "91608" and whole.body["addresses"][0]["primary"] is True
    street = scim.patch(
        url, [{"op": "replace", "path": 'addresses[type eq "work"].streetAddress', "value": "1010 Broadway Ave"}]
    )
    assert street.body["addresses"][0]["streetAddress"] == "1010 Broadway Ave"
    assert street.body["addresses"][0]["postalCode"] == "91608"
    without_path = scim.patch(url, [{"op": "replace", "value": {
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": True},
                   {"value": "babs@jensen.org", "type": "home"}],
        "nickName": "Babs"}}])  # fmt: skip
    assert len(without_path.body["emails"]) == 2 and without_path.body["nickName"] == "Babs"
    primaries = scim.patch(url, [{"op": "add", "path": "emails", "value": [{"value": "x@y.example", "primary": True}]}])
    assert primaries.status_code == 400 and primaries.body["scimType"] == "invalidValue"  # two primaries


def test_group_members_examples(scim) -> None:  # type: ignore[no-untyped-def]
    babs = scim.post("/Users", user_body("bjensen")).body["id"]
    other = scim.post("/Users", user_body("mjensen")).body["id"]
    more = [str(UserFactory(tenant=Tenant.objects.get(slug="example")).id) for _ in range(2)]
    group = scim.post("/Groups", {"displayName": "Tour Guides"}).body["id"]
    url = f"/Groups/{group}"
    add = [{"op": "add", "path": "members",
            "value": [{"display": "Babs Jensen", "$ref": f"https://example.com/v2/Users/{babs}", "value": babs}]}]  # fmt: skip
    assert scim.patch(url, add).status_code == 204
    assert scim.patch(url, [{"op": "remove", "path": f'members[value eq "{babs}"]'}]).status_code == 204
    assert (
        scim.patch(url, [{"op": "add", "path": "members", "value": [{"value": babs}, {"value": other}]}]).status_code
        == 204
    )
    assert scim.patch(url, [{"op": "remove", "path": "members"}]).status_code == 204
    assert not Membership.objects.exists()
    both = [{"op": "remove", "path": "members"},
            {"op": "add", "path": "members", "value": [{"value": more[0]}, {"value": more[1]}]}]  # fmt: skip
    assert scim.patch(url, [{"op": "add", "path": "members", "value": [{"value": babs}]}, *both]).status_code == 204
    assert {str(m.user_id) for m in Membership.objects.all()} == set(more)
    replace = [{"op": "replace", "path": "members", "value": [{"value": babs}, {"value": other}]}]
    assert scim.patch(url, replace).status_code == 204
    assert {str(m.user_id) for m in Membership.objects.all()} == {babs, other}
