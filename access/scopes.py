"""The scopes an API key (or a console administrator) can hold, and what each implies."""

from __future__ import annotations

PIP_READ = "pip:read"
DIRECTORY_READ = "directory:read"
DIRECTORY_WRITE = "directory:write"
SCHEMA_WRITE = "schema:write"
TENANTS_WRITE = "tenants:write"
PII_READ = "pii:read"
SCIM_PROVISION = "scim:provision"

SCOPES = {
    PIP_READ: "Policy Information Point lookups (subjects and their attributes).",
    DIRECTORY_READ: "Read tenants, users and attribute definitions.",
    DIRECTORY_WRITE: "Create, change and delete users; change a tenant's name and attribute values.",
    SCHEMA_WRITE: "Create, change and delete attribute definitions.",
    PII_READ: "Read the values of PII-flagged attributes (counted per key per hour).",
    SCIM_PROVISION: "Provision users and groups over SCIM 2.0 (/scim/v2/; an identity provider's key).",
    TENANTS_WRITE: "Create, delete, suspend and resume tenants, change their slug (keys for all tenants only).",
}
IMPLIED = {
    DIRECTORY_WRITE: {DIRECTORY_READ},
    SCHEMA_WRITE: {DIRECTORY_READ},
    TENANTS_WRITE: {DIRECTORY_READ},
}


def expand(scopes: set[str] | frozenset[str]) -> frozenset[str]:
    expanded = set(scopes)
    for scope in scopes:
        expanded |= IMPLIED.get(scope, set())
    return frozenset(expanded)
