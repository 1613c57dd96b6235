"""Okta's provisioning requests (its SCIM 2.0 reference and test suite): a ``userName eq`` lookup with
``startIndex``/``count``, a create with ``groups: []``, profile updates with PUT (the whole user,
``id`` and ``meta`` included), deactivation and reactivation with ``active``, group push with PATCH.
"Sync password" is off (this service keeps no passwords; docs/scim.md)."""

from __future__ import annotations

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def ops(*operations: dict) -> dict:  # type: ignore[type-arg]
    return {"schemas": [PATCH], "Operations": list(operations)}


def user(**changes: object) -> dict:  # type: ignore[type-arg]
    return {
        "schemas": [USER],
        "userName": "test.user@okta.local",
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": True, "value": "test.user@okta.local", "type": "work"}],
        "displayName": "Test User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "active": True,
        **changes,
    }


FLOW = [
    ("GET", '/Users?filter=userName eq "test.user@okta.local"&startIndex=1&count=100', None, 200),
    ("POST", "/Users", user(), 201),
    ("GET", "/Users/{user}", None, 200),
    ("PUT", "/Users/{user}", user(id="{user}", name={"givenName": "Another", "familyName": "User"},
                                  meta={"resourceType": "User"}), 200),
    ("PATCH", "/Users/{user}", ops({"op": "replace", "value": {"active": False}}), 200),
    ("PATCH", "/Users/{user}", ops({"op": "replace", "value": {"active": True}}), 200),
    ("GET", '/Groups?filter=displayName eq "Test SCIMv2"&startIndex=1&count=100', None, 200),
    ("POST", "/Groups", {"schemas": [GROUP], "displayName": "Test SCIMv2", "members": []}, 201),
    ("GET", "/Groups/{group}", None, 200),
    ("PATCH", "/Groups/{group}", ops({"op": "replace", "value": {"id": "{group}", "displayName": "Test SCIMv2 - Updated"}}), 204),
    ("PATCH", "/Groups/{group}", ops({"op": "add", "path": "members",
                                      "value": [{"value": "{user}", "display": "test.user@okta.local"}]}), 204),
    ("GET", '/Groups?filter=displayName eq "Test SCIMv2 - Updated"&startIndex=1&count=100', None, 200),
    ("PATCH", "/Groups/{group}", ops({"op": "remove", "path": 'members[value eq "{user}"]'}), 204),
    ("PUT", "/Users/{user}", user(id="{user}", active=False), 200),
    ("DELETE", "/Groups/{group}", None, 204),
]  # fmt: skip
