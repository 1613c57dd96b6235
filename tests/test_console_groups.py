"""Console: group pages (typed attribute fields, member pickers) and the user page's groups panel."""

from __future__ import annotations

import pytest

from groups import services
from groups.models import Group, Membership
from tests.factories import DefinitionFactory, GroupFactory, TenantFactory, UserFactory
from tests.html_support import page
from tests.outbox_helpers import events

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme():  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    DefinitionFactory(tenant=tenant, key="level", type="integer", target="user")
    DefinitionFactory(tenant=tenant, key="cost_center", type="string", target="group", max_length=8)
    DefinitionFactory(tenant=tenant, key="clearance", type="integer", target="user_and_group", default=1)
    return tenant


def change_form(group: Group, **extra: object) -> dict:
    data = {"key": group.key, "display_name": group.display_name, "external_id": group.external_id or "",
            "priority": str(group.priority)}  # fmt: skip
    data.update({f"attr__{k}": str(v) for k, v in group.attributes.items()})
    return {**data, **extra}


def test_adding_a_group_goes_through_the_service(admin_client_logged_in, acme) -> None:  # type: ignore[no-untyped-def]
    response = admin_client_logged_in.post(
        "/admin/groups/group/add/", {"tenant": acme.pk, "key": "eng", "display_name": "Eng", "priority": "3"}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Group.objects.get().priority == 3
    assert events(aggregate_type="group") == [("GroupCreated", 1)]


def test_the_group_page_has_typed_group_fields_and_member_pickers(admin_client_logged_in, acme) -> None:  # type: ignore[no-untyped-def]
    group = GroupFactory(tenant=acme, key="eng", attributes={"cost_center": "cc-1"})
    html = admin_client_logged_in.get(f"/admin/groups/group/{group.pk}/change/").content.decode()
    assert 'name="attr__cost_center"' in html and 'name="attr__clearance"' in html
    assert 'name="attr__level"' not in html  # a user-only definition
    doc = page(html)
    for name in ("add_users", "add_groups", "remove_users", "remove_groups"):
        select = doc.find(f"select[name={name}]") if hasattr(doc, "find") else None
        assert f'name="{name}"' in html, name
        del select
    assert ("admin-autocomplete" in html and "field_name" not in html) or "data-ajax--url" in html


def test_member_picker_autocomplete_lists_users(admin_client_logged_in, acme) -> None:  # type: ignore[no-untyped-def]
    UserFactory(tenant=acme, external_id="alice")
    response = admin_client_logged_in.get(
        "/admin/autocomplete/", {"app_label": "groups", "model_name": "membership", "field_name": "user", "term": "ali"}
    )
    assert response.status_code == 200
    assert [r["text"] for r in response.json()["results"]] == ["alice"]


def test_adding_and_removing_members_in_the_console(admin_client_logged_in, acme) -> None:  # type: ignore[no-untyped-def]
    group = GroupFactory(tenant=acme, key="eng")
    sub = GroupFactory(tenant=acme, key="backend")
    alice, bob = UserFactory(tenant=acme, external_id="alice"), UserFactory(tenant=acme, external_id="bob")
    url = f"/admin/groups/group/{group.pk}/change/"
    form = change_form(
        group, add_users=[str(alice.pk), str(bob.pk)], add_groups=[str(sub.pk)], **{"attr__cost_center": "cc-9"}
    )
    response = admin_client_logged_in.post(url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Membership.objects.filter(group=group).count() == 3
    assert [t for t, _ in events(aggregate_id=group.id)] == ["GroupCreated", "GroupUpdated", "GroupMembersAdded"]
    group.refresh_from_db()
    response = admin_client_logged_in.post(url, change_form(group, remove_users=[str(bob.pk)]))
    assert response.status_code == 302
    assert Membership.objects.filter(group=group).count() == 2
    assert "alice" in admin_client_logged_in.get(url).content.decode()


def test_a_cycle_in_the_console_is_refused_and_writes_nothing(admin_client_logged_in, acme) -> None:  # type: ignore[no-untyped-def]
    outer, inner = GroupFactory(tenant=acme, key="outer"), GroupFactory(tenant=acme, key="inner")
    services.group_members_add(group=outer, ids=[str(inner.pk)])
    before = len(events())
    response = admin_client_logged_in.post(
        f"/admin/groups/group/{inner.pk}/change/",
        change_form(inner, add_groups=[str(outer.pk)], display_name="x"),
        follow=True,
    )
    assert "would close a cycle" in response.content.decode()
    assert len(events()) == before and Group.objects.get(pk=inner.pk).display_name == ""


def test_another_tenants_user_cannot_be_picked(admin_client_logged_in, acme) -> None:  # type: ignore[no-untyped-def]
    group = GroupFactory(tenant=acme)
    stranger = UserFactory(tenant=TenantFactory())
    response = admin_client_logged_in.post(
        f"/admin/groups/group/{group.pk}/change/", change_form(group, add_users=[str(stranger.pk)])
    )
    assert response.status_code == 200  # the form is shown again with the error
    assert not Membership.objects.exists()


def test_the_user_page_lists_groups_and_effective_attributes_with_sources(admin_client_logged_in, acme) -> None:  # type: ignore[no-untyped-def]
    outer = GroupFactory(tenant=acme, key="company", attributes={"clearance": 4})
    inner = GroupFactory(tenant=acme, key="backend")
    services.group_members_add(group=outer, ids=[str(inner.pk)])
    alice = UserFactory(tenant=acme, external_id="alice", attributes={"level": 2})
    services.group_members_add(group=inner, ids=[str(alice.pk)])
    html = admin_client_logged_in.get(f"/admin/users/user/{alice.pk}/change/").content.decode()
    assert "Groups and effective attributes" in html
    assert f'/admin/groups/group/{inner.pk}/change/">backend</a>' in html
    assert "group:company (via backend &gt; company)" in html
    assert "<td>level</td><td><code>2</code></td><td>user</td>" in html
    bob = UserFactory(tenant=acme, external_id="bob")
    assert (
        "<td>clearance</td><td><code>1</code></td><td>default</td>"
        in admin_client_logged_in.get(f"/admin/users/user/{bob.pk}/change/").content.decode()
    )


def test_a_tenant_administrator_sees_only_their_tenants_groups(client, two_tenants) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import TENANT_ADMIN_PASSWORD

    mine, theirs = (
        GroupFactory(tenant=two_tenants["a"], key="mine"),
        GroupFactory(tenant=two_tenants["b"], key="theirs"),
    )
    assert client.post("/admin/login/", {"username": "tadmin", "password": TENANT_ADMIN_PASSWORD}).status_code == 302
    listing = client.get("/admin/groups/group/").content.decode()
    assert "mine" in listing and "theirs" not in listing
    assert client.get(f"/admin/groups/group/{theirs.pk}/change/").status_code == 404
    assert client.get(f"/admin/groups/group/{mine.pk}/change/").status_code == 200
