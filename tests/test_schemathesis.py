"""Property-based API tests from the generated OpenAPI schema: no 5xx, no status, content type, header
or body that the schema does not document.

Bounded (a few examples per operation) so the suite stays fast; run as a console superuser and as
a scoped API key, against a tenant that exists so that paths reach the views, not only 404s.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS as REGISTERED_CHECKS
from schemathesis.checks import load_all_checks

from iam_project.wsgi import application


@schemathesis.serializer("application/x-ndjson", "text/csv")
def _file_body(ctx, value):  # type: ignore[no-untyped-def]
    """Import files are sent as the body itself: generated binary/string payloads as bytes."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogatepass")


schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application, headers={"Accept": "application/json"})
load_all_checks()
# Every check (`--checks all`) except the two that judge whether a request *should* have been accepted:
# the schema cannot express rules the API enforces (no NUL or lone surrogate in text, DNS-label slugs,
# cross-field definition rules, opaque cursors), so those two report refusals that are by design.
JUDGING_ACCEPTANCE = {"negative_data_rejection", "positive_data_acceptance"}
CHECKS = [check for check in REGISTERED_CHECKS.get_all() if check.__name__ not in JUDGING_ACCEPTANCE]
EXAMPLES = 12


@pytest.fixture(autouse=True)
def keep_the_test_connection():  # type: ignore[no-untyped-def]
    """Schemathesis calls the WSGI app directly: like Django's test client, keep request signals from
    closing the connection that holds the test's transaction."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def principals(db, superuser):  # type: ignore[no-untyped-def]
    from access.keys import api_key_create
    from tests.conftest import ADMIN_PASSWORD, basic
    from tests.factories import DefinitionFactory, TenantFactory, UserFactory

    tenant = TenantFactory(slug="acme")
    DefinitionFactory(tenant=tenant, key="level", type="integer", min_value=0, max_value=9)
    DefinitionFactory(tenant=tenant, key="tags", type="string_list")
    user = UserFactory(tenant=tenant, external_id="alice", attributes={"level": 1})
    _, key = api_key_create(name="fuzz", scopes=["pip:read", "directory:write", "schema:write"], tenants=[tenant])
    return {
        "admin": basic("root", ADMIN_PASSWORD),
        "key": f"Bearer {key}",
        "user_id": str(user.id),
    }


def _aim(case, principals) -> None:  # type: ignore[no-untyped-def]
    """Point generated paths at data that exists, half of the time, so the views do real work."""
    if case.path_parameters:
        if "tenant" in case.path_parameters:
            case.path_parameters["tenant"] = "acme"
        if "user_id" in case.path_parameters and hash(str(case.body)) % 2:
            case.path_parameters["user_id"] = principals["user_id"]
        if "external_id" in case.path_parameters and hash(str(case.query)) % 2:
            case.path_parameters["external_id"] = "alice"


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_as_superuser(case, principals) -> None:  # type: ignore[no-untyped-def]
    _aim(case, principals)
    case.call_and_validate(headers={"Authorization": principals["admin"]}, checks=CHECKS)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_as_scoped_key(case, principals) -> None:  # type: ignore[no-untyped-def]
    _aim(case, principals)
    case.call_and_validate(headers={"Authorization": principals["key"]}, checks=CHECKS)
