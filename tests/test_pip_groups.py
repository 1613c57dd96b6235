"""Effective attributes in the PIP: groups (direct and nested), priorities, union, defaults, sources,
and ETags/cache entries that follow every source, in one SQL round trip."""

from __future__ import annotations

import io
import json
import tarfile
from urllib.parse import quote

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from access.keys import api_key_create
from attributes import services as attribute_services
from groups import services as group_services
from tests.factories import DefinitionFactory, GroupFactory, TenantFactory, UserFactory
from users import services as user_services

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme():  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme", name="Acme")
    DefinitionFactory(tenant=tenant, key="department", type="string", target="user_and_group")
    DefinitionFactory(tenant=tenant, key="clearance", type="integer", target="user_and_group", default=0)
    DefinitionFactory(tenant=tenant, key="roles", type="string_list", target="user_and_group", merge="union")
    DefinitionFactory(tenant=tenant, key="cost_center", type="string", target="group")
    return tenant


@pytest.fixture
def pip_client(acme):  # type: ignore[no-untyped-def]
    _, raw = api_key_create(name="opa", scopes=["pip:read"], tenants=[acme])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def url(external_id: str, **query: str) -> str:
    suffix = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
    return f"/api/v1/pip/tenants/acme/subjects/{quote(external_id, safe='')}{suffix}"


def add(group, *members) -> None:  # type: ignore[no-untyped-def]
    group_services.group_members_add(group=group, ids=[str(m.id) for m in members])


@pytest.fixture
def org(acme):  # type: ignore[no-untyped-def]
    """alice ∈ backend ⊂ eng ⊂ company; alice ∈ oncall (priority 10); bob in nothing."""
    company = GroupFactory(tenant=acme, key="company", attributes={"cost_center": "cc-1", "roles": ["employee"]})
    eng = GroupFactory(tenant=acme, key="eng", attributes={"department": "eng", "clearance": 2, "roles": ["dev"]})
    backend = GroupFactory(tenant=acme, key="backend", attributes={"roles": ["deploy"]})
    oncall = GroupFactory(tenant=acme, key="oncall", priority=10, attributes={"clearance": 3, "roles": ["pager"]})
    alice = UserFactory(tenant=acme, external_id="alice", attributes={"roles": ["admin"]})
    bob = UserFactory(tenant=acme, external_id="bob", attributes={"department": "sales"})
    add(company, eng)
    add(eng, backend)
    add(backend, alice)
    add(oncall, alice)
    return {"company": company, "eng": eng, "backend": backend, "oncall": oncall, "alice": alice, "bob": bob}


def test_effective_attributes_and_their_sources(pip_client, org) -> None:  # type: ignore[no-untyped-def]
    body = json.loads(pip_client.get(url("alice")).content)
    assert body["attributes"] == {
        "roles": ["admin", "deploy", "dev", "employee", "pager"],  # union of every source, sorted
        "clearance": 3,  # oncall's priority 10 beats eng's 0
        "department": "eng",  # inherited through backend
        "cost_center": "cc-1",  # two levels up
        "groups": ["backend", "company", "eng", "oncall"],
    }
    assert "sources" not in body
    explained = json.loads(pip_client.get(url("alice", explain="true")).content)
    assert explained["attributes"] == body["attributes"]
    sources = explained["sources"]
    assert sources["clearance"] == [{"source": "group:oncall", "path": ["oncall"]}]
    assert sources["department"] == [{"source": "group:eng", "path": ["backend", "eng"]}]
    assert sources["cost_center"] == [{"source": "group:company", "path": ["backend", "eng", "company"]}]
    assert sources["roles"][0] == {"source": "user"} and len(sources["roles"]) == 5
    bob = json.loads(pip_client.get(url("bob", explain="true")).content)
    assert bob["attributes"] == {"department": "sales", "clearance": 0}
    assert bob["sources"] == {"department": [{"source": "user"}], "clearance": [{"source": "default"}]}
    assert pip_client.get(url("bob", explain="maybe")).status_code == 400


def test_own_value_wins_and_ties_go_by_key(pip_client, acme, org) -> None:  # type: ignore[no-untyped-def]
    user_services.user_update(user=org["alice"], attributes={"clearance": 1}, merge_attributes=True)
    assert json.loads(pip_client.get(url("alice")).content)["attributes"]["clearance"] == 1
    zeta = GroupFactory(tenant=acme, key="zeta", attributes={"department": "zeta"})
    alpha = GroupFactory(tenant=acme, key="alpha", attributes={"department": "alpha"})
    carol = UserFactory(tenant=acme, external_id="carol")
    add(zeta, carol)
    add(alpha, carol)
    assert json.loads(pip_client.get(url("carol")).content)["attributes"]["department"] == "alpha"


def test_authzen_batch_and_bundle_carry_effective_attributes(pip_client, org) -> None:  # type: ignore[no-untyped-def]
    authzen = json.loads(pip_client.get(url("alice", format="authzen", explain="true")).content)
    assert authzen["properties"]["groups"] == ["backend", "company", "eng", "oncall"]
    assert authzen["properties"]["iam:sources"]["clearance"] == [{"source": "group:oncall", "path": ["oncall"]}]
    subjects = [{"tenant": "acme", "external_id": ext} for ext in ("alice", "bob")]
    batch = json.loads(
        pip_client.post("/api/v1/pip/resolve?explain=true", {"subjects": subjects}, format="json").content
    )
    alice, bob = (result["subject"] for result in batch["results"])
    assert alice["attributes"]["department"] == "eng" and bob["attributes"]["clearance"] == 0
    assert alice["sources"]["department"][0]["path"] == ["backend", "eng"]
    response = pip_client.get("/api/v1/pip/tenants/acme/bundle.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(b"".join(response.streaming_content)), mode="r:gz") as tar:
        data = json.load(tar.extractfile("data.json"))
    tenant = data["iam"]["tenants"]["acme"]
    assert tenant["users"]["alice"]["attributes"] == json.loads(pip_client.get(url("alice")).content)["attributes"]
    assert tenant["users"]["bob"]["attributes"] == {"department": "sales", "clearance": 0}
    assert tenant["groups"]["eng"]["attributes"]["department"] == "eng"


def test_one_query_however_many_groups(pip_client, acme) -> None:  # type: ignore[no-untyped-def]
    """A user in 20 groups over 3 levels costs the same one statement as a user in none."""
    lonely = UserFactory(tenant=acme, external_id="lonely")
    member = UserFactory(tenant=acme, external_id="member")
    top = [GroupFactory(tenant=acme, key=f"top-{i}", attributes={"department": f"d{i}"}) for i in range(2)]
    middle = [GroupFactory(tenant=acme, key=f"mid-{i}", priority=i) for i in range(6)]
    leaves = [GroupFactory(tenant=acme, key=f"leaf-{i}", attributes={"roles": [f"r{i}"]}) for i in range(12)]
    for i, group in enumerate(middle):
        add(top[i % 2], group)
    for i, group in enumerate(leaves):
        add(middle[i % 6], group)
        add(group, member)
    pip_client.get(url("lonely"))  # the key's last-used write happens once a minute, not in the count
    counts = []
    for ext in ("lonely", "member"):
        with CaptureQueriesContext(connection) as queries:
            response = pip_client.get(url(ext))
        assert response.status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1] <= 2
    assert len(json.loads(response.content)["attributes"]["groups"]) == 20
    del lonely


@pytest.fixture
def shared_cache(settings):  # type: ignore[no-untyped-def]
    from django.core.cache import cache

    from resolver.cache import _SLUG_MEMO

    settings.SHARED_CACHE = True
    cache.clear()
    _SLUG_MEMO.clear()
    yield
    cache.clear()
    _SLUG_MEMO.clear()


def _definition(acme, key):  # type: ignore[no-untyped-def]
    return acme.attribute_definitions.get(key=key)


CHANGES = {
    "direct group's attributes": lambda o, a: group_services.group_update(
        group=o["backend"], attributes={"roles": ["deploy", "ops"]}
    ),
    "inherited group's attributes": lambda o, a: group_services.group_update(
        group=o["company"], attributes={"cost_center": "cc-2"}
    ),
    "a group's priority": lambda o, a: group_services.group_update(group=o["eng"], priority=20),
    "a group's key": lambda o, a: group_services.group_update(group=o["eng"], key="engineering"),
    "membership added": lambda o, a: add(GroupFactory(tenant=a, key="new", attributes={"department": "x"}), o["alice"]),
    "membership removed": lambda o, a: group_services.group_members_remove(group=o["oncall"], ids=[str(o["alice"].id)]),
    "nesting removed": lambda o, a: group_services.group_members_remove(group=o["eng"], ids=[str(o["backend"].id)]),
    "nesting added": lambda o, a: add(GroupFactory(tenant=a, key="outer", priority=50, attributes={"clearance": 9}), o["oncall"]),
    "group deleted": lambda o, a: group_services.group_delete(group=o["company"]),
    "a default": lambda o, a: attribute_services.definition_update(definition=_definition(a, "clearance"), default=5),
    "a merge rule": lambda o, a: attribute_services.definition_update(definition=_definition(a, "roles"), merge="replace"),
}  # fmt: skip


@pytest.mark.parametrize("cached", [False, True], ids=["uncached", "cached"])
@pytest.mark.parametrize("change", list(CHANGES))
def test_every_source_change_gives_a_new_etag_and_value(
    pip_client, acme, org, change, cached, request, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    if cached:
        request.getfixturevalue("shared_cache")
    ext = "bob" if change == "a default" else "alice"
    before = pip_client.get(url(ext))
    assert pip_client.get(url(ext), HTTP_IF_NONE_MATCH=before["ETag"]).status_code == 304  # cached now, if caching
    with django_capture_on_commit_callbacks(execute=True):
        CHANGES[change](org, acme)
    after = pip_client.get(url(ext), HTTP_IF_NONE_MATCH=before["ETag"])
    assert after.status_code == 200, f"{change}: still 304"
    assert after["ETag"] != before["ETag"]
    assert json.loads(after.content) != json.loads(before.content), change
    fresh = pip_client.get(url(ext))
    assert fresh.content == after.content and fresh["ETag"] == after["ETag"]


def test_an_unrelated_groups_change_keeps_the_etag(pip_client, acme, org) -> None:  # type: ignore[no-untyped-def]
    before = pip_client.get(url("alice"))["ETag"]
    other = GroupFactory(tenant=acme, key="unrelated")
    group_services.group_update(group=other, attributes={"department": "x"})
    assert pip_client.get(url("alice"))["ETag"] == before


def test_definition_rules_are_checked(acme) -> None:  # type: ignore[no-untyped-def]
    from core.errors import ValidationFailed

    for fields in (
        {"key": "a", "type": "integer", "default": "x"},
        {"key": "b", "type": "string", "merge": "union"},
        {"key": "c", "type": "string", "merge": "sometimes"},
        {"key": "d", "type": "string", "target": "tenant", "default": "x"},
        {"key": "e", "type": "string_list", "default": ["ok", 1]},
    ):
        with pytest.raises(ValidationFailed):
            attribute_services.definition_create(tenant=acme, **fields)
    definition = attribute_services.definition_create(
        tenant=acme, key="f", type="enum", allowed_values=["x"], default="x"
    )
    assert definition.default == "x"
