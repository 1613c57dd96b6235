"""Consistency tokens with one database (no replica configured): what writes, the PIP and events carry,
what a bad token gets, and the PIP cache honouring a token (real PostgreSQL, real Redis, real NATS).

The primary + standby behaviour is tests/test_replicas.py's.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from access.keys import api_key_create
from core.db import tokens
from core.db.tokens import BadToken
from tests.factories import DefinitionFactory, TenantFactory, UserFactory

pytestmark = pytest.mark.django_db
PIP = "/api/v1/pip/tenants/acme/subjects/alice"


def insert_lsn() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_insert_lsn()::text")
        return tokens.lsn_value(cursor.fetchone()[0])


@pytest.fixture
def acme():  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme", name="Acme")
    DefinitionFactory(tenant=tenant, key="level", type="integer")
    UserFactory(tenant=tenant, external_id="alice", attributes={"level": 1})
    return tenant


@pytest.fixture
def pip(acme):  # type: ignore[no-untyped-def]
    _, raw = api_key_create(name="opa", scopes=["pip:read"], tenants=[acme])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_tokens_round_trip_and_refuse_what_was_not_issued() -> None:
    assert tokens.lsn_value("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert tokens.lsn_text(tokens.lsn_value("16/B374D848")) == "16/B374D848"
    token = tokens.issue(0x16B374D848)
    assert tokens.read(token) == 0x16B374D848
    hex_lsn, signature = token.split(".")
    for forged in (f"{int(hex_lsn, 16) + 1:x}.{signature}", "garbage", "16/B374D848", "", f"{hex_lsn}.{'0' * 16}"):
        with pytest.raises(BadToken):
            tokens.read(forged)


def test_a_write_answers_the_token_of_its_commit_and_a_refused_write_none(api, acme) -> None:  # type: ignore[no-untyped-def]
    before = insert_lsn()
    created = api.post("/api/v1/tenants/acme/users/", {"external_id": "bob", "attributes": {"level": 2}}, format="json")
    assert created.status_code == 201
    assert before < tokens.read(created["Consistency-Token"]) <= insert_lsn()

    refused = api.post("/api/v1/tenants/acme/users/", {"external_id": "bob"}, format="json")
    assert refused.status_code == 409 and "Consistency-Token" not in refused
    assert "Consistency-Token" not in api.get("/api/v1/tenants/acme/")  # a read of the API: no write's token


def test_the_console_gets_its_writes_token_as_a_cookie(admin_client_logged_in) -> None:  # type: ignore[no-untyped-def]
    response = admin_client_logged_in.post(
        "/admin/tenants/tenant/add/", {"slug": "cookie-co", "name": "Cookie", "status": "active"}
    )
    assert response.status_code == 302, response.content[:500]
    assert tokens.read(response.cookies[tokens.COOKIE].value) == tokens.read(response["Consistency-Token"])


def test_pip_answers_carry_the_token_of_the_state_they_read(pip, acme) -> None:  # type: ignore[no-untyped-def]
    response = pip.get(PIP)
    assert response.status_code == 200
    assert 0 < tokens.read(response["Consistency-Token"]) <= insert_lsn()
    assert pip.get(PIP, HTTP_IF_NONE_MATCH=response["ETag"])["Consistency-Token"]  # a 304 too
    batch = pip.post("/api/v1/pip/resolve", {"subjects": [{"tenant": "acme", "external_id": "alice"}]}, format="json")
    assert batch.status_code == 200 and tokens.read(batch["Consistency-Token"]) > 0
    # Sent back, with no replica configured: the primary answers, as before.
    again = pip.get(PIP, HTTP_CONSISTENCY_TOKEN=response["Consistency-Token"])
    assert again.status_code == 200 and again.content == response.content


@pytest.mark.parametrize(
    ("path", "meta", "named"),
    [
        (PIP, {"HTTP_CONSISTENCY_TOKEN": "not-a-token"}, "Consistency-Token"),
        (f"{PIP}?consistency=ab.0123456789abcdef", {}, "?consistency="),
        ("/api/v1/tenants/", {"HTTP_CONSISTENCY_TOKEN": "ab.0123456789abcdef"}, "Consistency-Token"),
        ("/api/v1/tenants/", {"HTTP_CONSISTENCY": "strong"}, "Consistency"),
    ],
)
def test_a_bad_token_is_a_400_problem_naming_where_it_came_from(pip, api, path, meta, named) -> None:  # type: ignore[no-untyped-def]
    response = (pip if path.startswith("/api/v1/pip/") else api).get(path, **meta)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/problem+json")
    assert named in response.json()["detail"]


def test_the_pip_cache_uses_no_entry_older_than_the_token(pip, acme, with_redis) -> None:  # type: ignore[no-untyped-def]
    first = pip.get(PIP)  # stored in the cache with the WAL position it was read at
    assert pip.get(PIP).content == first.content  # the key held, the slug memoised
    read_at = tokens.read(first["Consistency-Token"])
    with CaptureQueriesContext(connection) as queries:
        cached = pip.get(PIP, HTTP_CONSISTENCY_TOKEN=tokens.issue(read_at))
    assert cached.status_code == 200 and len(queries) == 0  # as fresh as the token: the cached entry

    newer = tokens.issue(insert_lsn() + 1)  # a write's token the entry does not cover
    with CaptureQueriesContext(connection) as queries:
        fresh = pip.get(PIP, HTTP_CONSISTENCY_TOKEN=newer)
    assert fresh.status_code == 200 and len(queries) == 1  # read again from the database
    assert fresh.content == first.content


@pytest.mark.django_db(transaction=True)
def test_events_carry_the_consistency_token_of_their_commit(event_bus) -> None:  # type: ignore[no-untyped-def]
    from django.conf import settings

    from tests.jetstream import stream_messages
    from tests.outbox_helpers import drain_outbox

    TenantFactory(slug="evented")
    committed = insert_lsn()
    drain_outbox()
    (message,) = [m for m in stream_messages(event_bus.url, settings.NATS_STREAM_NAME)]
    assert message.envelope["type"] == "TenantCreated"
    assert tokens.read(message.envelope["consistencytoken"]) >= committed


def test_the_router_keeps_logins_keys_and_writes_on_the_primary() -> None:
    from access.models import ApiKey
    from core.db import replicas
    from core.db.replicas import ReadScope, ReplicaRouter
    from users.models import User

    router, scope = ReplicaRouter(), ReadScope(replicas=True, alias="replica_1")  # as chosen for the request
    reset = replicas.enter(scope)
    try:
        assert router.db_for_read(ApiKey) == "default"  # REPLICA_PRIMARY_APPS: never a stale key
        assert router.db_for_read(User) == "replica_1"
        assert router.db_for_write(User) == "default"
        assert router.db_for_read(User) == "default"  # after a write, in the same request
    finally:
        replicas.leave(reset)
    assert router.db_for_read(User) == "default"  # outside a read scope (a task, a command)
    assert not router.allow_migrate("replica_1", "users") and router.allow_migrate("default", "users")


def test_a_token_signed_before_a_secret_key_rotation_still_reads(settings) -> None:  # type: ignore[no-untyped-def]
    token = tokens.issue(0xABCDEF)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-" + "y" * 50
    assert tokens.read(token) == 0xABCDEF
    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(BadToken):
        tokens.read(token)


def test_on_kafka_the_token_is_the_ce_consistencytoken_header() -> None:
    from eventbus.base import Message
    from eventbus.kafka import BINARY, kafka_record
    from outbox.relay import with_token

    payload = with_token(
        '{"id": "e1", "type": "UserUpdated", "specversion": "1.0", "data": {"version": 2}}',
        tokens.issue(tokens.lsn_value("0/16B3740")),
    )
    value, headers = kafka_record(Message(event_id="e1", subject="s", payload=payload), BINARY)
    found = dict(headers)
    assert tokens.read(found["ce_consistencytoken"].decode()) == 0x16B3740  # type: ignore[union-attr]
    assert value == b'{"version":2}'
