"""Every write door emits exactly one outbox event per change, in the change's transaction."""

from __future__ import annotations

import json
import re

import pytest
from django.db import connection, transaction

from core.guards import DomainWriteOutsideService
from outbox.events import EVENT_TYPES, AggregateEvent, check_registry
from outbox.models import OutboxEvent
from outbox.services import OutboxOutsideTransaction, event_record
from tenants import services as tenant_services
from tenants.models import Tenant
from tests.factories import DefinitionFactory, TenantFactory, UserFactory
from tests.outbox_helpers import events
from users import services as user_services
from users.models import User

pytestmark = pytest.mark.django_db


def test_registry_is_consistent() -> None:
    check_registry()
    assert {"TenantCreated", "TenantUpdated", "TenantDeleted", "UserCreated", "UserUpdated", "UserDeleted"} <= set(
        EVENT_TYPES
    )


def test_envelope_is_cloudevents_with_our_extensions() -> None:
    user = UserFactory(tenant=TenantFactory(slug="acme"), external_id="alice")
    row = OutboxEvent.objects.get(event_type="UserCreated")
    body = row.payload
    for required in ("id", "source", "specversion", "type", "time", "subject", "data"):
        assert body[required]
    assert body["specversion"] == "1.0" and body["id"] == str(row.event_id) and body["type"] == "UserCreated"
    assert body["tenantid"] == str(user.tenant_id) and body["aggregatetype"] == "user"
    assert body["aggregateid"] == str(user.id) and body["aggregateversion"] == 1
    assert body["data"]["external_id"] == "alice"
    assert all(re.fullmatch(r"[a-z0-9]{1,20}", name) for name in body)  # CloudEvents attribute naming
    assert row.subject == f"iam.{user.tenant_id}.user.UserCreated"


def test_api_door(api) -> None:  # type: ignore[no-untyped-def]
    assert api.post("/api/v1/tenants/", {"slug": "acme", "name": "A"}, format="json").status_code == 201
    api.post("/api/v1/tenants/acme/attribute-definitions/", {"key": "level", "type": "integer"}, format="json")
    user_id = api.post("/api/v1/tenants/acme/users/", {"external_id": "a"}, format="json").json()["id"]
    api.patch(f"/api/v1/tenants/acme/users/{user_id}/", {"email": "a@example.com"}, format="json")
    api.patch(f"/api/v1/tenants/acme/users/{user_id}/", {"attributes": {"level": 1}}, format="json")
    api.patch(f"/api/v1/tenants/acme/users/{user_id}/", {"attributes": {"level": 1}}, format="json")  # no change
    api.patch("/api/v1/tenants/acme/attribute-definitions/level/", {"description": "L"}, format="json")
    api.patch("/api/v1/tenants/acme/", {"name": "Acme"}, format="json")
    api.delete(f"/api/v1/tenants/acme/users/{user_id}/")
    api.delete("/api/v1/tenants/acme/attribute-definitions/level/")
    api.delete("/api/v1/tenants/acme/")
    assert events() == [
        ("TenantCreated", 1),
        ("AttributeDefinitionCreated", 1),
        ("UserCreated", 1),
        ("UserUpdated", 2),
        ("UserAttributesChanged", 3),
        ("AttributeDefinitionUpdated", 2),
        ("TenantUpdated", 2),
        ("UserDeleted", 4),
        ("AttributeDefinitionDeleted", 3),
        ("TenantDeleted", 3),
    ]
    updated = OutboxEvent.objects.get(event_type="UserUpdated").payload["data"]
    assert updated["changed"] == ["email"] and updated["email"] == "a@example.com"


def test_failed_api_writes_emit_nothing(api) -> None:  # type: ignore[no-untyped-def]
    TenantFactory(slug="acme")
    before = OutboxEvent.objects.count()
    api.post("/api/v1/tenants/", {"slug": "acme", "name": "dup"}, format="json")  # 409
    api.post("/api/v1/tenants/acme/users/", {"external_id": "a", "attributes": {"x": 1}}, format="json")  # 400
    api.patch("/api/v1/tenants/acme/", {"name": "B"}, format="json", HTTP_IF_MATCH='"9"')  # 412
    assert OutboxEvent.objects.count() == before


def test_console_door(admin_client_logged_in) -> None:  # type: ignore[no-untyped-def]
    client = admin_client_logged_in
    response = client.post(
        "/admin/tenants/tenant/add/", {"slug": "acme", "name": "Acme", "status": "active", "attributes": "{}"}
    )
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    tenant = Tenant.objects.get(slug="acme")
    response = client.post(
        "/admin/attributes/attributedefinition/add/",
        {
            "tenant": tenant.pk,
            "key": "level",
            "target": "user",
            "type": "integer",
            "allowed_values": "null",
            "description": "",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    form = {"tenant": tenant.pk, "external_id": "a/b", "email": "", "display_name": "", "status": "active"}
    response = client.post("/admin/users/user/add/", {**form, "attr__level": "2"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    user = User.objects.get(external_id="a/b")
    assert user.attributes == {"level": 2}
    response = client.post(f"/admin/users/user/{user.pk}/change/", {**form, "attr__level": "3"})
    assert response.status_code == 302
    response = client.post(
        f"/admin/tenants/tenant/{tenant.pk}/change/",
        {"slug": "acme", "name": "Acme 2", "status": "active", "attributes": "{}"},
    )
    assert response.status_code == 302
    second = UserFactory(tenant=tenant, external_id="second")
    response = client.post(
        "/admin/users/user/",
        {"action": "delete_selected", "_selected_action": [str(user.pk), str(second.pk)], "post": "yes"},
    )
    assert response.status_code == 302
    response = client.post(f"/admin/tenants/tenant/{tenant.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert events() == [
        ("TenantCreated", 1),
        ("AttributeDefinitionCreated", 1),
        ("UserCreated", 1),
        ("UserAttributesChanged", 2),
        ("TenantUpdated", 2),
        ("UserCreated", 1),
        ("UserDeleted", 2),  # the list is newest first: "second" is deleted first
        ("UserDeleted", 3),
        ("TenantDeleted", 3),
    ]


def test_console_soft_deletes_and_restores_a_tenant_with_users(admin_client_logged_in) -> None:  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    UserFactory(tenant=tenant)
    page = admin_client_logged_in.get(f"/admin/tenants/tenant/{tenant.pk}/delete/").content.decode()
    assert "soft delete" in page and "protected" not in page
    response = admin_client_logged_in.post(f"/admin/tenants/tenant/{tenant.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert Tenant.objects.get(pk=tenant.pk).deleted_at is not None
    response = admin_client_logged_in.post(
        "/admin/tenants/tenant/", {"action": "restore", "_selected_action": [str(tenant.pk)]}
    )
    assert response.status_code == 302 and Tenant.objects.get(pk=tenant.pk).deleted_at is None
    assert events(aggregate_id=tenant.pk) == [("TenantCreated", 1), ("TenantDeleted", 2), ("TenantRestored", 3)]


def test_rolled_back_change_emits_nothing() -> None:
    tenant = TenantFactory(slug="acme")
    before = OutboxEvent.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        user_services.user_create(tenant=tenant, external_id="ghost")
        tenant_services.tenant_update(tenant=tenant, name="Renamed")
        raise RuntimeError("the caller's unit of work fails after the services ran")
    assert OutboxEvent.objects.count() == before
    assert not User.objects.filter(external_id="ghost").exists()
    assert Tenant.objects.get(pk=tenant.pk).name != "Renamed"


def test_writes_that_bypass_the_services_are_refused() -> None:
    user = UserFactory(tenant=TenantFactory(slug="acme"))
    with pytest.raises(DomainWriteOutsideService):
        User.objects.filter(pk=user.pk).update(email="x@example.com")
    with pytest.raises(DomainWriteOutsideService):
        user.save()
    with pytest.raises(DomainWriteOutsideService):
        user.delete()
    with pytest.raises(DomainWriteOutsideService):
        User.objects.bulk_create([User(tenant=user.tenant, external_id="bulk")])
    with pytest.raises(DomainWriteOutsideService):
        Tenant.objects.all().delete()


def test_the_sql_guard_catches_raw_sql_writes() -> None:
    tenant = TenantFactory(slug="acme")
    with pytest.raises(AssertionError, match="outside a service"), connection.cursor() as cursor:
        cursor.execute("UPDATE tenants_tenant SET name = 'raw' WHERE id = %s", [tenant.pk])


@pytest.mark.django_db(transaction=True)
def test_an_event_cannot_be_recorded_outside_a_transaction() -> None:
    tenant = TenantFactory(slug="acme")
    with pytest.raises(OutboxOutsideTransaction):
        event_record(AggregateEvent("TenantUpdated", tenant.pk, tenant.pk, 9, {}))
    with pytest.raises(KeyError), transaction.atomic():
        event_record(AggregateEvent("TenantExploded", tenant.pk, tenant.pk, 9, {}))


def test_payload_is_json_serialisable_with_every_attribute_type() -> None:
    tenant = TenantFactory(slug="acme")
    DefinitionFactory(tenant=tenant, key="hired", type="date")
    DefinitionFactory(tenant=tenant, key="seen", type="datetime")
    UserFactory(tenant=tenant, attributes={"hired": "2020-01-01", "seen": "2020-01-01T00:00:00Z"})
    row = OutboxEvent.objects.get(event_type="UserCreated")
    assert json.loads(json.dumps(row.payload))["data"]["attributes"]["hired"] == "2020-01-01"
