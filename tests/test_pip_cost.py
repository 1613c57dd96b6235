"""What one PIP request costs, pinned: Redis round trips and commands, SQL queries, per scenario.

Against a real ``redis-server`` (started on a free port for this module) through the production
cache backend, so that the cost of the hot path cannot creep back unnoticed (issue 13). Round trips
are counted at redis-py's socket writes (a pipeline is one), commands by the server
(``INFO commandstats``), queries by Django (``CaptureQueriesContext``).
"""

from __future__ import annotations

import time

import pytest
from django.db import connection
from rest_framework.test import APIClient

from access import keys
from access.keys import api_key_create, api_key_revoke
from tests.factories import DefinitionFactory, TenantFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme():  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme", name="Acme")
    DefinitionFactory(tenant=tenant, key="n", type="integer")
    for i in range(50):
        UserFactory(tenant=tenant, external_id=f"u{i}", attributes={"n": i})
    return tenant


@pytest.fixture
def client(acme):  # type: ignore[no-untyped-def]
    _, raw = api_key_create(name="opa", scopes=["pip:read"], tenants=[acme])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


ONE_ROUND_TRIP = {"mget": 1, "incr": 1, "expire": 1}  # generation + tokens + entry, throttle counter


@pytest.mark.parametrize("by", ["slug", "id"])
def test_cached_lookup_is_one_round_trip_and_no_query(client, acme, with_redis, cost, by) -> None:  # type: ignore[no-untyped-def]
    path = f"/api/v1/pip/tenants/{acme.slug if by == 'slug' else acme.id}/subjects/u1"
    first = client.get(path)  # the key read once, the slug memoised, the entry stored
    assert client.get(path).status_code == 200
    with cost() as c:
        response = client.get(path)
    assert response.status_code == 200 and response.content == first.content
    assert (c.round_trips, dict(c.commands), c.queries) == (1, ONE_ROUND_TRIP, [])
    assert c.server_reads == 1
    with cost() as c:
        assert client.get(path, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 304
    assert (c.round_trips, dict(c.commands), c.queries) == (1, ONE_ROUND_TRIP, [])


def test_cache_miss_is_one_query_and_two_round_trips(client, acme, with_redis, cost) -> None:  # type: ignore[no-untyped-def]
    client.get("/api/v1/pip/tenants/acme/subjects/u1")
    client.get("/api/v1/pip/tenants/acme/subjects/u2")  # tokens of the tenant exist
    with_redis.delete(*with_redis.keys("*pip:e3:*"))
    with cost() as c:
        assert client.get("/api/v1/pip/tenants/acme/subjects/u2").status_code == 200
    assert (c.round_trips, dict(c.commands), len(c.queries)) == (2, {**ONE_ROUND_TRIP, "set": 1}, 1)


def test_batch_of_50_is_one_round_trip_and_one_query(client, acme, with_redis, cost) -> None:  # type: ignore[no-untyped-def]
    body = {"subjects": [{"tenant": "acme", "external_id": f"u{i}"} for i in range(50)]}
    client.post("/api/v1/pip/resolve", body, format="json")
    with cost() as c:
        response = client.post("/api/v1/pip/resolve", body, format="json")
    assert response.status_code == 200 and all(r["found"] for r in response.json()["results"])
    assert (c.round_trips, dict(c.commands), len(c.queries)) == (1, ONE_ROUND_TRIP, 1)


def test_without_a_shared_cache_a_lookup_is_one_query_and_a_batch_one(client, acme, cost, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The held key's generation (a PostgreSQL sequence) is carried in the subject's own statement:
    one statement, no pipeline (which cost as much client CPU as the lookup), for a lookup, a batch
    and a lookup that finds nobody."""
    import psycopg

    client.get("/api/v1/pip/tenants/acme/subjects/u1")  # last_used_at is written once a minute, not here
    checked = []
    original = keys.db_generation
    monkeypatch.setattr(keys, "db_generation", lambda row: checked.append(row) or original(row))
    pipelines = []
    entered = psycopg.Connection.pipeline
    monkeypatch.setattr(psycopg.Connection, "pipeline", lambda self: pipelines.append(1) or entered(self))
    carried = f"SELECT c.*, q.* FROM ({keys.GENERATION_SQL}) c LEFT JOIN LATERAL ("
    body = {"subjects": [{"tenant": "acme", "external_id": f"u{i}"} for i in range(50)]}
    requests = [
        lambda: client.get("/api/v1/pip/tenants/acme/subjects/u1"),
        lambda: client.post("/api/v1/pip/resolve", body, format="json"),
        lambda: client.get("/api/v1/pip/tenants/acme/subjects/nobody"),
    ]
    for request, status in zip(requests, (200, 200, 404), strict=True):
        checked.clear()
        with cost() as c:
            assert request().status_code == status
        assert (c.round_trips, len(c.queries)) == (0, 1), c.queries  # the generation and the subject(s)
        assert c.queries[0].startswith(carried) and "JOIN users_user u ON" in c.queries[0], c.queries
        assert len(checked) == 1 and checked[0] is not None and len(checked[0]) == 2  # the generation, read with them
    assert pipelines == []
    assert client.post("/api/v1/pip/resolve", body, format="json").json()["results"][0]["found"] is True


def test_without_a_shared_cache_an_api_request_reads_its_key_and_the_generation_in_one_statement(  # type: ignore[no-untyped-def]
    acme, cost, monkeypatch
) -> None:
    """The full stack (DRF) reads the request's key on every request without a shared cache: the
    revocation generation is carried in the key's statement, with no pipeline."""
    import psycopg

    _, raw = api_key_create(name="reader", scopes=["directory:read"], tenants=[acme])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    pipelines = []
    entered = psycopg.Connection.pipeline
    monkeypatch.setattr(psycopg.Connection, "pipeline", lambda self: pipelines.append(1) or entered(self))
    with cost() as c:
        assert api.get("/api/v1/tenants/acme/").status_code == 200
    carried = f"SELECT c.*, q.* FROM ({keys.GENERATION_SQL}) c LEFT JOIN LATERAL ("
    key_reads = [q for q in c.queries if "FROM access_apikey WHERE key_hash" in q]
    assert len(key_reads) == 1 and key_reads[0].startswith(carried), c.queries
    assert pipelines == []
    api.credentials(HTTP_AUTHORIZATION="Bearer iam_00000000_nonsense")
    assert api.get("/api/v1/tenants/acme/").status_code == 401  # no key found: still one statement, refused


def test_without_a_shared_cache_a_held_key_is_refused_after_another_process_revokes_it(client, acme) -> None:  # type: ignore[no-untyped-def]
    key, raw = api_key_create(name="soon-revoked", scopes=["pip:read"], tenants=[acme])
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert other.get("/api/v1/pip/tenants/acme/subjects/u1").status_code == 200
    assert keys.held(raw) is not None
    with connection.cursor() as cursor:  # what api_key_revoke commits in another process
        cursor.execute("UPDATE access_apikey SET revoked_at = now() WHERE id = %s", [key.pk])
        cursor.execute("SELECT nextval('access_apikey_generation')")
    assert keys.held(raw) is not None  # this process still holds it: only the generation tells it
    response = other.get("/api/v1/pip/tenants/acme/subjects/u1")
    assert response.status_code == 401 and response["WWW-Authenticate"] == 'Bearer realm="iam-service"'
    assert keys.held(raw) is None
    assert client.get("/api/v1/pip/tenants/acme/subjects/u1").status_code == 200  # other keys: read again


@pytest.mark.django_db(transaction=True)  # the connection is killed: nothing may live in its transaction
def test_the_lean_door_pings_no_connection_and_serves_again_on_a_broken_one(client, acme, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """No ``SELECT 1`` health check per lookup; a connection that died (a PostgreSQL restart) is
    found on use, closed, and the lookup answered on a new one."""
    from django.db import close_old_connections, connections

    wrapper = connections["default"]
    pings = []
    monkeypatch.setattr(type(wrapper), "is_usable", lambda self: pings.append(1) or True)
    assert client.get("/api/v1/pip/tenants/acme/subjects/u1").status_code == 200
    assert wrapper.health_check_enabled
    close_old_connections()  # what request_started does: the next request would health-check
    assert client.get("/api/v1/pip/tenants/acme/subjects/u1").status_code == 200
    assert pings == []
    close_old_connections()
    assert client.get(f"/api/v1/tenants/{acme.slug}/").status_code in (200, 403)  # the full stack does ping
    assert pings == [1]
    backend = wrapper.connection.info.backend_pid
    with psycopg_connection() as killer:
        killer.execute("SELECT pg_terminate_backend(%s)", [backend])
    close_old_connections()
    response = client.get("/api/v1/pip/tenants/acme/subjects/u2")
    assert response.status_code == 200 and response.json()["external_id"] == "u2"
    assert wrapper.connection.info.backend_pid != backend


def psycopg_connection():  # type: ignore[no-untyped-def]
    import psycopg

    params = connection.get_connection_params()
    return psycopg.connect(**{k: v for k, v in params.items() if k not in ("cursor_factory", "context")})


def test_a_held_key_is_refused_on_the_next_request_after_revocation(
    acme, with_redis, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    key, raw = api_key_create(name="soon-revoked", scopes=["pip:read"], tenants=[acme])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/v1/pip/tenants/acme/subjects/u1").status_code == 200
    assert keys.held(raw) is not None
    with django_capture_on_commit_callbacks(execute=True):
        api_key_revoke(key=key)
    # Another process still holds the key: only the shared generation tells it.
    from access.keys import _LOCAL, _principal, hash_key

    key.revoked_at = None
    _LOCAL[hash_key(raw)] = (key, _principal(key), "a generation from before the revocation", time.monotonic() + 60)
    response = client.get("/api/v1/pip/tenants/acme/subjects/u1")
    assert response.status_code == 401 and response["WWW-Authenticate"] == 'Bearer realm="iam-service"'


def test_the_pip_throttle_counts_one_per_request_in_a_fixed_window(client, acme, with_redis, settings) -> None:  # type: ignore[no-untyped-def]
    from access.throttling import PrincipalRateThrottle

    rates = {**PrincipalRateThrottle.THROTTLE_RATES, "pip": "3/h"}
    PrincipalRateThrottle.THROTTLE_RATES, saved = rates, PrincipalRateThrottle.THROTTLE_RATES
    try:
        statuses = [client.get("/api/v1/pip/tenants/acme/subjects/u1").status_code for _ in range(4)]
        refused = client.get("/api/v1/pip/tenants/acme/subjects/u1")
    finally:
        PrincipalRateThrottle.THROTTLE_RATES = saved
    assert statuses == [200, 200, 200, 429]
    assert 0 < int(refused["Retry-After"]) <= 3600 and refused["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize("pii_read", [False, True])
def test_a_key_with_a_release_policy_pays_the_same_one_round_trip(acme, with_redis, cost, pii_read) -> None:  # type: ignore[no-untyped-def]
    """The policy travels with the key's principal: its own cache entry, no extra round trip or query."""
    DefinitionFactory(tenant=acme, key="ssn", type="string", pii=True)
    listed = ["n", "ssn", *[f"k{i}" for i in range(8)]]  # a 10-key policy
    _, raw = api_key_create(
        name="narrow", scopes=["pip:read", *(["pii:read"] if pii_read else [])], tenants=[acme], attributes=listed
    )
    narrow = APIClient()
    narrow.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    first = narrow.get("/api/v1/pip/tenants/acme/subjects/u1")
    assert first.json()["attributes"] == {"n": 1}
    assert narrow.get("/api/v1/pip/tenants/acme/subjects/u1").content == first.content  # the entry stored
    with cost() as c:
        response = narrow.get("/api/v1/pip/tenants/acme/subjects/u1")
    assert response.content == first.content
    assert (c.round_trips, dict(c.commands), c.queries) == (1, ONE_ROUND_TRIP, [])


def _prepared() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)  # the connection is closed: a new one starts with nothing prepared
def test_the_lookup_statements_are_prepared_once_per_connection(client, acme) -> None:  # type: ignore[no-untyped-def]
    """Planning the lookup cost as much as running it: PostgreSQL keeps a lookup's statements (the
    key, the held key's generation, by slug, by id, the batch) prepared on the connection."""
    connection.close()
    body = {"subjects": [{"tenant": "acme", "external_id": f"u{i}"} for i in range(3)]}
    for _ in range(2):
        assert client.get("/api/v1/pip/tenants/acme/subjects/u1").status_code == 200
        assert client.get(f"/api/v1/pip/tenants/{acme.id}/subjects/u2").status_code == 200
        assert client.post("/api/v1/pip/resolve", body, format="json").status_code == 200
    prepared = _prepared()
    lookups = [s for s in prepared if "iam_effective_groups" in s]
    # by slug, by id, the batch: each prepared once, carrying the held key's check (and the slug's
    # alone too: the key's first use, read from the database with its generation)
    assert len(lookups) == len(set(lookups)) == 4, prepared
    assert sum(s.startswith("SELECT c.*, q.* FROM") for s in lookups) == 3, prepared
    # the key, read once, with the generation carried in the same statement
    carried = f"SELECT c.*, q.* FROM ({keys.GENERATION_SQL}) c LEFT JOIN LATERAL ("
    assert any(s.startswith(carried) and "FROM access_apikey WHERE key_hash" in s for s in prepared), prepared


@pytest.mark.django_db(transaction=True)
def test_without_prepared_statements_the_lookups_answer_the_same(client, acme, settings) -> None:  # type: ignore[no-untyped-def]
    """``DB_PREPARED_STATEMENTS=false`` (a pooler that cannot keep them): the same answers, nothing prepared."""
    paths = ["/api/v1/pip/tenants/acme/subjects/u1", f"/api/v1/pip/tenants/{acme.id}/subjects/u2"]
    body = {"subjects": [{"tenant": "acme", "external_id": "u3"}, {"tenant": str(acme.id), "external_id": "u4"}]}
    prepared = [client.get(path).content for path in paths] + [
        client.post("/api/v1/pip/resolve", body, format="json").content
    ]
    connection.close()
    connection.ensure_connection()
    connection.connection.prepare_threshold = None  # what the setting gives psycopg
    keys.drop_held()
    plain = [client.get(path).content for path in paths] + [
        client.post("/api/v1/pip/resolve", body, format="json").content
    ]
    assert plain == prepared and _prepared() == []


def test_db_prepared_statements_sets_the_connections_prepare_threshold() -> None:
    from core.config import database_config

    url = "postgres://iam@db:5432/iam"
    on = database_config(url, application_name="iam-web", statement_timeout_ms=5000)
    off = database_config(url, application_name="iam-web", statement_timeout_ms=5000, prepared_statements=False)
    assert (on["OPTIONS"]["prepare_threshold"], off["OPTIONS"]["prepare_threshold"]) == (0, None)


def test_without_pipeline_support_the_check_is_read_before_the_lookup(client, acme, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A psycopg built on a libpq without pipeline mode: the held key's check is still read (a round
    trip of its own) and a revocation still refuses the key on the next request."""
    import psycopg

    client.get("/api/v1/pip/tenants/acme/subjects/u1")
    monkeypatch.setattr(psycopg.Pipeline, "is_supported", classmethod(lambda cls: False))
    checked = []
    original = keys.db_generation
    monkeypatch.setattr(keys, "db_generation", lambda row: checked.append(row) or original(row))
    assert client.get("/api/v1/pip/tenants/acme/subjects/u1").status_code == 200
    assert len(checked) == 1 and checked[0] is not None
    before = original(checked[0])
    with connection.cursor() as cursor:  # another process revokes a key: the generation moves
        cursor.execute("SELECT nextval('access_apikey_generation')")
    assert client.get("/api/v1/pip/tenants/acme/subjects/u1").status_code == 200  # read again: still valid
    assert original(checked[1]) != before  # the moved generation was seen, and the key read again
