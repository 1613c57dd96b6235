"""Microsoft Entra ID's provisioning requests, as its SCIM validator and provisioning logs show them:
an existence check by ``userName eq`` before each create, capitalised operation names, booleans as the
strings "True"/"False", ``roles: []`` and ``meta`` in a create, ``$ref: null`` in members, the manager
as a bare id. Each step: (method, path, body, expected status); ``{user}``/``{group}``/``{manager}``
are the ids the flow created."""

from __future__ import annotations

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
NAME = "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1"


def ops(*operations: dict) -> dict:  # type: ignore[type-arg]
    return {"schemas": [PATCH], "Operations": list(operations)}


FLOW = [
    ("GET", f'/Users?filter=userName eq "{NAME}"', None, 200),
    ("POST", "/Users", {
        "schemas": [USER, ENTERPRISE],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": NAME,
        "active": True,
        "emails": [{"primary": True, "type": "work", "value": "Test_User_fd0ea19b@testuser.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": [],
        ENTERPRISE: {"employeeNumber": "1234", "department": "Sales"},
    }, 201),
    ("GET", f'/Users?filter=userName eq "{NAME}"', None, 200),
    ("POST", "/Users", {"schemas": [USER], "userName": NAME, "active": True}, 409),
    ("GET", "/Users/{user}", None, 200),
    ("GET", '/Users?filter=userName eq "non-existent user"', None, 200),
    ("PATCH", "/Users/{user}", ops(
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "updatedEmail@microsoft.com"},
        {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
        {"op": "Add", "path": 'phoneNumbers[type eq "mobile"].value', "value": "+1 555 0100"},
        {"op": "Add", "path": 'addresses[type eq "work"].locality', "value": "Redmond"},
    ), 200),
    ("PATCH", "/Users/{user}", ops(
        {"op": "Add", "path": f"{ENTERPRISE}:manager", "value": "{manager}"},
        {"op": "Replace", "path": "externalId", "value": "f4a0c7d7-0000-4000-8000-000000000001"},
    ), 200),
    ("PATCH", "/Users/{user}", ops({"op": "Replace", "path": "active", "value": "False"}), 200),
    ("GET", '/Groups?excludedAttributes=members&filter=displayName eq "Sales Team"', None, 200),
    ("POST", "/Groups", {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
        "displayName": "Sales Team",
        "meta": {"resourceType": "Group"},
    }, 201),
    ("PATCH", "/Groups/{group}", ops({"op": "Add", "path": "members", "value": [{"$ref": None, "value": "{user}"}]}), 204),
    ("GET", "/Groups/{group}?excludedAttributes=members", None, 200),
    ("GET", '/Groups?filter=id eq "{group}" and members[value eq "{user}"]&excludedAttributes=members', None, 200),
    ("PATCH", "/Groups/{group}", ops({"op": "Replace", "path": "displayName", "value": "Sales Team EMEA"}), 204),
    ("PATCH", "/Groups/{group}", ops({"op": "Remove", "path": "members", "value": [{"$ref": None, "value": "{user}"}]}), 204),
    ("DELETE", "/Groups/{group}", None, 204),
    ("DELETE", "/Users/{user}", None, 204),
    ("GET", "/Users/{user}", None, 404),
]  # fmt: skip
