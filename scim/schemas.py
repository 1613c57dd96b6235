"""The discovery documents (RFC 7643 §5-7): what this service provider supports, told truthfully.

The core User and Group schemas list the attributes we store (docs/scim.md has the mapping); the
tenant's extension schema is generated from its attribute definitions on every request.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from attributes.models import AttributeDefinition

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
TENANT_EXTENSION = "urn:citadel:iam:scim:schemas:extension:tenant:2.0:User"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"
RESOURCE_TYPE = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SERVICE_PROVIDER_CONFIG = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"


def attr(
    name: str,
    kind: str = "string",
    *,
    multi: bool = False,
    required: bool = False,
    case_exact: bool = False,
    mutability: str = "readWrite",
    uniqueness: str = "none",
    sub: list[dict[str, Any]] | None = None,
    description: str = "",
    canonical: list[Any] | None = None,
    returned: str = "default",
) -> dict[str, Any]:
    found = {
        "name": name,
        "type": "complex" if sub else kind,
        "multiValued": multi,
        "description": description or name,
        "required": required,
        "caseExact": case_exact,
        "mutability": mutability,
        "returned": returned,
        "uniqueness": uniqueness,
    }
    if sub:
        found["subAttributes"] = sub
    if canonical is not None:
        found["canonicalValues"] = canonical
    return found


def _multi(name: str, *types: str) -> dict[str, Any]:
    kind = attr("type", canonical=list(types)) if types else attr("type")
    sub = [attr("value"), attr("display"), kind, attr("primary", "boolean")]
    return attr(name, multi=True, sub=sub)


NAME_PARTS = ("formatted", "familyName", "givenName", "middleName", "honorificPrefix", "honorificSuffix")
#: Core User attributes kept in the user's ``profile`` as given (besides name and emails).
PROFILE_STRINGS = ("nickName", "profileUrl", "title", "userType", "preferredLanguage", "locale", "timezone")
PROFILE_MULTI = {
    "phoneNumbers": ("work", "mobile", "home", "fax", "pager", "other"),
    "ims": ("aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"),
    "photos": ("photo", "thumbnail"),
    "roles": (),
    "entitlements": (),
}
ADDRESS_PARTS = ("formatted", "streetAddress", "locality", "region", "postalCode", "country")
ENTERPRISE_STRINGS = ("employeeNumber", "costCenter", "organization", "division", "department")

USER_ATTRIBUTES = [
    attr("userName", required=True, uniqueness="server", description="Our external_id: unique in the tenant."),
    attr("externalId", case_exact=True, description="The identity provider's own id of the user."),
    attr("name", sub=[attr(part) for part in NAME_PARTS]),
    attr("displayName"),
    *(attr(name) for name in PROFILE_STRINGS),
    attr("active", "boolean", description="Our status: active, or disabled when false."),
    _multi("emails", "work", "home", "other"),
    *(_multi(name, *types) for name, types in PROFILE_MULTI.items()),
    attr(
        "addresses",
        multi=True,
        sub=[
            *(attr(part) for part in ADDRESS_PARTS),
            attr("type", canonical=["work", "home", "other"]),
            attr("primary", "boolean"),
        ],
    ),
    attr(
        "groups",
        multi=True,
        mutability="readOnly",
        sub=[
            attr("value", mutability="readOnly"),
            attr("$ref", "reference", mutability="readOnly"),
            attr("display", mutability="readOnly"),
        ],
    ),
]
GROUP_ATTRIBUTES = [
    attr("displayName", required=True),
    attr("externalId", case_exact=True),
    attr(
        "members",
        multi=True,
        sub=[
            attr("value", mutability="immutable"),
            attr("$ref", "reference", mutability="immutable"),
            attr("type", mutability="immutable", canonical=["User", "Group"]),
            attr("display", mutability="readOnly"),
        ],
    ),
]
ENTERPRISE_ATTRIBUTES = [
    *(attr(name) for name in ENTERPRISE_STRINGS),
    attr("manager", sub=[attr("value"), attr("$ref", "reference"), attr("displayName", mutability="readOnly")]),
]

#: Our attribute types → SCIM's (RFC 7643 §2.3). A date has no SCIM type of its own: a string YYYY-MM-DD.
SCIM_TYPES = {
    "string": "string",
    "enum": "string",
    "string_list": "string",
    "integer": "integer",
    "number": "decimal",
    "boolean": "boolean",
    "date": "string",
    "datetime": "dateTime",
}


def tenant_attributes(definitions: list[AttributeDefinition]) -> list[dict[str, Any]]:
    """The tenant's user attribute definitions as the attributes of its extension schema."""
    found = []
    for definition in definitions:
        description = definition.description or definition.key
        if definition.type == "date":
            description += " (a date, YYYY-MM-DD)"
        canonical = list(definition.allowed_values) if definition.allowed_values else None
        found.append(
            attr(
                definition.key,
                SCIM_TYPES[definition.type],
                multi=definition.type == "string_list",
                required=definition.required,
                case_exact=True,
                description=description,
                canonical=canonical,
            )
        )
    return found


def schema(urn: str, name: str, description: str, attributes: list[dict[str, Any]], base: str) -> dict[str, Any]:
    return {
        "schemas": [SCHEMA],
        "id": urn,
        "name": name,
        "description": description,
        "attributes": attributes,
        "meta": {"resourceType": "Schema", "location": f"{base}/Schemas/{urn}"},
    }


def all_schemas(base: str, definitions: list[AttributeDefinition]) -> list[dict[str, Any]]:
    return [
        schema(USER, "User", "User Account", USER_ATTRIBUTES, base),
        schema(GROUP, "Group", "Group", GROUP_ATTRIBUTES, base),
        schema(ENTERPRISE, "EnterpriseUser", "Enterprise User", ENTERPRISE_ATTRIBUTES, base),
        schema(
            TENANT_EXTENSION,
            "TenantAttributes",
            "The tenant's typed user attributes (its attribute definitions)",
            tenant_attributes(definitions),
            base,
        ),
    ]


def resource_types(base: str) -> list[dict[str, Any]]:
    return [
        {
            "schemas": [RESOURCE_TYPE],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "description": "User Account",
            "schema": USER,
            "schemaExtensions": [
                {"schema": ENTERPRISE, "required": False},
                {"schema": TENANT_EXTENSION, "required": False},
            ],
            "meta": {"resourceType": "ResourceType", "location": f"{base}/ResourceTypes/User"},
        },
        {
            "schemas": [RESOURCE_TYPE],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "Group",
            "schema": GROUP,
            "schemaExtensions": [],
            "meta": {"resourceType": "ResourceType", "location": f"{base}/ResourceTypes/Group"},
        },
    ]


def service_provider_config(base: str) -> dict[str, Any]:
    return {
        "schemas": [SERVICE_PROVIDER_CONFIG],
        "documentationUri": "https://iam-service.citadel.internal/docs/scim",
        "patch": {"supported": True},
        "bulk": {
            "supported": True,
            "maxOperations": settings.SCIM_BULK_MAX_OPERATIONS,
            "maxPayloadSize": settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
        },
        "filter": {"supported": True, "maxResults": settings.SCIM_MAX_RESULTS},
        "changePassword": {"supported": False},
        "sort": {"supported": True},
        "etag": {"supported": True},
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "API key",
                "description": "Authorization: Bearer <an API key with the scope scim:provision>",
                "primary": True,
            }
        ],
        "meta": {"resourceType": "ServiceProviderConfig", "location": f"{base}/ServiceProviderConfig"},
    }
