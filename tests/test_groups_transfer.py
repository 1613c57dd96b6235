"""Export and import of groups and memberships (JSON Lines): a round trip, all or nothing."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from groups import services
from groups.models import Group, Membership
from tests.factories import DefinitionFactory, GroupFactory, TenantFactory, UserFactory
from tests.outbox_helpers import events

pytestmark = pytest.mark.django_db


def _export(slug: str) -> str:
    out = io.StringIO()
    call_command("groups_transfer", "export", "--tenant", slug, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_round_trip_into_another_tenant(tmp_path) -> None:  # type: ignore[no-untyped-def]
    source, target = TenantFactory(slug="source"), TenantFactory(slug="target")
    for tenant in (source, target):
        DefinitionFactory(tenant=tenant, key="cost_center", type="string", target="group")
        UserFactory(tenant=tenant, external_id="auth0|alice")
    outer = GroupFactory(tenant=source, key="eng", priority=3, attributes={"cost_center": "cc-1"})
    inner = GroupFactory(tenant=source, key="backend", external_id="okta/1")
    services.group_members_add(group=outer, ids=[str(inner.id)])
    services.group_members_add(group=inner, ids=[str(source.users.get().id)])
    text = _export("source")
    assert [json.loads(line)["key"] for line in text.splitlines()] == ["backend", "eng"]
    path = tmp_path / "groups.jsonl"
    path.write_text(text)
    out = io.StringIO()
    call_command("groups_transfer", "import", "--tenant", "target", "--file", str(path), stdout=out)
    assert "created 2" in out.getvalue() and "members_added 2" in out.getvalue()
    assert _export("target") == text
    before = len(events())
    call_command("groups_transfer", "import", "--tenant", "target", "--file", str(path), stdout=io.StringIO())
    assert len(events()) == before  # the same file again changes nothing


def test_a_bad_line_imports_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    lines = [
        {"key": "a", "members": {"groups": ["b"]}},
        {"key": "b", "members": {"groups": ["a"]}},  # a cycle
    ]
    path = tmp_path / "groups.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines))
    with pytest.raises(CommandError, match="cycle"):
        call_command("groups_transfer", "import", "--tenant", "acme", "--file", str(path))
    path.write_text('{"key": "a", "members": {"users": ["nobody"]}}\n')
    with pytest.raises(CommandError, match="nobody"):
        call_command("groups_transfer", "import", "--tenant", "acme", "--file", str(path))
    path.write_text('{"key": "a", "colour": 1}\n')
    with pytest.raises(CommandError, match="line 1"):
        call_command("groups_transfer", "import", "--tenant", "acme", "--file", str(path))
    assert not Group.objects.filter(tenant=tenant).exists() and not Membership.objects.exists()
