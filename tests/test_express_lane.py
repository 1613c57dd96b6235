"""The express lane (``api/express.py``, issue 13): a cached lookup answered from the WSGI environ.

Against the module's real ``redis-server`` through the production cache backend. Each answer the
lane gives is compared with the full cycle's (Django's test client through the middleware), and the
lane must be what answered (the door was not called); every request it leaves to the door is read
and counted once, and a revocation, a throttle, a bad Host or an HTTPS redirect ends as it would
without the lane.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from django.core.handlers.wsgi import WSGIHandler
from prometheus_client import REGISTRY

from access import keys
from access.keys import api_key_create, api_key_revoke
from api import lean
from api.lean_wsgi import LeanWSGI
from tests.test_lean_wsgi import VOLATILE, through_client, through_wsgi

pytestmark = pytest.mark.django_db
SUBJECT_ROUTE = "api/v1/pip/tenants/{tenant}/subjects/{external_id}"


@pytest.fixture
def acme(pip_tenant):  # type: ignore[no-untyped-def]
    return pip_tenant


@pytest.fixture
def raw_keys(acme):  # type: ignore[no-untyped-def]
    return {
        name: api_key_create(name=name, scopes=scopes, tenants=[acme], attributes=attributes)[1]
        for name, scopes, attributes in [("pip", ["pip:read", "pii:read"], None), ("narrow", ["pip:read"], ["n"])]
    }


@pytest.fixture
def doors(monkeypatch) -> list[int]:  # type: ignore[no-untyped-def]
    """How many requests reached the door (``LeanApiMiddleware.door``) rather than the lane."""
    called: list[int] = []
    original = lean.LeanApiMiddleware.door

    def counting(self, *args):  # type: ignore[no-untyped-def]
        called.append(1)
        return original(self, *args)

    monkeypatch.setattr(lean.LeanApiMiddleware, "door", counting)
    return called


def bearer(raw: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def same(first: tuple[int, dict[str, str], bytes], second: tuple[int, dict[str, str], bytes]) -> None:
    assert (first[0], first[2]) == (second[0], second[2])
    assert {k: v for k, v in first[1].items() if k not in VOLATILE} == {
        k: v for k, v in second[1].items() if k not in VOLATILE
    }
    assert first[1]["X-Request-ID"] and ("Consistency-Token" in first[1]) == ("Consistency-Token" in second[1])


@pytest.mark.parametrize(
    ("method", "path", "key", "revalidate", "express"),
    [
        ("GET", "/api/v1/pip/tenants/acme/subjects/alice", "pip", False, True),
        ("GET", "/api/v1/pip/tenants/acme/subjects/bob/ops", "pip", False, True),
        ("HEAD", "/api/v1/pip/tenants/acme/subjects/alice", "pip", False, True),
        ("GET", "/api/v1/pip/tenants/acme/subjects/alice", "narrow", False, True),  # the release policy's entry
        ("GET", "/api/v1/pip/tenants/{id}/subjects/alice", "pip", False, True),
        ("GET", "/api/v1/pip/tenants/acme/subjects/alice", "pip", True, True),  # 304
        ("GET", "/api/v1/pip/tenants/acme/subjects/alice?format=authzen", "pip", False, False),
        ("GET", "/api/v1/pip/tenants/acme/subjects/nobody", "pip", False, False),  # a 404: never cached
    ],
)
def test_a_cached_lookup_is_answered_by_the_lane_as_the_full_cycle_answers_it(  # type: ignore[no-untyped-def]
    acme, raw_keys, with_redis, doors, method, path, key, revalidate, express
) -> None:
    path = path.replace("{id}", str(acme.id))
    headers = bearer(raw_keys[key])
    app = LeanWSGI(WSGIHandler())
    through_wsgi(app, "GET", path, **headers)  # the door learns the slug's tenant id,
    first = through_wsgi(app, "GET", path, **headers)  # then fills the cache
    if revalidate:
        headers["HTTP_IF_NONE_MATCH"] = first[1]["ETag"]
    before = len(doors)
    answered = through_wsgi(app, method, path, **headers)
    assert len(doors) - before == (0 if express else 1)
    expected = through_client(method, path, **headers)
    same(answered, expected)
    assert answered[0] == {"HEAD": 200, "GET": 304 if revalidate else 200}[method] or not express


def test_a_miss_left_to_the_door_is_read_and_counted_once(acme, raw_keys, with_redis, doors, cost) -> None:  # type: ignore[no-untyped-def]
    app = LeanWSGI(WSGIHandler())
    path = "/api/v1/pip/tenants/acme/subjects/alice"
    for _ in range(2):  # the key is held, the slug memoised, the entry cached
        through_wsgi(app, "GET", path, **bearer(raw_keys["pip"]))
    with_redis.delete(*with_redis.keys("*pip:e3:*"))  # the entry is gone: the next lookup is a miss
    with cost() as miss:
        status = through_wsgi(app, "GET", path, **bearer(raw_keys["pip"]))[0]
    assert status == 200 and len(doors) == 3
    # The lane's round trip, then the entry stored: the door read nothing again and counted nothing twice.
    assert (miss.commands["mget"], miss.commands["incr"], miss.commands["expire"]) == (1, 1, 1)
    assert miss.round_trips == 2 and len(miss.queries) == 1
    with cost() as hit:
        assert through_wsgi(app, "GET", path, **bearer(raw_keys["pip"]))[0] == 200
    assert (hit.round_trips, dict(hit.commands), hit.queries, len(doors)) == (
        1,
        {"mget": 1, "incr": 1, "expire": 1},
        [],
        3,
    )


def test_a_key_revoked_by_another_process_is_refused_on_the_next_request(  # type: ignore[no-untyped-def]
    acme, with_redis, doors, django_capture_on_commit_callbacks
) -> None:
    key, raw = api_key_create(name="soon-revoked", scopes=["pip:read"], tenants=[acme])
    app = LeanWSGI(WSGIHandler())
    path = "/api/v1/pip/tenants/acme/subjects/alice"
    assert [through_wsgi(app, "GET", path, **bearer(raw))[0] for _ in range(3)] == [200, 200, 200]
    assert len(doors) == 2  # the third one: the lane
    with django_capture_on_commit_callbacks(execute=True):
        api_key_revoke(key=key)
    # This process still holds the key as it was: only the shared generation tells it.
    key.revoked_at = None
    keys._LOCAL[keys.hash_key(raw)] = (key, keys._principal(key), "a generation before", time.monotonic() + 60)
    status, headers, _ = through_wsgi(app, "GET", path, **bearer(raw))
    assert (status, headers["WWW-Authenticate"]) == (401, 'Bearer realm="iam-service"')
    assert keys.held(raw) is None


def test_the_throttle_counts_each_lane_request_once_and_the_door_answers_the_429(  # type: ignore[no-untyped-def]
    acme, raw_keys, with_redis, doors
) -> None:
    from access.throttling import PrincipalRateThrottle

    app = LeanWSGI(WSGIHandler())
    path = "/api/v1/pip/tenants/acme/subjects/alice"
    rates = {**PrincipalRateThrottle.THROTTLE_RATES, "pip": "3/h"}
    PrincipalRateThrottle.THROTTLE_RATES, saved = rates, PrincipalRateThrottle.THROTTLE_RATES
    try:
        answers = [through_wsgi(app, "GET", path, **bearer(raw_keys["pip"])) for _ in range(5)]
    finally:
        PrincipalRateThrottle.THROTTLE_RATES = saved
    assert [answer[0] for answer in answers] == [200, 200, 200, 429, 429]
    # Two misses (the slug learnt, then the entry stored), the lane's hit, then two 429s from the door.
    assert len(doors) == 4
    refused = answers[-1][1]
    assert 0 < int(refused["Retry-After"]) <= 3600 and refused["Content-Type"] == "application/problem+json"
    counters = [name for name in with_redis.keys("*throttle:pip:*")]
    assert [int(with_redis.get(name)) for name in counters] == [5]


@pytest.mark.parametrize(
    ("overrides", "environ", "status"),
    [
        ({"ALLOWED_HOSTS": ["testserver"]}, {"HTTP_HOST": "evil.example"}, 400),  # a Host outside ALLOWED_HOSTS
        ({"SECURE_SSL_REDIRECT": True}, {}, 301),
        ({"SECURE_SSL_REDIRECT": True, "SECURE_HSTS_SECONDS": 60}, {"wsgi.url_scheme": "https"}, 200),
    ],
)
def test_host_and_scheme_end_as_they_do_without_the_lane(  # type: ignore[no-untyped-def]
    acme, raw_keys, with_redis, settings, overrides, environ, status
) -> None:
    for name, value in overrides.items():
        setattr(settings, name, value)
    app = LeanWSGI(WSGIHandler())
    path = "/api/v1/pip/tenants/acme/subjects/alice"
    headers = {**bearer(raw_keys["pip"]), **environ}
    for _ in range(2):  # the cache warmed over HTTPS, from an allowed Host
        through_wsgi(app, "GET", path, **{**headers, "HTTP_HOST": "testserver", "wsgi.url_scheme": "https"})
    answered = through_wsgi(app, "GET", path, **headers)
    assert answered[0] == status
    same(answered, through_client("GET", path, **headers))
    if status == 200:
        assert answered[1]["Strict-Transport-Security"] == "max-age=60"


def test_a_lane_answer_is_counted_and_logged_like_the_doors(acme, raw_keys, with_redis, doors, caplog) -> None:  # type: ignore[no-untyped-def]
    app = LeanWSGI(WSGIHandler())
    path = "/api/v1/pip/tenants/acme/subjects/alice"
    for _ in range(2):
        through_wsgi(app, "GET", path, **bearer(raw_keys["pip"]))
    labels = {"method": "GET", "route": SUBJECT_ROUTE, "status": "200"}
    before = REGISTRY.get_sample_value("http_requests_total", labels) or 0
    with caplog.at_level(logging.INFO, logger="iam.request"):
        status, headers, _ = through_wsgi(app, "GET", path, HTTP_X_REQUEST_ID="trace-1", **bearer(raw_keys["pip"]))
    assert (status, len(doors), headers["X-Request-ID"]) == (200, 2, "trace-1")
    assert REGISTRY.get_sample_value("http_requests_total", labels) == before + 1
    lines: list[Any] = [record for record in caplog.records if record.name == "iam.request"]
    assert [(r.route, r.status, r.tenant, r.principal, r.request_id) for r in lines] == [  # type: ignore[attr-defined]
        (SUBJECT_ROUTE, 200, "acme", "key:pip", "trace-1")
    ]


def test_hostile_hosts_and_request_ids_cost_a_bounded_memo_and_end_as_without_the_lane(  # type: ignore[no-untyped-def]
    acme, raw_keys, with_redis, doors, settings
) -> None:
    from api import express

    settings.ALLOWED_HOSTS = ["testserver", ".example.org"]
    app = LeanWSGI(WSGIHandler())
    path = "/api/v1/pip/tenants/acme/subjects/alice"
    for _ in range(2):
        through_wsgi(app, "GET", path, **bearer(raw_keys["pip"]))
    monkey_size, express.SITES_SIZE = express.SITES_SIZE, 50
    try:
        # Many distinct allowed Hosts (and some refused ones): the memo never outgrows its bound.
        for index in range(120):
            host = f"h{index}.example.org" if index % 3 else f"h{index}.evil"
            status = through_wsgi(app, "GET", path, HTTP_HOST=host, **bearer(raw_keys["pip"]))[0]
            assert status == (200 if index % 3 else 400)
            assert len(express._SITES) <= 50
    finally:
        express.SITES_SIZE = monkey_size
    before = len(doors)
    long_id = "x" * 10_000
    status, headers, _ = through_wsgi(app, "GET", path, HTTP_X_REQUEST_ID=long_id, **bearer(raw_keys["pip"]))
    assert (status, headers["X-Request-ID"], len(doors)) == (200, long_id[:64], before)
    # A key of 10,000 characters is not held: the full stack refuses it, as without the lane.
    status, headers, _ = through_wsgi(app, "GET", path, **bearer("iam_" + "k" * 10_000))
    assert (status, headers["WWW-Authenticate"]) == (401, 'Bearer realm="iam-service"')


@pytest.mark.django_db(transaction=True)
def test_pii_read_counts_are_written_on_a_connection_past_its_age(acme, raw_keys) -> None:  # type: ignore[no-untyped-def]
    """The flush runs from the lane too, outside Django's request cycle: a connection past
    ``CONN_MAX_AGE`` is replaced first, as the cycle would have done."""
    from django.db import connection

    from access.models import PiiReadCount
    from access.pii_audit import _PENDING, _STATE, pii_read_count, pii_reads_flush

    _PENDING.clear()
    _STATE["flushed"] = time.monotonic()  # not due yet: the count waits for the flush below
    connection.ensure_connection()
    before = connection.connection
    connection.close_at = time.monotonic() - 1  # type: ignore[attr-defined]  # set by Django from CONN_MAX_AGE
    pii_read_count(key_id=str(keys.principal_for_key(raw_keys["pip"])[1].id))  # type: ignore[index]
    assert pii_reads_flush() == 1
    assert connection.connection is not before
    assert list(PiiReadCount.objects.values_list("count", flat=True)) == [1]


def test_a_failing_lane_is_logged_and_the_door_answers(acme, raw_keys, with_redis, doors, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    app = LeanWSGI(WSGIHandler())
    path = "/api/v1/pip/tenants/acme/subjects/alice"
    for _ in range(2):
        through_wsgi(app, "GET", path, **bearer(raw_keys["pip"]))
    expected = through_client("GET", path, **bearer(raw_keys["pip"]))

    def broken(*args: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(app.express[0], "answer", broken)
    before = len(doors)
    with caplog.at_level(logging.ERROR, logger="api.lean_wsgi"):
        answered = through_wsgi(app, "GET", path, **bearer(raw_keys["pip"]))
    same(answered, expected)
    assert len(doors) == before + 1
    assert [r.getMessage() for r in caplog.records if r.name == "api.lean_wsgi"] == [
        "the express lane failed; the door answers"
    ]


# Without a shared cache: the lane reads the subject from the database ----------------------------------


@pytest.mark.parametrize(
    ("method", "path", "key", "revalidate", "express"),
    [
        ("GET", "/api/v1/pip/tenants/acme/subjects/alice", "pip", False, True),
        ("GET", "/api/v1/pip/tenants/acme/subjects/bob/ops", "pip", False, True),
        ("HEAD", "/api/v1/pip/tenants/acme/subjects/alice", "pip", False, True),
        ("GET", "/api/v1/pip/tenants/acme/subjects/alice", "narrow", False, True),  # a release policy
        ("GET", "/api/v1/pip/tenants/{id}/subjects/alice", "pip", False, True),
        ("GET", "/api/v1/pip/tenants/acme/subjects/alice", "pip", True, True),  # 304
        ("GET", "/api/v1/pip/tenants/acme/subjects/alice?format=authzen", "pip", False, False),
        ("GET", "/api/v1/pip/tenants/acme/subjects/nobody", "pip", False, False),  # a 404: the door's
        ("GET", "/api/v1/pip/tenants/{other}/subjects/alice", "pip", False, False),  # a tenant the key lacks
    ],
)
def test_without_a_shared_cache_the_lane_reads_the_subject_and_answers_as_the_full_cycle(  # type: ignore[no-untyped-def]
    acme, raw_keys, doors, cost, method, path, key, revalidate, express
) -> None:
    from tenants.services import tenant_create

    other = tenant_create(slug="other-co", name="Other")
    path = path.replace("{id}", str(acme.id)).replace("{other}", str(other.id))
    headers = bearer(raw_keys[key])
    app = LeanWSGI(WSGIHandler())
    first = through_wsgi(app, "GET", path, **headers)  # the door reads the key and records its use
    if revalidate:
        headers["HTTP_IF_NONE_MATCH"] = first[1]["ETag"]
    before = len(doors)
    with cost() as c:
        answered = through_wsgi(app, method, path, **headers)
    assert len(doors) - before == (0 if express else 1)
    if express:  # one statement: the subject, with the held key's generation carried in front
        assert len(c.queries) == 1 and c.queries[0].startswith(f"SELECT c.*, q.* FROM ({keys.GENERATION_SQL})")
    expected = through_client(method, path, **headers)
    same(answered, expected)


def test_without_a_shared_cache_the_throttle_counts_each_request_once(acme, raw_keys, doors) -> None:  # type: ignore[no-untyped-def]
    from access.throttling import PrincipalRateThrottle

    app = LeanWSGI(WSGIHandler())
    paths = ["/api/v1/pip/tenants/acme/subjects/alice", "/api/v1/pip/tenants/acme/subjects/nobody"]
    rates = {**PrincipalRateThrottle.THROTTLE_RATES, "pip": "4/h"}
    PrincipalRateThrottle.THROTTLE_RATES, saved = rates, PrincipalRateThrottle.THROTTLE_RATES
    try:
        statuses = [through_wsgi(app, "GET", paths[i % 2], **bearer(raw_keys["pip"]))[0] for i in range(6)]
    finally:
        PrincipalRateThrottle.THROTTLE_RATES = saved
    # The lane's 200s and the 404s it leaves to the door (counted by the lane, not again): 4, then 429s.
    assert statuses == [200, 404, 200, 404, 429, 429]
    assert len(doors) == 5  # the first request (the key read), the two 404s, the two 429s


def test_without_a_shared_cache_a_key_revoked_by_another_process_is_refused_on_the_next_request(  # type: ignore[no-untyped-def]
    acme, doors
) -> None:
    from django.db import connection

    key, raw = api_key_create(name="soon-revoked", scopes=["pip:read"], tenants=[acme])
    app = LeanWSGI(WSGIHandler())
    path = "/api/v1/pip/tenants/acme/subjects/alice"
    assert [through_wsgi(app, "GET", path, **bearer(raw))[0] for _ in range(3)] == [200, 200, 200]
    assert len(doors) == 1  # then the lane
    with connection.cursor() as cursor:  # what api_key_revoke commits in another process
        cursor.execute("UPDATE access_apikey SET revoked_at = now() WHERE id = %s", [key.pk])
        cursor.execute("SELECT nextval('access_apikey_generation')")
    assert keys.held(raw) is not None  # this process still holds it: only the generation tells it
    status, headers, _ = through_wsgi(app, "GET", path, **bearer(raw))
    assert (status, headers["WWW-Authenticate"]) == (401, 'Bearer realm="iam-service"')
    assert keys.held(raw) is None


def test_without_a_shared_cache_a_failing_read_is_answered_by_the_door(acme, raw_keys, doors, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from django.db import OperationalError

    from api.resolver import lean as resolver_lean

    app = LeanWSGI(WSGIHandler())
    path = "/api/v1/pip/tenants/acme/subjects/alice"
    expected = through_wsgi(app, "GET", path, **bearer(raw_keys["pip"]))

    def lost(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(resolver_lean, "subject_resolve", lost)
    before = len(doors)
    same(through_wsgi(app, "GET", path, **bearer(raw_keys["pip"])), expected)
    assert len(doors) == before + 1
