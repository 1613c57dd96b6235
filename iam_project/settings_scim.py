"""SCIM 2.0 settings (star-imported by settings.py; docs/scim.md).

``SCIM_DEPROVISION`` is what a SCIM ``DELETE`` of a user does, ``suspend`` (the default: the user
is disabled, kept for the audit trail, and gone for SCIM) or ``delete``;
``SCIM_DEPROVISION_TENANTS`` sets it per tenant, ``slug=rule`` pairs separated by commas
(``SCIM_DEPROVISION_TENANTS=acme=delete,globex=suspend``). ``active: false`` always disables.
"""

from __future__ import annotations

import environ
from django.core.exceptions import ImproperlyConfigured

_env = environ.Env()
DEPROVISION_RULES = ("suspend", "delete")


def _rule(value: str, name: str) -> str:
    if value not in DEPROVISION_RULES:
        raise ImproperlyConfigured(f"{name}: {value!r} is not one of {', '.join(DEPROVISION_RULES)}")
    return value


SCIM_DEPROVISION = _rule(_env.str("SCIM_DEPROVISION", default="suspend"), "SCIM_DEPROVISION")
SCIM_DEPROVISION_TENANTS = {
    slug.strip(): _rule(rule.strip(), "SCIM_DEPROVISION_TENANTS")
    for slug, _, rule in (pair.partition("=") for pair in _env.list("SCIM_DEPROVISION_TENANTS", default=[]))
    if slug.strip()
}
# A list's page size when the client asks for none, and the most it may ask for (filter.maxResults).
SCIM_MAX_RESULTS = _env.int("SCIM_MAX_RESULTS", default=200)
# Operations of one /Bulk request (bulk.maxOperations); its bytes are DATA_UPLOAD_MAX_MEMORY_SIZE.
SCIM_BULK_MAX_OPERATIONS = _env.int("SCIM_BULK_MAX_OPERATIONS", default=100)
