"""Least-privilege attribute release (issue 19): a key's attribute list and ``pii:read`` × every door.

Against real PostgreSQL and a real ``redis-server`` (the production cache configuration), so the
cache-poisoning test exercises the cache keys that production uses.
"""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any
from urllib.parse import quote

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from access.keys import api_key_create, api_key_release_set
from access.models import ApiKey, PiiReadCount
from access.pii_audit import _PENDING, pii_reads_flush
from access.release import MAX_KEYS
from core.errors import ValidationFailed
from groups import services as group_services
from outbox.models import OutboxEvent
from tenants import services as tenant_services
from tests.factories import DefinitionFactory, TenantFactory, UserFactory
from users import services as user_services

pytestmark = pytest.mark.django_db

USER_VALUES = {"department": "eng", "clearance": 3, "ssn": "123-45-6789"}
TENANT_VALUES = {"region": "eu", "hq_phone": "+33 1 23 45 67 89"}
PII = {"ssn", "hq_phone"}
SECRETS = [b"123-45-6789", b"+33 1 23 45 67 89"]
# (pii:read, attribute list) → the matrix's four keys
KEYS = {
    "plain": (False, None),
    "pii": (True, None),
    "listed": (False, ["department", "ssn", "region", "hq_phone"]),
    "listed_pii": (True, ["department", "ssn", "region", "hq_phone"]),
}


def visible(values: dict[str, Any], kind: str) -> dict[str, Any]:
    pii, listed = KEYS[kind]
    return {k: v for k, v in values.items() if (pii or k not in PII) and (listed is None or k in listed)}


@pytest.fixture
def acme(with_redis):  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme", name="Acme")
    DefinitionFactory(tenant=tenant, key="department", type="string")
    DefinitionFactory(tenant=tenant, key="clearance", type="integer", target="user_and_group")
    DefinitionFactory(tenant=tenant, key="ssn", type="string", pii=True, target="user_and_group")
    DefinitionFactory(tenant=tenant, key="region", type="string", target="tenant")
    DefinitionFactory(tenant=tenant, key="hq_phone", type="string", target="tenant", pii=True)
    tenant = tenant_services.tenant_update(tenant=tenant, attributes=TENANT_VALUES)
    UserFactory(tenant=tenant, external_id="alice", attributes=USER_VALUES)
    group = group_services.group_create(tenant=tenant, key="staff", attributes={"ssn": "000-00-0000"})
    bob = UserFactory(tenant=tenant, external_id="bob", attributes={"department": "sales"})
    group_services.group_members_add(group=group, ids=[str(bob.id)])
    return tenant


def client_for(tenant, kind: str) -> tuple[APIClient, ApiKey]:  # type: ignore[no-untyped-def]
    pii, listed = KEYS[kind]
    scopes = ["pip:read", "directory:read"] + (["pii:read"] if pii else [])
    key, raw = api_key_create(name=f"k-{kind}", scopes=scopes, tenants=[tenant], attributes=listed)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client, key


def url(external_id: str, query: str = "") -> str:
    return f"/api/v1/pip/tenants/acme/subjects/{quote(external_id, safe='')}{query}"


@pytest.mark.parametrize("kind", list(KEYS))
def test_lookup_authzen_explain_and_batch_release_only_the_policy(acme, kind) -> None:  # type: ignore[no-untyped-def]
    client, _ = client_for(acme, kind)
    for _ in range(2):  # the second from the cache
        body = json.loads(client.get(url("alice")).content)
        assert body["attributes"] == visible(USER_VALUES, kind)
        assert body["tenant"]["attributes"] == visible(TENANT_VALUES, kind)
    authzen = json.loads(client.get(url("alice", "?format=authzen")).content)["properties"]
    assert {k: v for k, v in authzen.items() if not k.startswith("iam:")} == visible(USER_VALUES, kind)
    assert authzen["iam:tenant"]["attributes"] == visible(TENANT_VALUES, kind)
    explained = json.loads(client.get(url("bob", "?explain=true")).content)
    bob_values = {"department": "sales", "ssn": "000-00-0000"}
    assert explained["attributes"] == {**visible(bob_values, kind), "groups": ["staff"]} or (
        KEYS[kind][1] is not None and explained["attributes"] == visible(bob_values, kind)
    )
    assert set(explained["sources"]) == set(explained["attributes"])  # no source of a withheld key
    batch = client.post(
        "/api/v1/pip/resolve?format=authzen",
        {"subjects": [{"tenant": "acme", "external_id": "alice"}, {"tenant": "acme", "external_id": "bob"}]},
        format="json",
    )
    native = client.post(
        "/api/v1/pip/resolve", {"subjects": [{"tenant": "acme", "external_id": "alice"}]}, format="json"
    )
    assert json.loads(native.content)["results"][0]["subject"]["attributes"] == visible(USER_VALUES, kind)
    if not KEYS[kind][0]:
        for response in (batch, native):
            assert not any(secret in response.content for secret in SECRETS), response.content
            assert b"000-00-0000" not in response.content and b'"ssn"' not in response.content


@pytest.mark.parametrize("kind", list(KEYS))
def test_bundle_releases_only_the_policy(acme, kind) -> None:  # type: ignore[no-untyped-def]
    client, _ = client_for(acme, kind)
    response = client.get("/api/v1/pip/tenants/acme/bundle.tar.gz")
    assert response.status_code == 200
    raw = b"".join(response.streaming_content)
    data_json = tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz").extractfile("data.json").read()  # type: ignore[union-attr]
    tenant = json.loads(data_json)["iam"]["tenants"]["acme"]
    assert tenant["attributes"] == visible(TENANT_VALUES, kind)
    assert tenant["users"]["alice"]["attributes"] == visible(USER_VALUES, kind)
    assert "ssn" not in tenant["groups"]["staff"]["attributes"] or KEYS[kind][0]
    if not KEYS[kind][0]:
        assert not any(secret in data_json for secret in SECRETS) and b"000-00-0000" not in data_json


@pytest.mark.parametrize("kind", list(KEYS))
def test_users_api_and_search_release_only_the_policy(acme, kind) -> None:  # type: ignore[no-untyped-def]
    client, _ = client_for(acme, kind)
    listed = client.get("/api/v1/tenants/acme/users/?external_id=alice")
    assert listed.status_code == 200, listed.content
    (alice,) = json.loads(listed.content)["results"]
    assert alice["attributes"] == visible(USER_VALUES, kind)
    one = json.loads(client.get(f"/api/v1/tenants/acme/users/{alice['id']}/").content)
    assert one["attributes"] == visible(USER_VALUES, kind)
    # searching or sorting by a withheld key is the 400 of an unknown key: never an oracle
    searched = client.get("/api/v1/tenants/acme/users/?attr.ssn=123-45-6789")
    unknown = client.get("/api/v1/tenants/acme/users/?attr.nosuch=1")
    if "ssn" in visible(USER_VALUES, kind):
        assert searched.status_code == 200 and len(json.loads(searched.content)["results"]) == 1
    else:
        assert searched.status_code == unknown.status_code == 400
        assert json.loads(searched.content)["errors"][0]["rule"] == json.loads(unknown.content)["errors"][0]["rule"]
        q = client.get("/api/v1/tenants/acme/users/", {"q": "ssn eq 123-45-6789"})
        assert q.status_code == 400


@pytest.mark.parametrize("kind", list(KEYS))
def test_export_for_a_key_releases_only_its_policy_and_the_operators_is_whole(acme, kind, capsys) -> None:  # type: ignore[no-untyped-def]
    _, key = client_for(acme, kind)
    out = io.StringIO()
    call_command("export_tenant", "--tenant", "acme", "--release-of", key.prefix, stdout=out, stderr=io.StringIO())
    rows = {row["external_id"]: row for row in map(json.loads, out.getvalue().splitlines())}
    assert rows["alice"]["attributes"] == visible(USER_VALUES, kind)
    whole = io.StringIO()
    call_command("export_tenant", "--tenant", "acme", stdout=whole, stderr=io.StringIO())
    assert "123-45-6789" in whole.getvalue()
    other = TenantFactory(slug="other")
    with pytest.raises(CommandError):
        call_command("export_tenant", "--tenant", other.slug, "--release-of", key.prefix, stdout=io.StringIO())


def test_cache_poisoning_a_broad_key_warms_the_cache_a_narrow_key_gets_a_narrow_answer(acme, with_redis) -> None:  # type: ignore[no-untyped-def]
    broad, _ = client_for(acme, "pii")
    narrow, _ = client_for(acme, "listed")
    for _ in range(3):
        broad_answer = broad.get(url("alice"))
    assert b"123-45-6789" in broad_answer.content
    assert with_redis.keys("*pip:e3:*")  # the broad answer is cached
    narrow_answer = narrow.get(url("alice"))
    assert json.loads(narrow_answer.content)["attributes"] == {"department": "eng"}
    assert narrow_answer["ETag"] != broad_answer["ETag"]
    # the broad key's ETag never revalidates the narrow key's answer (a 304 would keep the broad body)
    assert narrow.get(url("alice"), HTTP_IF_NONE_MATCH=broad_answer["ETag"]).status_code == 200
    bundle_broad = broad.get("/api/v1/pip/tenants/acme/bundle.tar.gz")
    bundle_narrow = narrow.get("/api/v1/pip/tenants/acme/bundle.tar.gz", HTTP_IF_NONE_MATCH=bundle_broad["ETag"])
    assert bundle_narrow.status_code == 200 and bundle_narrow["ETag"] != bundle_broad["ETag"]


def test_a_changed_policy_applies_from_the_next_request(acme) -> None:  # type: ignore[no-untyped-def]
    client, key = client_for(acme, "pii")
    assert "ssn" in json.loads(client.get(url("alice")).content)["attributes"]
    api_key_release_set(key=key, attributes=["department"], pii=False)
    assert json.loads(client.get(url("alice")).content)["attributes"] == {"department": "eng"}
    assert "pii:read" not in ApiKey.objects.get(pk=key.pk).scopes


def test_pii_reads_are_counted_per_key_per_hour(acme) -> None:  # type: ignore[no-untyped-def]
    _PENDING.clear()  # counted by the other tests, whose rows rolled back
    reader, reader_key = client_for(acme, "pii")
    plain, plain_key = client_for(acme, "plain")
    reader.get(url("alice"))
    reader.get(url("alice"))  # cached: counted too
    reader.post("/api/v1/pip/resolve", {"subjects": [{"tenant": "acme", "external_id": "alice"}]}, format="json")
    plain.get(url("alice"))
    reader.get("/api/v1/tenants/acme/users/?external_id=alice")
    pii_reads_flush()
    counts = dict(PiiReadCount.objects.values_list("key_id", "count"))
    assert counts == {reader_key.pk: 4}
    assert plain_key.pk not in counts


@pytest.mark.parametrize("carried", [False, True])
def test_events_carry_pii_values_only_if_the_tenant_says_so(with_redis, carried) -> None:  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="evt", events_include_pii=carried)
    DefinitionFactory(tenant=tenant, key="ssn", type="string", pii=True)
    DefinitionFactory(tenant=tenant, key="department", type="string")
    user = UserFactory(tenant=tenant, external_id="alice", attributes={"ssn": "123-45-6789", "department": "eng"})
    user_services.user_update(user=user, attributes={"ssn": "999-99-9999"}, merge_attributes=True)
    rows = OutboxEvent.objects.filter(tenant_id=tenant.id, aggregate_type="user").order_by("sequence")
    assert [row.event_type for row in rows] == ["UserCreated", "UserAttributesChanged"]
    for row, value in zip(rows, ["123-45-6789", "999-99-9999"], strict=True):
        attributes = row.payload["data"]["attributes"]
        assert attributes["department"] == "eng"
        assert attributes["ssn"] == (value if carried else {"redacted": True})
        assert row.payload["aggregateversion"] == row.aggregate_version
        assert (value.encode() in json.dumps(row.payload).encode()) is carried


def test_the_tenant_setting_is_editable_through_the_api(api, with_redis) -> None:  # type: ignore[no-untyped-def]
    TenantFactory(slug="flag")
    response = api.patch("/api/v1/tenants/flag/", {"events_include_pii": True}, format="json")
    assert response.status_code == 200, response.content
    assert json.loads(response.content)["events_include_pii"] is True


@pytest.mark.parametrize(
    "attributes",
    [
        ["department\u200b"],  # zero-width space
        ["ｄepartment"],  # fullwidth letter (NFKC would fold it to 'department')
        ["dépârtment"],
        ["Department"],
        ["department\n"],
        ["a" * 65],
        ["department,ssn"],
        [""],
        [1],
        "*,\u212aelvin",  # KELVIN SIGN: lowercases to 'k'
        [f"k{i}" for i in range(MAX_KEYS + 1)],
    ],
)
def test_forged_attribute_lists_are_refused(with_redis, attributes) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationFailed):
        api_key_create(name="x", scopes=["pip:read"], attributes=attributes)


def test_star_never_releases_pii_without_the_scope(acme) -> None:  # type: ignore[no-untyped-def]
    key, raw = api_key_create(name="star", scopes=["pip:read"], tenants=[acme], attributes="*,department")
    assert key.attributes == ["*"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    body = json.loads(client.get(url("alice")).content)
    assert body["attributes"] == {"department": "eng", "clearance": 3}
    assert body["tenant"]["attributes"] == {"region": "eu"}


def test_create_api_key_command_takes_an_attribute_list(acme) -> None:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    call_command(
        "create_api_key", "--name", "opa", "--scopes", "pip:read", "--attributes", "department,clearance",
        stdout=out, stderr=io.StringIO(),
    )  # fmt: skip
    assert ApiKey.objects.get(name="opa").attributes == ["clearance", "department"]
    with pytest.raises(CommandError):
        call_command(
            "create_api_key", "--name", "bad", "--scopes", "pip:read", "--attributes", "ｓsn", stderr=io.StringIO()
        )


def test_the_console_edits_a_keys_release_policy_and_shows_the_pii_counts(admin_client_logged_in, acme) -> None:  # type: ignore[no-untyped-def]
    client, key = client_for(acme, "plain")
    page = admin_client_logged_in.get(f"/admin/access/apikey/{key.pk}/change/")
    assert (
        page.status_code == 200 and b'name="release_attributes"' in page.content and b'name="pii_read"' in page.content
    )
    refused = admin_client_logged_in.post(f"/admin/access/apikey/{key.pk}/change/", {"release_attributes": "ｓsn"})
    assert refused.status_code == 200 and ApiKey.objects.get(pk=key.pk).attributes is None  # the form again
    saved = admin_client_logged_in.post(
        f"/admin/access/apikey/{key.pk}/change/", {"release_attributes": "department,ssn", "pii_read": "on"}
    )
    assert saved.status_code == 302, saved.content
    stored = ApiKey.objects.get(pk=key.pk)
    assert stored.attributes == ["department", "ssn"] and "pii:read" in stored.scopes
    assert json.loads(client.get(url("alice")).content)["attributes"] == {"department": "eng", "ssn": "123-45-6789"}
    _PENDING.clear()
    pii_reads_flush()
    client.get(url("alice", "?format=authzen"))
    pii_reads_flush()
    listing = admin_client_logged_in.get("/admin/access/piireadcount/")
    assert listing.status_code == 200 and b"k-plain" in listing.content


@pytest.mark.parametrize("kind", list(KEYS))
def test_groups_and_tenants_apis_release_only_the_policy(acme, kind) -> None:  # type: ignore[no-untyped-def]
    client, _ = client_for(acme, kind)
    groups = json.loads(client.get("/api/v1/tenants/acme/groups/").content)["results"]
    assert [group["attributes"] for group in groups] == [visible({"ssn": "000-00-0000"}, kind)]
    tenant = json.loads(client.get("/api/v1/tenants/acme/").content)
    assert tenant["attributes"] == visible(TENANT_VALUES, kind)
    (listed,) = json.loads(client.get("/api/v1/tenants/").content)["results"]
    assert listed["attributes"] == visible(TENANT_VALUES, kind)


def test_a_narrow_writer_cannot_name_or_wipe_what_it_cannot_see(acme) -> None:  # type: ignore[no-untyped-def]
    _, raw = api_key_create(
        name="writer", scopes=["directory:write"], tenants=[acme], attributes=["department", "clearance"]
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    alice = json.loads(client.get("/api/v1/tenants/acme/users/?external_id=alice").content)["results"][0]
    named = client.patch(f"/api/v1/tenants/acme/users/{alice['id']}/", {"attributes": {"ssn": "x"}}, format="json")
    unknown = client.patch(f"/api/v1/tenants/acme/users/{alice['id']}/", {"attributes": {"nosuch": "x"}}, format="json")
    assert named.status_code == unknown.status_code == 400
    assert json.loads(named.content)["errors"][0]["rule"] == json.loads(unknown.content)["errors"][0]["rule"]
    put = client.put(
        f"/api/v1/tenants/acme/users/{alice['id']}/",
        {"external_id": "alice", "attributes": {"department": "sales"}},
        format="json",
    )
    assert put.status_code == 200, put.content
    assert json.loads(put.content)["attributes"] == {"department": "sales"}
    from users.models import User

    assert User.objects.get(external_id="alice", tenant=acme).attributes == {
        "department": "sales",
        "ssn": "123-45-6789",
    }


@pytest.mark.parametrize("carried", [False, True])
def test_a_pii_definitions_default_is_a_pii_value(with_redis, carried) -> None:  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="dflt", events_include_pii=carried)
    DefinitionFactory(tenant=tenant, key="ssn", type="string", pii=True, default="000-00-0000")
    (row,) = OutboxEvent.objects.filter(tenant_id=tenant.id, event_type="AttributeDefinitionCreated")
    assert row.payload["data"]["default"] == ("000-00-0000" if carried else {"redacted": True})
    for kind in ("plain", "pii"):
        client, _ = client_for(tenant, kind)
        client.credentials(HTTP_AUTHORIZATION=client._credentials["HTTP_AUTHORIZATION"])
        body = json.loads(client.get("/api/v1/tenants/dflt/attribute-definitions/ssn/").content)
        assert body["default"] == ("000-00-0000" if kind == "pii" else {"redacted": True})


def test_a_narrow_writer_keeps_a_groups_and_a_tenants_withheld_values_on_put(acme) -> None:  # type: ignore[no-untyped-def]
    _, raw = api_key_create(
        name="w", scopes=["directory:write"], tenants=[acme], attributes=["department", "clearance", "region"]
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    (group,) = json.loads(client.get("/api/v1/tenants/acme/groups/").content)["results"]
    put = client.put(f"/api/v1/tenants/acme/groups/{group['id']}/", {"key": "staff", "attributes": {}}, format="json")
    assert put.status_code == 200, put.content
    from groups.models import Group

    assert Group.objects.get(pk=group["id"]).attributes == {"ssn": "000-00-0000"}
    tenant_put = client.put("/api/v1/tenants/acme/", {"slug": "acme", "name": "Acme"}, format="json")
    assert tenant_put.status_code == 200, tenant_put.content
    assert json.loads(tenant_put.content)["attributes"] == {}  # region removed by the PUT; hq_phone withheld
    acme.refresh_from_db()
    assert acme.attributes == {"hq_phone": "+33 1 23 45 67 89"}
