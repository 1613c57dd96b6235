"""The users list through the lean door (``api/users/lean.py``, issue 16): the full stack's answer.

Each request is made twice with the same API key: once as the door answers it, once with the door's
handler declining (so the view answers, through the whole middleware stack and DRF). The two answers
must be the same bytes and headers (but for ``X-Request-ID``), for every page of a cursor walk, every
release policy, the values whose JSON differs between orjson and Python (1e-07, integers beyond 64
bits, U+2028), the errors, and the requests the door leaves to the view.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client

from access.keys import api_key_create
from api.users import lean as users_door
from attributes.models import AttributeDefinition
from attributes.services import definition_create, definition_delete, definition_update
from core.errors import DomainError
from core.guards import domain_write
from tests.factories import TenantFactory, UserFactory
from tests.test_user_list_lean import lean  # noqa: F401 - the users with the edge values, shared
from users.models import User

pytestmark = pytest.mark.django_db
URL = "/api/v1/tenants/lean/users/"


@pytest.fixture
def keys(lean):  # type: ignore[no-untyped-def]  # noqa: F811 - the fixture imported above
    definition_update(definition=AttributeDefinition.objects.get(tenant=lean, key="name"), pii=True)
    huge = UserFactory(tenant=lean, external_id="huge", attributes={"clearance": 2**70, "score": 2.5})
    with domain_write():  # rows no service would write
        User.objects.filter(tenant=lean, external_id="eve").update(created_at=datetime(2026, 1, 1, tzinfo=UTC))
        # beyond a double: orjson cannot read it, PostgreSQL and Python's json can
        User.objects.filter(pk=huge.pk).update(attributes={**huge.attributes, "level": 10**400})
    UserFactory(
        tenant=lean, external_id="sep", display_name="a\u2029b", attributes={"name": "x\u2028y", "score": 0.0001}
    )
    other = TenantFactory(slug="other")
    return {
        name: api_key_create(name=name, scopes=scopes, tenants=tenants, attributes=attributes)[1]
        for name, scopes, tenants, attributes in [
            ("full", ["directory:read", "pii:read"], [lean], None),
            ("plain", ["directory:read"], [lean], None),  # PII values withheld
            ("narrow", ["directory:read", "pii:read"], [lean], ["clearance", "name"]),
            ("elsewhere", ["directory:read"], [other], None),
        ]
    }


@pytest.fixture
def answered(monkeypatch) -> list[bool]:  # type: ignore[no-untyped-def]
    """Whether the door's handler answered each request it was given (False: it left it to the view);
    a domain error it raises is answered by the door (a problem body)."""
    seen: list[bool] = []
    original = users_door.users_page

    def spying(*args: Any) -> Any:
        try:
            response = original(*args)
        except DomainError:
            seen.append(True)
            raise
        seen.append(response is not None)
        return response

    monkeypatch.setattr(users_door.ROUTES[0], "handler", spying)
    return seen


def both(monkeypatch, raw: str, url: str, params: dict | None = None, **headers: str):  # type: ignore[no-untyped-def]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}", **headers)
    door = client.get(url, params)
    with monkeypatch.context() as patch:
        patch.setattr(users_door.ROUTES[0], "handler", lambda *args: None)  # the door declines: the view answers
        view = client.get(url, params)
    return door, view


def assert_same(monkeypatch, raw: str, url: str, params: dict | None = None, **headers: str):  # type: ignore[no-untyped-def]
    door, view = both(monkeypatch, raw, url, params, **headers)
    assert (door.status_code, door.content) == (view.status_code, view.content)
    drop = {"X-Request-ID"}
    assert {k: v for k, v in door.items() if k not in drop} == {k: v for k, v in view.items() if k not in drop}
    return door


PAGES = [
    {},
    {"page_size": "2"},
    {"page_size": "1"},
    {"q": "clearance ge 2"},
    {"q": "groups has eng OR NOT contractor eq true", "page_size": "1"},
    {"attr.score__gt": "0", "status": "active"},
    {"attr.clearance__ge": "1", "q": ["score lt 100", "NOT name eq Ada"]},
    {"status": "disabled"},
    {"external_id": "cé"},
    {"q": "name eq nobody"},
    {"page_size": "1000"},  # capped
    {"page_size": "9" * 40},
]


@pytest.mark.parametrize("key", ["full", "plain", "narrow"])
@pytest.mark.parametrize("params", PAGES)
def test_every_page_is_the_views_byte_for_byte(keys, answered, monkeypatch, key, params) -> None:  # type: ignore[no-untyped-def]
    first = assert_same(monkeypatch, keys[key], URL, params)
    assert answered == [True], "the door answered itself"
    if first.status_code == 400:  # a key the policy withholds is as unknown as a key of no definition
        assert key in ("narrow", "plain"), first.content  # a listed key, a PII key
        return
    body = first.json()
    pages = 1
    while body["next"]:  # forward through the cursor, and one step back from each page
        body = assert_same(monkeypatch, keys[key], body["next"]).json()
        pages += 1
        if body["previous"]:
            assert_same(monkeypatch, keys[key], body["previous"])
    assert pages <= 8
    assert answered and all(answered), "the door answered every page itself"


def test_the_values_orjson_writes_differently_are_written_as_the_view_writes_them(keys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    body = assert_same(monkeypatch, keys["full"], URL, {"page_size": "50"}).content
    assert b'"score":1e-07' in body and b'"clearance":1180591620717411303424' in body and b"0" * 400 in body
    assert b"\\u2028" in body and "\u2028".encode() not in body
    orjson_page = assert_same(monkeypatch, keys["full"], URL, {"external_id": "sep"}).content
    assert b'"score":0.0001' in orjson_page and b"\\u2028" in orjson_page and b"\\u2029" in orjson_page


def test_whole_second_timestamps_and_cursors(keys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    body = assert_same(monkeypatch, keys["full"], URL, {"external_id": "eve"}).json()
    assert body["results"][0]["created_at"] == "2026-01-01T00:00:00Z"
    oldest = assert_same(monkeypatch, keys["full"], URL, {"page_size": "6"}).json()
    assert oldest["next"]
    last = assert_same(monkeypatch, keys["full"], oldest["next"]).json()
    assert [user["external_id"] for user in last["results"]] == ["eve"]


@pytest.mark.parametrize(
    ("url", "params", "status"),
    [
        (URL, {"q": "clearance gt"}, 400),
        (URL, {"q": "nosuchkey eq 1"}, 400),
        (URL, {"attr.clearance__ge": "high"}, 400),
        (URL, {"attr.groups__lt": "x"}, 400),  # an operator the type does not support
        (URL, {"q": "name eq 'x' OR 1=1; DROP TABLE users_user --"}, 400),
        (URL, {"attr.name'--": "x"}, 400),
        (URL, {"q": "(" * 200}, 400),
        (URL, {"q": "name eq x" * 300}, 400),  # too long
        (URL + "?q=name%20eq%20%ED%A0%80", None, 400),  # a lone surrogate's bytes
        (URL, {"attr.nаme": "x"}, 400),  # a Cyrillic "а": a look-alike key
        (URL, {"attr.clearance__between": ",".join(["1"] * 500)}, 400),
        (URL, {f"attr.k{n}": "1" for n in range(25)}, 400),  # too many conditions
        ("/api/v1/tenants/nope/users/", {}, 404),
        ("/api/v1/tenants/" + "x" * 5000 + "/users/", {}, 404),
        ("/api/v1/tenants/%F0%9F%9A%80/users/", {}, 404),
        ("/api/v1/tenants/other/users/", {}, 404),  # a tenant the key does not reach
        ("/api/v1/tenants/00000000-0000-0000-0000-000000000000/users/", {}, 404),
    ],
)
def test_errors_are_the_views(keys, answered, monkeypatch, url, params, status) -> None:  # type: ignore[no-untyped-def]
    assert assert_same(monkeypatch, keys["full"], url, params).status_code == status
    assert answered == [True], "the door answered the error itself"


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ({"ordering": "-attr.clearance"}, {}),
        ({"status": "nosuch"}, {}),
        ({"page_size": "0"}, {}),
        ({"page_size": "x"}, {}),
        ({"external_id": ["a", "b"]}, {}),
        ({"cursor": "bm9wZQ"}, {}),  # a cursor that is not one: the view's 400
        ({"cursor": "cD0yMDI2LTAxLTAxJTAw"}, {}),  # p=2026-01-01%00: a NUL in the position
        ({"unknown": "1"}, {}),
        ({}, {"HTTP_ACCEPT": "text/html"}),
        ({}, {"HTTP_ACCEPT": "application/json; indent=4"}),
    ],
)
def test_what_the_door_leaves_to_the_view(keys, answered, monkeypatch, params, headers) -> None:  # type: ignore[no-untyped-def]
    assert_same(monkeypatch, keys["full"], URL, params, **headers)
    assert not any(answered)


def test_a_nul_is_refused_before_the_door(keys, answered, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    response = assert_same(monkeypatch, keys["full"], URL + "?q=name%20eq%20a%00b")
    assert response.status_code == 400 and not answered


def test_a_tenant_by_id_and_another_time_zone(keys, answered, monkeypatch, lean, settings) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    assert_same(monkeypatch, keys["full"], f"/api/v1/tenants/{lean.id}/users/", {"page_size": "2"})
    assert answered == [True]
    settings.TIME_ZONE = "Asia/Kolkata"
    body = assert_same(monkeypatch, keys["full"], URL, {"page_size": "2"}).json()
    assert body["results"][0]["created_at"].endswith("+05:30")
    assert answered == [True], "outside UTC the door leaves the list to the view"


def test_a_search_is_compiled_once_per_schema_and_policy(keys, monkeypatch, lean) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    compiled: list[int] = []
    original = users_door.attribute_search

    def counting(*args: Any) -> Any:
        compiled.append(1)
        return original(*args)

    monkeypatch.setattr(users_door, "attribute_search", counting)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {keys['full']}")
    first = client.get(URL, {"q": "clearance ge 2", "page_size": "1"})
    assert first.status_code == 200 and len(compiled) == 1
    client.get(first.json()["next"])  # the next page: the same search
    client.get(URL, {"q": "clearance ge 2", "page_size": "3"})
    assert len(compiled) == 1
    narrow = Client(HTTP_AUTHORIZATION=f"Bearer {keys['plain']}")
    assert narrow.get(URL, {"q": "name eq Ada"}).status_code == 400  # PII withheld from this key
    assert Client(HTTP_AUTHORIZATION=f"Bearer {keys['full']}").get(URL, {"q": "name eq Ada"}).status_code == 200
    assert narrow.get(URL, {"q": "name eq Ada"}).status_code == 400, "another policy's compiled search is not reused"
    unused = definition_create(tenant=lean, key="rank", type="integer")
    assert client.get(URL, {"q": "rank ge 2"}).json()["results"] == []
    definition_delete(definition=unused)
    gone = client.get(URL, {"q": "rank ge 2"})
    assert gone.status_code == 400 and gone.json()["errors"][0]["rule"] == "unknown", "the schema moved on"
