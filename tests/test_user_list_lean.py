"""The users list renders rows (``user_rows``), not serialized model instances: the same bytes.

Each request is answered twice, by the view and by the serializer path it replaced
(``UserOutputSerializer(page, many=True)`` over model instances), and the responses must be equal
byte for byte: bodies (field order, number and date formats, escaping, cursors) and headers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.request import Request
from rest_framework.response import Response

from api.users.serializers import USER_OUTPUT_FIELDS, UserOutputSerializer, user_rows
from api.users.views import UserViewSet
from tests.factories import DefinitionFactory, TenantFactory, UserFactory
from users import services
from users.models import User

pytestmark = pytest.mark.django_db
URL = "/api/v1/tenants/lean/users/"


def serializer_list(self: UserViewSet, request: Request, tenant: str) -> Response:
    """The list as it was before the lean rows: model instances through the serializer."""
    page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
    return self.get_paginated_response(UserOutputSerializer(page, many=True).data)


@pytest.fixture
def lean():  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="lean")
    for key, kind in [("clearance", "integer"), ("score", "number"), ("hired", "date"), ("seen", "datetime"),
                      ("name", "string"), ("groups", "string_list"), ("contractor", "boolean")]:  # fmt: skip
        DefinitionFactory(tenant=tenant, key=key, type=kind)
    rows = [
        ("ada", "Ada Lovelace", {"clearance": 5, "score": 9.5, "hired": "2020-01-15", "seen": "2026-01-01T10:00:00Z",
                                 "name": "Ada", "groups": ["admins", "eng"], "contractor": False}),
        ("bob", 'Bob "the" \\ Builder', {"clearance": 2, "score": 0.1, "seen": "2026-01-02T10:00:00+02:00",
                                         "name": "Bob 100%_off", "groups": []}),
        ("cé", "Zoë 🚀 \u2028 <script>", {"clearance": 9007199254740993, "score": 1e-07, "name": "ünïcødé"}),
        ("dan", "", {"score": 12345678.125, "hired": "1999-12-31", "contractor": True}),
        ("eve", "Eve", {}),
    ]  # fmt: skip
    for n, (external_id, display_name, attributes) in enumerate(rows):
        email = "" if n == 3 else f"user{n}@example.com"
        UserFactory(
            tenant=tenant, external_id=external_id, email=email, display_name=display_name, attributes=attributes
        )
    services.user_update(user=User.objects.get(tenant=tenant, external_id="bob"), status="disabled")  # version 2
    UserFactory(tenant=TenantFactory(slug="stranger"), external_id="ada")
    return tenant


def both(api, monkeypatch, url: str, params: dict | None = None):  # type: ignore[no-untyped-def]
    """The view's response and the serializer path's response to the same request."""
    lean_response = api.get(url, params)
    with monkeypatch.context() as patch:
        patch.setattr(UserViewSet, "list", serializer_list)
        old_response = api.get(url, params)
    return lean_response, old_response


def assert_same(api, monkeypatch, url: str, params: dict | None = None) -> dict:  # type: ignore[no-untyped-def]
    new, old = both(api, monkeypatch, url, params)
    assert new.status_code == old.status_code == 200, new.content
    assert new.content == old.content
    drop = {"X-Request-ID"}  # a fresh id per request
    assert {k: v for k, v in new.items() if k not in drop} == {k: v for k, v in old.items() if k not in drop}
    return new.json()


REQUESTS = [
    {},
    {"page_size": 2},
    {"q": "clearance ge 2"},
    {"q": "groups has eng OR NOT contractor eq true", "page_size": 1},
    {"attr.score__gt": "0", "status": "active"},
    {"ordering": "-attr.clearance", "page_size": 2},
    {"ordering": "attr.score", "page_size": 2},
    {"ordering": "attr.hired"},
    {"ordering": "-attr.seen"},
    {"ordering": "attr.contractor"},
    {"ordering": "external_id", "page_size": 2},
    {"ordering": "-updated_at", "page_size": 3},
    {"external_id": "cé"},
    {"q": "name eq nobody"},
]


@pytest.mark.parametrize("params", REQUESTS)
def test_every_page_is_byte_for_byte_the_serializers(api, lean, monkeypatch, params) -> None:  # type: ignore[no-untyped-def]
    body = assert_same(api, monkeypatch, URL, params)
    pages = 1
    while body["next"]:  # forward through the cursor, then one step back
        body = assert_same(api, monkeypatch, body["next"])
        pages += 1
        if body["previous"]:
            assert_same(api, monkeypatch, body["previous"])
    assert pages <= 6


def test_same_bytes_in_a_time_zone_with_an_offset(api, lean, monkeypatch, settings) -> None:  # type: ignore[no-untyped-def]
    settings.TIME_ZONE = "Asia/Kolkata"
    body = assert_same(api, monkeypatch, URL, {"page_size": 3})
    assert body["results"][0]["created_at"].endswith("+05:30")
    assert_same(api, monkeypatch, urlsplit(body["next"]).path + "?" + urlsplit(body["next"]).query)


def test_rows_equal_the_serializer_on_edge_values(lean) -> None:  # type: ignore[no-untyped-def]
    users = list(User.objects.filter(tenant=lean).order_by("external_id"))
    rows = list(User.objects.filter(tenant=lean).order_by("external_id").values(*USER_OUTPUT_FIELDS))
    assert user_rows(rows) == UserOutputSerializer(users, many=True).data
    whole_second = {**rows[0], "created_at": datetime(2026, 1, 1, tzinfo=UTC), "email": None, "version": None}
    instance = User(**{**whole_second, "id": rows[0]["id"]})
    assert user_rows([whole_second]) == [UserOutputSerializer(instance).data]
    assert user_rows([whole_second])[0]["created_at"] == "2026-01-01T00:00:00Z"


def test_the_page_is_one_query_of_the_output_columns(api, lean) -> None:  # type: ignore[no-untyped-def]
    with CaptureQueriesContext(connection) as queries:
        response = api.get(URL, {"q": "clearance ge 2", "ordering": "-attr.clearance"})
    assert response.status_code == 200
    pages = [q["sql"] for q in queries.captured_queries if 'FROM "users_user"' in q["sql"]]
    assert len(pages) == 1, pages
    assert '"users_user"."tenant_id",' not in pages[0]  # the output fields (and the sort key) only
    assert "COUNT(" not in " ".join(q["sql"] for q in queries.captured_queries)
