"""The near cache (``core/near_cache.py``, issue 13): cached lookups answered from a worker's memory.

Against the module's real ``redis-server`` through the production cache backend, with the worker's
listener thread subscribed for real. What is checked: a remembered lookup costs no round trip and no
query and answers what the full cycle answers; every change — a subject's, a tenant's, a key's
revocation — is seen by the very next request because the write returns only after the listener
acknowledged it; a writer waits for a lease that does not acknowledge until it ends, and no longer;
a lost subscription stops the answers from memory and starts empty when it is back; the throttle's
budget taken in chunks never lets more requests through than the limit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest
from django.core.cache import caches
from django.core.handlers.wsgi import WSGIHandler

from access import keys
from access.keys import api_key_create, api_key_revoke
from api.lean_wsgi import LeanWSGI
from core import near_cache
from tests.test_express_lane import bearer, same
from tests.test_lean_wsgi import through_client, through_wsgi
from users import services
from users.models import User

pytestmark = pytest.mark.django_db
PATH = "/api/v1/pip/tenants/acme/subjects/alice"


def until(condition: Callable[[], object], what: str, seconds: float = 30.0) -> None:
    """Wait for the listener thread (a deadline for a hung thread, not a speed bound)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"still not: {what}"
        time.sleep(0.01)


@pytest.fixture
def near(pip_tenant, with_redis, settings) -> Iterator[near_cache.Near]:  # type: ignore[no-untyped-def]
    settings.PIP_NEAR_CACHE = True
    near_cache.serving(caches["default"])  # starts the listener
    until(lambda: near_cache.NEAR.serving(), "a lease")
    yield near_cache.NEAR
    near_cache.stop()


@pytest.fixture
def raw(pip_tenant) -> str:  # type: ignore[no-untyped-def]
    return api_key_create(name="pip", scopes=["pip:read", "pii:read"], tenants=[pip_tenant])[1]


@pytest.fixture
def app() -> LeanWSGI:
    return LeanWSGI(WSGIHandler())


def warm(app: LeanWSGI, raw: str, path: str = PATH) -> None:
    """The door learns the key and the slug, the entry is stored, then the lane remembers it."""
    for _ in range(3):
        assert through_wsgi(app, "GET", path, **bearer(raw))[0] == 200


@pytest.mark.parametrize(("method", "revalidate"), [("GET", False), ("HEAD", False), ("GET", True)])
def test_a_remembered_lookup_costs_no_round_trip_and_answers_as_the_full_cycle(  # type: ignore[no-untyped-def]
    near, raw, app, cost, method, revalidate
) -> None:
    warm(app, raw)
    headers = bearer(raw)
    if revalidate:
        headers["HTTP_IF_NONE_MATCH"] = through_wsgi(app, "GET", PATH, **headers)[1]["ETag"]
    with cost() as hit:
        answered = through_wsgi(app, method, PATH, **headers)
    assert (hit.round_trips, dict(hit.commands), hit.queries) == (0, {}, [])
    assert answered[0] == (304 if revalidate else 200)
    same(answered, through_client(method, PATH, **headers))


def test_a_subject_changed_is_answered_fresh_on_the_next_request(  # type: ignore[no-untyped-def]
    near, raw, app, django_capture_on_commit_callbacks
) -> None:
    warm(app, raw)
    assert json.loads(through_wsgi(app, "GET", PATH, **bearer(raw))[2])["attributes"]["n"] == 1
    alice = User.objects.get(external_id="alice")
    with django_capture_on_commit_callbacks(execute=True):
        services.user_update(user=alice, attributes={"n": 7})
    # The write returned only once this worker's listener had dropped the entry: no sleep here.
    status, _, body = through_wsgi(app, "GET", PATH, **bearer(raw))
    assert status == 200 and json.loads(body)["attributes"]["n"] == 7


def test_a_tenant_changed_is_answered_fresh_on_the_next_request(  # type: ignore[no-untyped-def]
    near, raw, app, pip_tenant, django_capture_on_commit_callbacks
) -> None:
    from tenants import services as tenant_services

    warm(app, raw)
    remembered = len(near.values)
    assert remembered >= 2  # the generation and the entry
    with django_capture_on_commit_callbacks(execute=True):
        tenant_services.tenant_update(tenant=pip_tenant, name="Acme Renamed")
    assert len(near.values) < remembered  # the tenant's entries dropped before the write returned
    assert through_wsgi(app, "GET", PATH, **bearer(raw))[0] == 200


def test_a_revoked_key_is_refused_on_the_next_request(  # type: ignore[no-untyped-def]
    near, pip_tenant, app, django_capture_on_commit_callbacks
) -> None:
    key, raw = api_key_create(name="soon-revoked", scopes=["pip:read"], tenants=[pip_tenant])
    warm(app, raw)
    held = keys._LOCAL[keys.hash_key(raw)]
    with django_capture_on_commit_callbacks(execute=True):
        api_key_revoke(key=key)
    # As a process other than the revoking one: it still holds the key as it was, under the generation
    # its near cache remembered; only the listener's invalidation tells it.
    keys._LOCAL[keys.hash_key(raw)] = held
    status, headers, _ = through_wsgi(app, "GET", PATH, **bearer(raw))
    assert (status, headers["WWW-Authenticate"]) == (401, 'Bearer realm="iam-service"')


def test_a_value_read_before_a_change_is_not_remembered_after_it(near) -> None:  # type: ignore[no-untyped-def]
    mark = near.mark()
    near.invalidate(["pip:sg:t:x"])  # the change's invalidation arrives between the read and the store
    near.remember(("k",), "stale", ["pip:sg:t:x"], mark)
    assert near.recall(("k",)) is None
    near.remember(("k",), "fresh", ["pip:sg:t:x"], near.mark())
    assert near.recall(("k",)) == "fresh"
    near.invalidate(["pip:tg:other"])
    assert near.recall(("k",)) == "fresh"
    near.invalidate(["pip:sg:t:x"])
    assert near.recall(("k",)) is None


def test_the_values_held_are_bounded_oldest_first_with_their_dependencies(near) -> None:  # type: ignore[no-untyped-def]
    near.size = 3
    for n in range(5):
        near.remember((n,), n, ["pip:tg:t", f"pip:sg:t:{n}"], near.mark())
    assert [near.recall((n,)) for n in range(5)] == [None, None, 2, 3, 4]
    assert set(near.dependents) == {"pip:tg:t", "pip:sg:t:2", "pip:sg:t:3", "pip:sg:t:4"}
    near.invalidate(["pip:sg:t:3"])
    assert list(near.dependents["pip:tg:t"]) == [(2,), (4,)]
    near.invalidate(["pip:tg:t"])
    assert (near.values, near.dependents) == ({}, {})


def test_a_writer_waits_for_a_silent_lease_until_it_ends_and_no_longer(with_redis) -> None:  # type: ignore[no-untyped-def]
    backend = caches["default"]
    leases = backend.make_key(near_cache.LEASES)
    seconds, micros = with_redis.time()
    ends = seconds * 1000 + micros // 1000 + 1500  # a worker that renewed and then went quiet
    with_redis.zadd(leases, {"silent-worker": ends})
    near_cache.publish(backend, ["pip:tg:some-tenant"])
    seconds, micros = with_redis.time()
    assert seconds * 1000 + micros // 1000 >= ends  # it waited for the lease's end (Redis's clock)
    assert with_redis.zscore(leases, "silent-worker") is None  # and forgot it: the next write does not wait
    before = with_redis.time()
    near_cache.publish(backend, ["pip:tg:some-tenant"])
    assert with_redis.zcard(leases) == 0 and with_redis.time()[0] - before[0] <= 1


def test_a_lost_subscription_stops_answers_from_memory_and_starts_empty(near, raw, app, with_redis, cost) -> None:  # type: ignore[no-untyped-def]
    warm(app, raw)
    assert near.values
    with_redis.client_kill_filter(_type="pubsub")
    until(lambda: not near.serving(), "the lease dropped")
    with cost() as meanwhile:
        assert through_wsgi(app, "GET", PATH, **bearer(raw))[0] == 200
    assert meanwhile.round_trips == 1  # the lane's round trip, as without a near cache
    until(lambda: near.serving(), "a new lease")
    assert not near.values or all(key != (PATH,) for key in near.values)
    warm(app, raw)
    with cost() as again:
        assert through_wsgi(app, "GET", PATH, **bearer(raw))[0] == 200
    assert again.round_trips == 0


@pytest.mark.parametrize("subjects", [["alice"], ["alice", "bob/ops"], ["alice", "bob/ops", "nobody"]])
def test_the_throttle_budget_lets_exactly_the_limit_through(near, raw, app, with_redis, subjects) -> None:  # type: ignore[no-untyped-def]
    """Remembered answers spend the budget, misses and 404s (the door's) spend it too: 100 in all."""
    from access.throttling import PrincipalRateThrottle

    rates = {**PrincipalRateThrottle.THROTTLE_RATES, "pip": "100/d"}  # a chunk of 2 per round trip
    PrincipalRateThrottle.THROTTLE_RATES, saved = rates, PrincipalRateThrottle.THROTTLE_RATES
    paths = [f"/api/v1/pip/tenants/acme/subjects/{subjects[n % len(subjects)]}" for n in range(130)]
    try:
        statuses = [through_wsgi(app, "GET", path, **bearer(raw))[0] for path in paths]
    finally:
        PrincipalRateThrottle.THROTTLE_RATES = saved
    assert [status != 429 for status in statuses] == [True] * 100 + [False] * 30
    assert set(statuses[:100]) <= {200, 404}


ANOTHER_WORKER = """
import sys, time
import django
from django.conf import settings
settings.configure(CACHES={"default": {"BACKEND": "core.redis_cache.RedisCache", "LOCATION": sys.argv[1]}},
                   PIP_NEAR_CACHE_ENTRIES=10, PIP_CACHE_SECONDS=300)
django.setup()
from django.core.cache import caches
from core import near_cache
near_cache.serving(caches["default"])
while not near_cache.NEAR.serving():
    time.sleep(0.01)
near_cache.NEAR.remember(("entry",), "held", ["pip:sg:t:other-process"], near_cache.NEAR.mark())
print("holding", near_cache._LISTENER.id, flush=True)
# A busy worker: its request thread keeps the interpreter, the listener gets a turn every 0.2 s, so
# its acknowledgement comes late and only a writer that waits for it sees it.
sys.setswitchinterval(0.2)
while near_cache.NEAR.recall(("entry",)) is not None:
    pass
print("dropped", near_cache._LISTENER.applied, flush=True)
time.sleep(30)  # still holding its lease: the test stops it
"""


def test_a_write_returns_only_after_another_process_dropped_what_it_held(with_redis, redis_url) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    worker = subprocess.Popen(
        [sys.executable, "-c", ANOTHER_WORKER, redis_url], stdout=subprocess.PIPE, text=True, cwd=settings_root()
    )
    try:
        assert worker.stdout is not None
        holding, worker_id = worker.stdout.readline().split()
        assert holding == "holding"
        near_cache.publish(caches["default"], ["pip:tg:unrelated"])  # acknowledged, nothing dropped
        near_cache.publish(caches["default"], ["pip:sg:t:other-process"])
        # Returned: the other process had acknowledged this change, so it had dropped the value.
        acked = int(with_redis.hget(caches["default"].make_key(near_cache.ACKS), worker_id))
        number = int(with_redis.get(caches["default"].make_key(near_cache.SEQUENCE)))
        assert acked == number
        dropped, applied = worker.stdout.readline().split()
        assert (dropped, int(applied)) == ("dropped", number)
    finally:
        worker.kill()
        worker.wait(timeout=10)


def settings_root() -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parent.parent)


def test_an_unreachable_redis_leaves_the_lane_its_round_trip_and_logs_once(settings, caplog) -> None:  # type: ignore[no-untyped-def]
    import logging

    from devtools.embedded import free_port

    settings.CACHES = {
        "default": {"BACKEND": "core.redis_cache.RedisCache", "LOCATION": f"redis://127.0.0.1:{free_port()}"}
    }
    backend = caches["default"]
    try:
        with caplog.at_level(logging.WARNING, logger="core.near_cache"):
            assert near_cache.serving(backend) is None  # starts the listener
            until(lambda: near_cache._LISTENER is not None and near_cache._LISTENER.pause_count >= 4, "four attempts")
            assert near_cache.serving(backend) is None
        lost = [record for record in caplog.records if record.getMessage() == "near cache subscription lost"]
        assert len(lost) == 1 and "Connection refused" in lost[0].error  # type: ignore[attr-defined]
    finally:
        near_cache.stop()


def batch_client(raw: str):  # type: ignore[no-untyped-def]
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


BATCH = {"subjects": [{"tenant": "acme", "external_id": "alice"}, {"tenant": "acme", "external_id": "bob/ops"}]}


def test_a_batch_costs_no_round_trip_and_a_revocation_still_ends_it(  # type: ignore[no-untyped-def]
    near, pip_tenant, cost, django_capture_on_commit_callbacks
) -> None:
    """The door's routes that read nothing besides the generation and the counter (the batch) take
    both from the near cache: one query, no round trip; a revocation elsewhere ends the key at once."""
    key, raw = api_key_create(name="batch", scopes=["pip:read"], tenants=[pip_tenant])
    client = batch_client(raw)
    for _ in range(3):  # the key held, then the generation and a budget remembered
        assert client.post("/api/v1/pip/resolve", BATCH, format="json").status_code == 200
    with cost() as c:
        response = client.post("/api/v1/pip/resolve", BATCH, format="json")
    assert response.status_code == 200 and all(r["found"] for r in response.json()["results"])
    assert (c.round_trips, dict(c.commands), len(c.queries)) == (0, {}, 1)
    held = keys._LOCAL[keys.hash_key(raw)]
    with django_capture_on_commit_callbacks(execute=True):
        api_key_revoke(key=key)
    keys._LOCAL[keys.hash_key(raw)] = held  # as a process other than the revoking one
    assert client.post("/api/v1/pip/resolve", BATCH, format="json").status_code == 401


def test_the_batch_throttle_lets_exactly_the_limit_through(near, raw) -> None:  # type: ignore[no-untyped-def]
    from access.throttling import PrincipalRateThrottle

    client = batch_client(raw)
    rates = {**PrincipalRateThrottle.THROTTLE_RATES, "pip": "100/d"}
    PrincipalRateThrottle.THROTTLE_RATES, saved = rates, PrincipalRateThrottle.THROTTLE_RATES
    try:
        statuses = [client.post("/api/v1/pip/resolve", BATCH, format="json").status_code for _ in range(130)]
    finally:
        PrincipalRateThrottle.THROTTLE_RATES = saved
    assert statuses == [200] * 100 + [429] * 30
