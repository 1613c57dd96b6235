"""``/Bulk`` (RFC 7644 §3.7): operations in order, bulkId references, failOnErrors, the limits."""

from __future__ import annotations

import pytest

from groups.models import Membership
from tests.factories import TenantFactory
from tests.outbox_helpers import events
from tests.scim_helpers import GROUP, USER, Scim
from users.models import User

pytestmark = pytest.mark.django_db
BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"


@pytest.fixture
def scim():  # type: ignore[no-untyped-def]
    return Scim(TenantFactory(slug="acme"))


def test_the_rfc_example_with_bulk_id_references(scim) -> None:  # type: ignore[no-untyped-def]
    response = scim.post("/Bulk", {
        "schemas": [BULK],
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "qwerty",
             "data": {"schemas": [USER], "userName": "Alice"}},
            {"method": "POST", "path": "/Groups", "bulkId": "ytrewq",
             "data": {"schemas": [GROUP], "displayName": "Tour Guides", "members": [{"type": "User", "value": "bulkId:qwerty"}]}},
            {"method": "PATCH", "path": "/Users/bulkId:qwerty",
             "data": {"Operations": [{"op": "replace", "path": "displayName", "value": "Alice L"}]}, "version": 'W/"1"'},
        ],
    })  # fmt: skip
    assert response.status_code == 200, response.body
    results = response.body["Operations"]
    assert [(r["method"], r["status"], r.get("bulkId")) for r in results] == [
        ("POST", "201", "qwerty"), ("POST", "201", "ytrewq"), ("PATCH", "200", None),
    ]  # fmt: skip
    user_id = results[0]["location"].rsplit("/", 1)[1]
    assert results[0]["version"] == 'W/"1"' and results[2]["version"] == 'W/"2"'
    assert User.objects.get(pk=user_id).display_name == "Alice L"
    assert Membership.objects.get().user_id.hex == user_id.replace("-", "")


def test_errors_fail_on_errors_and_what_stays(scim) -> None:  # type: ignore[no-untyped-def]
    operations = [
        {"method": "POST", "path": "/Users", "bulkId": "a", "data": {"userName": "alice"}},
        {"method": "POST", "path": "/Users", "bulkId": "b", "data": {"userName": "alice"}},  # 409
        {"method": "PATCH", "path": "/Users/bulkId:b", "data": {"Operations": [{"op": "remove", "path": "title"}]}},
        {"method": "DELETE", "path": "/Users/bulkId:a", "version": 'W/"5"'},  # 412
        {"method": "POST", "path": "/Users", "bulkId": "c", "data": {"userName": "carol"}},
    ]
    all_run = scim.post("/Bulk", {"schemas": [BULK], "Operations": operations}).body["Operations"]
    assert [r["status"] for r in all_run] == ["201", "409", "409", "412", "201"]
    assert all_run[1]["response"]["scimType"] == "uniqueness" and "bulkId:b" in all_run[2]["response"]["detail"]
    scim.post("/Bulk", {"schemas": [BULK], "Operations": [
        {"method": "DELETE", "path": f"/Users/{User.objects.get(external_id=name).id}"} for name in ("alice", "carol")
    ]})  # fmt: skip
    stopped = scim.post("/Bulk", {"schemas": [BULK], "failOnErrors": 1, "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": "x", "data": {"userName": ""}},
        {"method": "POST", "path": "/Users", "bulkId": "y", "data": {"userName": "yves"}},
    ]}).body["Operations"]  # fmt: skip
    assert [r["status"] for r in stopped] == ["400"]
    assert not User.objects.filter(external_id="yves").exists()
    assert [t for t, _ in events(aggregate_type="user")].count("UserCreated") == 2


@pytest.mark.parametrize(
    "operation",
    [
        {"method": "GET", "path": "/Users"},
        {"method": "POST", "path": "/Users/123", "bulkId": "x", "data": {}},
        {"method": "POST", "path": "/Users", "data": {"userName": "no-bulk-id"}},
        {"method": "PUT", "path": "/Tenants/1", "data": {}},
        {"method": "DELETE", "path": "/Users/../Groups"},
        "not an object",
    ],
    ids=repr,
)
def test_bad_operations_are_their_own_errors(scim, operation) -> None:  # type: ignore[no-untyped-def]
    response = scim.post("/Bulk", {"schemas": [BULK], "Operations": [operation]})
    assert response.status_code == 200
    assert response.body["Operations"][0]["status"].startswith("4"), response.body


def test_limits(scim, settings) -> None:  # type: ignore[no-untyped-def]
    settings.SCIM_BULK_MAX_OPERATIONS = 2
    too_many = [{"method": "POST", "path": "/Users", "bulkId": str(i), "data": {"userName": f"u{i}"}} for i in range(3)]
    response = scim.post("/Bulk", {"schemas": [BULK], "Operations": too_many})
    assert response.status_code == 413 and response.body["status"] == "413"
    assert not User.objects.exists()
    for body in ({"schemas": [BULK]}, {"schemas": ["nope"], "Operations": []}, {"Operations": [], "failOnErrors": 0}):
        assert scim.post("/Bulk", body).status_code == 400, body
