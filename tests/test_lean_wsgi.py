"""The lean door in front of Django's WSGI handler (``api/lean_wsgi.py``, issue 13).

Every request is answered twice — through ``iam_project.wsgi``'s wrapper, as gunicorn calls it, and
through Django's test client (the middleware path the rest of the suite exercises) — and the two
answers must be the same bytes and headers (but for ``Date``, the random ``X-Request-ID`` and the
``Consistency-Token``, a WAL position that moves between the two requests). A
lookup the wrapper answers runs none of Django's request cycle; a request it leaves to Django is
tried by the door once, not twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_started
from django.db import close_old_connections
from django.test import Client, RequestFactory

from access.keys import api_key_create
from api import lean
from api.lean_wsgi import LeanWSGI

pytestmark = pytest.mark.django_db
VOLATILE = {"Date", "X-Request-ID", "Consistency-Token"}  # the token: the WAL position, which moves


@pytest.fixture
def acme(pip_tenant):  # type: ignore[no-untyped-def]
    return pip_tenant


@pytest.fixture
def raw_keys(acme):  # type: ignore[no-untyped-def]
    made = {}
    for name, scopes, attributes in [
        ("pip", ["pip:read", "pii:read"], None),
        ("narrow", ["pip:read"], ["n"]),
        ("directory", ["directory:read"], None),
    ]:
        made[name] = api_key_create(name=name, scopes=scopes, tenants=[acme], attributes=attributes)[1]
    return made


@contextmanager
def as_the_test_client_does() -> Iterator[None]:
    """Django's own cycle inside a test's transaction: without closing the connection (ClientHandler)."""
    request_started.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)


def through_wsgi(app: LeanWSGI, method: str, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    environ = dict(RequestFactory().generic(method, path, **headers).environ)
    # As a server passes it (PEP 3333): the path's UTF-8 bytes as Latin-1 text (WSGIRequest decoded it).
    environ["PATH_INFO"] = environ["PATH_INFO"].encode("utf-8").decode("iso-8859-1")
    answer: dict[str, Any] = {}

    def start_response(status: str, header_list: list[tuple[str, str]]) -> None:
        answer["status"], answer["headers"] = int(status.split()[0]), dict(header_list)

    with as_the_test_client_does():
        body = b"".join(app(environ, start_response))
    if method == "HEAD":
        body = b""  # the server sends no body for HEAD (gunicorn), as the test client drops it
    return answer["status"], answer["headers"], body


def through_client(method: str, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    response = Client().generic(method, path, **headers)
    return response.status_code, dict(response.items()), response.content


CASES = [
    ("GET", "/api/v1/pip/tenants/acme/subjects/alice", "pip", {}),
    ("GET", "/api/v1/pip/tenants/acme/subjects/bob/ops", "pip", {}),
    ("GET", "/api/v1/pip/tenants/acme/subjects/alice?format=authzen", "pip", {}),
    ("GET", "/api/v1/pip/tenants/acme/subjects/alice?explain=true", "pip", {}),
    ("GET", "/api/v1/pip/tenants/acme/subjects/alice", "narrow", {}),
    ("HEAD", "/api/v1/pip/tenants/acme/subjects/alice", "pip", {}),
    ("GET", "/api/v1/pip/tenants/acme/subjects/nobody", "pip", {}),
    ("GET", "/api/v1/pip/tenants/elsewhere/subjects/alice", "pip", {}),
    ("GET", "/api/v1/pip/tenants/acme/subjects/alice?format=xml", "pip", {}),
    ("GET", "/api/v1/pip/tenants/acme/subjects/alice", None, {}),  # no key: 401 from the full stack
    ("GET", "/api/v1/pip/tenants/acme/subjects/\u0100lice", None, {}),  # a non-Latin-1 path left to Django
    ("GET", "/api/v1/pip/tenants/acme/subjects/\u0100lice", "pip", {}),
    ("GET", "/api/v1/pip/tenants/acme/subjects/alice", "forged", {}),
    ("GET", "/api/v1/pip/tenants/acme/subjects/alice", "directory", {}),  # 403
    ("POST", "/api/v1/pip/tenants/acme/subjects/alice", "pip", {}),  # 405, never read here
    ("GET", "/api/v1/tenants/", "pip", {}),  # not a door route
]


@pytest.mark.parametrize(("method", "path", "key", "extra"), CASES)
def test_the_wrapper_answers_what_the_full_cycle_answers(acme, raw_keys, method, path, key, extra) -> None:  # type: ignore[no-untyped-def]
    headers = dict(extra)
    if key is not None:
        token = raw_keys.get(key, "iam_00000000_forged-forged-forged-forged-forged-forged")
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    app = LeanWSGI(WSGIHandler())
    wsgi_status, wsgi_headers, wsgi_body = through_wsgi(app, method, path, **headers)
    status, client_headers, body = through_client(method, path, **headers)
    assert (wsgi_status, wsgi_body) == (status, body)
    assert {k: v for k, v in wsgi_headers.items() if k not in VOLATILE} == {
        k: v for k, v in client_headers.items() if k not in VOLATILE
    }
    assert wsgi_headers.get("X-Request-ID")
    assert ("Consistency-Token" in wsgi_headers) == ("Consistency-Token" in client_headers)


def test_a_revalidation_is_the_same_304(acme, raw_keys) -> None:  # type: ignore[no-untyped-def]
    app = LeanWSGI(WSGIHandler())
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw_keys['pip']}"}
    path = "/api/v1/pip/tenants/acme/subjects/alice"
    etag = through_client("GET", path, **auth)[1]["ETag"]
    status, headers, body = through_wsgi(app, "GET", path, HTTP_IF_NONE_MATCH=etag, **auth)
    assert (status, body, headers["ETag"]) == (304, b"", etag)
    assert through_client("GET", path, HTTP_IF_NONE_MATCH=etag, **auth)[0] == 304


def test_an_answered_lookup_runs_none_of_djangos_cycle_and_a_refusal_tries_the_door_once(
    acme, raw_keys, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    started, doors = [], []
    original = lean.LeanApiMiddleware.door

    def counting_door(self, *args):  # type: ignore[no-untyped-def]
        doors.append(1)
        return original(self, *args)

    def on_start(**kwargs: Any) -> None:
        started.append(1)

    monkeypatch.setattr(lean.LeanApiMiddleware, "door", counting_door)
    request_started.connect(on_start)
    try:
        app = LeanWSGI(WSGIHandler())
        path = "/api/v1/pip/tenants/acme/subjects/alice"
        status, _, _ = through_wsgi(app, "GET", path, HTTP_AUTHORIZATION=f"Bearer {raw_keys['pip']}")
        assert (status, started, doors) == (200, [], [1])
        status, _, _ = through_wsgi(app, "GET", path, HTTP_AUTHORIZATION=f"Bearer {raw_keys['directory']}")
        assert (status, started, doors) == (403, [1], [1, 1])  # Django answered; the door was not tried again
    finally:
        request_started.disconnect(on_start)


def test_the_served_application_is_the_wrapper() -> None:
    from iam_project import wsgi

    assert isinstance(wsgi.application, LeanWSGI)
    assert "/api/v1/pip/tenants/" in wsgi.application.prefixes
