"""SCIM writes are the services' writes: the same outbox events, audit records naming the key, PIP cache
invalidation; and two concurrent creates of one userName give one 201 and one 409."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.db import connection, connections, transaction
from rest_framework.test import APIClient

from access.keys import api_key_create
from audit.models import AuditRecord
from outbox.models import OutboxEvent
from tests.factories import DefinitionFactory, TenantFactory
from tests.scim_helpers import TENANT_EXT, Scim, user_body
from users.models import User


@pytest.fixture
def acme(db):  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    DefinitionFactory(tenant=tenant, key="level", type="integer")
    return tenant


@pytest.mark.django_db
def test_events_and_audit_name_the_key(acme) -> None:  # type: ignore[no-untyped-def]
    scim = Scim(acme, name="okta-provisioning")
    user = scim.post("/Users", user_body("alice", **{TENANT_EXT: {"level": 1}})).body
    scim.patch(f"/Users/{user['id']}", [{"op": "replace", "path": f"{TENANT_EXT}:level", "value": 2}])
    group = scim.post("/Groups", {"displayName": "Engineering", "members": [{"value": user["id"]}]}).body
    scim.delete(f"/Groups/{group['id']}")
    rows = list(OutboxEvent.objects.order_by("sequence").values_list("event_type", "aggregate_id"))
    assert [t for t, _ in rows if t.startswith(("User", "Group"))] == [
        "UserCreated", "UserAttributesChanged", "GroupCreated", "GroupMembersAdded", "GroupDeleted",
    ]  # fmt: skip
    created = OutboxEvent.objects.get(event_type="UserCreated")
    assert created.payload["data"]["profile"] == {} and created.payload["data"]["external_id"] == "alice"
    audit = AuditRecord.objects.filter(object_id=user["id"]).order_by("id")
    assert [(a.actor_kind, a.actor, a.action) for a in audit] == [
        ("key", "okta-provisioning", "create"),
        ("key", "okta-provisioning", "update"),
    ]
    assert audit[1].changes == {"attributes.level": [1, 2]}


@pytest.mark.django_db
def test_a_scim_change_reaches_the_pip_at_once(acme, with_redis, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    scim = Scim(acme)
    _, raw = api_key_create(name="opa", scopes=["pip:read"], tenants=[acme])
    pip = APIClient()
    pip.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    with django_capture_on_commit_callbacks(execute=True):
        user = scim.post("/Users", user_body("alice", **{TENANT_EXT: {"level": 1}})).body
    assert json.loads(pip.get("/api/v1/pip/tenants/acme/subjects/alice").content)["attributes"] == {"level": 1}
    with django_capture_on_commit_callbacks(execute=True):
        scim.patch(f"/Users/{user['id']}", [{"op": "Replace", "path": "active", "value": "False"}])
    cached = json.loads(pip.get("/api/v1/pip/tenants/acme/subjects/alice").content)
    assert cached["status"] == "disabled"


def _post(scim: Scim, body: dict, results: list, start: threading.Barrier | None = None) -> None:  # type: ignore[type-arg]
    try:
        if start is not None:
            start.wait(timeout=30)
        results.append(scim.post("/Users", body))
    finally:
        connections.close_all()


def _race(scim: Scim, *names: str) -> list:  # type: ignore[type-arg]
    """POST one user per name at once, each from its own client and connection."""
    results: list = []  # type: ignore[type-arg]
    start = threading.Barrier(len(names))
    threads = [
        threading.Thread(target=_post, args=(_second_client(scim), user_body(name), results, start)) for name in names
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def _second_client(scim: Scim) -> Scim:
    twin = Scim.__new__(Scim)
    twin.key, twin.base, twin.client = scim.key, scim.base, APIClient()
    twin.client._credentials = dict(scim.client._credentials)
    return twin


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_creates_of_one_user_name(acme) -> None:  # type: ignore[no-untyped-def]
    results = _race(Scim(acme), "race", "race")
    assert sorted(r.status_code for r in results) == [201, 409]
    assert next(r for r in results if r.status_code == 409).body["scimType"] == "uniqueness"
    assert User.objects.filter(tenant=acme, external_id="race").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_create_racing_an_uncommitted_one_waits_and_gets_409(acme) -> None:  # type: ignore[no-untyped-def]
    """The unique index decides when both requests pass the existence check: the second insert waits
    for the first transaction and fails with 409, never 500."""
    scim = Scim(acme)
    results: list = []  # type: ignore[type-arg]
    with transaction.atomic():
        assert scim.post("/Users", user_body("race")).status_code == 201  # not committed yet
        thread = threading.Thread(target=_post, args=(_second_client(scim), user_body("race"), results))
        thread.start()
        with connection.cursor() as cursor:
            for _ in range(600):  # until the other request waits on our row's unique index entry
                cursor.execute("SELECT pg_stat_clear_snapshot()")  # the view is a snapshot per transaction
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                if cursor.fetchone()[0]:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the second create never waited on the first")
    thread.join(timeout=60)
    assert [r.status_code for r in results] == [409]
    assert results[0].body["scimType"] == "uniqueness"


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_creates_of_case_variants_of_one_user_name(acme) -> None:  # type: ignore[no-untyped-def]
    """userName is caseExact false: "Race" and "race" are one name, whichever request comes first."""
    results = _race(Scim(acme), "Race", "race")
    assert sorted(r.status_code for r in results) == [201, 409]
    assert next(r for r in results if r.status_code == 409).body["scimType"] == "uniqueness"
    assert User.objects.filter(tenant=acme, external_id__iexact="race").count() == 1


def test_a_rename_to_a_case_variant_of_another_user_name_is_409(acme) -> None:  # type: ignore[no-untyped-def]
    scim = Scim(acme)
    assert scim.post("/Users", user_body("alice")).status_code == 201
    bob = scim.post("/Users", user_body("bob")).body["id"]
    put = scim.put(f"/Users/{bob}", user_body("ALICE"))
    assert (put.status_code, put.body["scimType"]) == (409, "uniqueness")
    patch = scim.patch(f"/Users/{bob}", [{"op": "replace", "path": "userName", "value": "Alice"}])
    assert (patch.status_code, patch.body["scimType"]) == (409, "uniqueness")
    renamed = scim.put(f"/Users/{bob}", user_body("Bob"))  # its own name in other case: fine
    assert renamed.status_code == 200 and renamed.body["userName"] == "Bob"
    assert sorted(User.objects.filter(tenant=acme).values_list("external_id", flat=True)) == ["Bob", "alice"]
