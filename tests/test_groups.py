"""Groups: the aggregate, its memberships, the nesting rules, the events and the audit records."""

from __future__ import annotations

import itertools
import threading
import uuid

import pytest
from django.db import connections, transaction

from audit.models import AuditRecord
from core.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from groups import services
from groups.models import Group, Membership
from groups.nesting import NestingConflict
from tests.factories import DefinitionFactory, GroupFactory, TenantFactory, UserFactory
from tests.outbox_helpers import events

pytestmark = pytest.mark.django_db


def _members(group: Group) -> set[str]:
    return {str(m.user_id or m.child_id) for m in Membership.objects.filter(group=group)}


def test_create_update_delete_emit_one_event_and_audit_record_each() -> None:
    tenant = TenantFactory(slug="acme")
    DefinitionFactory(tenant=tenant, key="department", type="string", target="group")
    group = services.group_create(
        tenant=tenant, key="eng", display_name="Engineering", attributes={"department": "R&D"}
    )
    group = services.group_update(group=group, expected_version=1, priority=10, attributes={"department": "eng"})
    services.group_update(group=group, priority=10)  # no change: no event
    services.group_delete(group=group, expected_version=2)
    assert events(aggregate_type="group") == [("GroupCreated", 1), ("GroupUpdated", 2), ("GroupDeleted", 3)]
    assert AuditRecord.objects.filter(object_type="group").count() == 3
    assert not Group.objects.exists()


def test_group_attributes_are_validated_by_group_definitions() -> None:
    tenant = TenantFactory()
    DefinitionFactory(tenant=tenant, key="level", type="integer", target="user")
    DefinitionFactory(tenant=tenant, key="cost_center", type="string", target="user_and_group")
    with pytest.raises(ValidationFailed) as exc:
        services.group_create(tenant=tenant, key="g", attributes={"level": 1, "cost_center": 7})
    assert {e.pointer: e.rule for e in exc.value.errors} == {
        "/attributes/level": "unknown",
        "/attributes/cost_center": "type",
    }
    assert services.group_create(tenant=tenant, key="g", attributes={"cost_center": "cc-1"}).attributes == {
        "cost_center": "cc-1"
    }
    assert not events(event_type="GroupCreated")[1:]


@pytest.mark.parametrize(
    ("fields", "pointer"),
    [
        ({"key": "Bad Key"}, "/key"),
        ({"key": "-x"}, "/key"),
        ({"key": "é"}, "/key"),
        ({"key": "ok", "priority": True}, "/priority"),
        ({"key": "ok", "priority": 2**40}, "/priority"),
        ({"key": "ok", "external_id": ""}, "/external_id"),
        ({"key": "ok", "display_name": "a\x00b"}, "/display_name"),
    ],
)
def test_bad_fields_are_400_naming_the_field(fields: dict, pointer: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        services.group_create(tenant=TenantFactory(), **fields)
    assert [e.pointer for e in exc.value.errors] == [pointer]
    assert not Group.objects.exists()


def test_key_and_external_id_unique_per_tenant() -> None:
    a, b = TenantFactory(), TenantFactory()
    services.group_create(tenant=a, key="eng", external_id="idp/42")
    services.group_create(tenant=b, key="eng", external_id="idp/42")  # another tenant: fine
    with pytest.raises(Conflict):
        services.group_create(tenant=a, key="eng")
    with pytest.raises(Conflict):
        services.group_create(tenant=a, key="other", external_id="idp/42")


def test_bulk_add_and_remove_one_event_per_request() -> None:
    tenant = TenantFactory()
    group = GroupFactory(tenant=tenant)
    users = [UserFactory(tenant=tenant) for _ in range(3)]
    sub = GroupFactory(tenant=tenant)
    change = services.group_members_add(group=group, ids=[str(u.id) for u in users] + [str(sub.id), str(users[0].id)])
    assert sorted(change.users) == sorted(str(u.id) for u in users) and change.groups == [str(sub.id)]
    again = services.group_members_add(group=group, ids=[str(users[0].id)])  # already a member: no change
    assert again.users == [] and again.group.version == 2
    removed = services.group_members_remove(group=group, ids=[str(users[1].id), str(sub.id)])
    assert removed.users == [str(users[1].id)] and removed.groups == [str(sub.id)]
    assert _members(group) == {str(users[0].id), str(users[2].id)}
    group_events = [e for e in events(aggregate_id=group.id)]
    assert group_events == [("GroupCreated", 1), ("GroupMembersAdded", 2), ("GroupMembersRemoved", 3)]


def test_unknown_ids_are_400_naming_them_and_nothing_is_written() -> None:
    a, b = TenantFactory(), TenantFactory()
    group = GroupFactory(tenant=a)
    mine, theirs = UserFactory(tenant=a), UserFactory(tenant=b)
    nowhere = uuid.uuid4()
    with pytest.raises(ValidationFailed) as exc:
        services.group_members_add(group=group, ids=[str(mine.id), str(nowhere), str(theirs.id)])
    assert [(e.pointer, e.rule) for e in exc.value.errors] == [("/ids/1", "unknown"), ("/ids/2", "unknown")]
    assert str(nowhere) in exc.value.errors[0].detail
    # another tenant's user gets exactly the answer of an id that exists nowhere
    assert exc.value.errors[1].detail == exc.value.errors[0].detail.replace(str(nowhere), str(theirs.id))
    assert not Membership.objects.exists() and events(event_type="GroupMembersAdded") == []


@pytest.mark.parametrize("ids", [[], "x", ["not-a-uuid"], [1], [None], ["0" * 36]], ids=repr)
def test_malformed_ids_are_400(ids) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationFailed):
        services.group_members_add(group=GroupFactory(), ids=ids)


def test_more_than_the_bulk_limit_is_400(settings) -> None:  # type: ignore[no-untyped-def]
    settings.GROUP_MEMBERS_BULK_MAX = 5
    with pytest.raises(ValidationFailed) as exc:
        services.group_members_add(group=GroupFactory(), ids=[str(uuid.uuid4()) for _ in range(6)])
    assert exc.value.errors[0].rule == "max_items"


def _chain(tenant, keys):  # type: ignore[no-untyped-def]
    """Groups ``keys[0]`` ⊃ ``keys[1]`` ⊃ …"""
    groups = [GroupFactory(tenant=tenant, key=key) for key in keys]
    for outer, inner in itertools.pairwise(groups):
        services.group_members_add(group=outer, ids=[str(inner.id)])
    return groups


def test_cycle_is_409_with_the_path() -> None:
    a, _b, c = _chain(TenantFactory(), ["a", "b", "c"])
    with pytest.raises(NestingConflict) as exc:
        services.group_members_add(group=c, ids=[str(a.id)])
    assert exc.value.members == {"path": ["a", "b", "c", "a"]}
    with pytest.raises(NestingConflict) as exc:
        services.group_members_add(group=a, ids=[str(a.id)])
    assert exc.value.members == {"path": ["a", "a"]}
    assert Membership.objects.count() == 2


def test_depth_over_the_limit_is_409(settings) -> None:  # type: ignore[no-untyped-def]
    settings.GROUPS_MAX_DEPTH = 3
    tenant = TenantFactory()
    _a, b, c = _chain(tenant, ["a", "b", "c"])
    d = GroupFactory(tenant=tenant, key="d")
    with pytest.raises(NestingConflict) as exc:
        services.group_members_add(group=c, ids=[str(d.id)])
    assert exc.value.members == {"path": ["a", "b", "c", "d"]}
    services.group_members_add(group=d, ids=[str(UserFactory(tenant=tenant).id)])  # users do not add depth
    _x, y = _chain(tenant, ["x", "y"])
    with pytest.raises(NestingConflict):
        services.group_members_add(group=y, ids=[str(b.id)])  # x > y > b > c


def test_delete_removes_memberships_and_tells_each_parent() -> None:
    tenant = TenantFactory()
    outer, middle = _chain(tenant, ["outer", "middle"])
    user = UserFactory(tenant=tenant)
    services.group_members_add(group=middle, ids=[str(user.id)])
    services.group_delete(group=middle)
    assert not Membership.objects.exists()
    assert events(aggregate_id=outer.id)[-1] == ("GroupMembersRemoved", 3)
    assert events(aggregate_id=middle.id)[-1] == ("GroupDeleted", 3)
    assert Group.objects.get(pk=outer.pk).version == 3


def test_stale_version_is_412_and_a_vanished_group_404() -> None:
    group = GroupFactory()
    services.group_update(group=group, display_name="x")
    with pytest.raises(PreconditionFailed):
        services.group_members_add(group=group, ids=[str(UserFactory(tenant=group.tenant).id)], expected_version=1)
    services.group_delete(group=group)
    with pytest.raises(NotFound):
        services.group_update(group=group, display_name="y")


def test_deleting_a_user_removes_its_memberships() -> None:
    from users import services as user_services

    group = GroupFactory()
    user = UserFactory(tenant=group.tenant)
    services.group_members_add(group=group, ids=[str(user.id)])
    user_services.user_delete(user=user)
    assert not Membership.objects.exists()


def test_writes_outside_the_services_are_refused() -> None:
    from core.guards import DomainWriteOutsideService

    group = GroupFactory()
    with pytest.raises(DomainWriteOutsideService):
        Membership.objects.bulk_create([Membership(group=group, child=GroupFactory(tenant=group.tenant))])
    with pytest.raises(DomainWriteOutsideService):
        Group.objects.filter(pk=group.pk).update(priority=3)


def _in_thread(target):  # type: ignore[no-untyped-def]
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(target())
        except Exception as exc:
            outcome.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    return thread, outcome


@pytest.mark.django_db(transaction=True)
def test_a_cycle_attempted_from_two_requests_at_once_exactly_one_succeeds() -> None:
    tenant = TenantFactory()
    a, b = GroupFactory(tenant=tenant, key="a"), GroupFactory(tenant=tenant, key="b")
    barrier = threading.Barrier(2)

    def add(outer: Group, inner: Group):  # type: ignore[no-untyped-def]
        def run():  # type: ignore[no-untyped-def]
            with transaction.atomic():
                barrier.wait(10)
                return services.group_members_add(group=outer, ids=[str(inner.id)])

        return run

    threads = [_in_thread(add(a, b)), _in_thread(add(b, a))]
    for thread, _ in threads:
        thread.start()
    for thread, _ in threads:
        thread.join(30)
    outcomes = [outcome[0] for _, outcome in threads]
    assert sorted(type(o).__name__ for o in outcomes) == ["MembersChange", "NestingConflict"]
    assert Membership.objects.count() == 1
    assert len(events(event_type="GroupMembersAdded")) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_bulk_adds_to_one_group_lose_nothing() -> None:
    tenant = TenantFactory()
    group = GroupFactory(tenant=tenant)
    batches = [[str(UserFactory(tenant=tenant).id) for _ in range(20)] for _ in range(4)]
    barrier = threading.Barrier(len(batches))

    def add(ids):  # type: ignore[no-untyped-def]
        def run():  # type: ignore[no-untyped-def]
            barrier.wait(10)
            return services.group_members_add(group=group, ids=ids)

        return run

    threads = [_in_thread(add(ids)) for ids in batches]
    for thread, _ in threads:
        thread.start()
    for thread, _ in threads:
        thread.join(30)
    assert all(type(outcome[0]).__name__ == "MembersChange" for _, outcome in threads)
    assert Membership.objects.filter(group=group).count() == 80
    assert Group.objects.get(pk=group.pk).version == 5
    assert [v for _, v in events(event_type="GroupMembersAdded")] == [2, 3, 4, 5]  # the row lock orders them


def test_a_user_deleted_while_being_added_is_409_not_an_error_at_commit(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from users import services as user_services

    group = GroupFactory()
    user = UserFactory(tenant=group.tenant)
    user_id = user.id
    user_services.user_delete(user=user)
    # the user passed the check, then its delete committed before the insert (simulated)
    monkeypatch.setattr(services, "_members_of_tenant", lambda tenant_id, ids: ([user_id], []))
    with pytest.raises(Conflict):
        services.group_members_add(group=group, ids=[str(user_id)])
    assert not Membership.objects.exists() and events(event_type="GroupMembersAdded") == []
