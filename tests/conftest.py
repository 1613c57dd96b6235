"""Fixtures: a real PostgreSQL (the pgserver wheel's unless one is configured), real NATS and Kafka-compatible servers,
the SQL guard."""

from __future__ import annotations

import base64
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from core.guards import in_domain_write
from devtools.harness import KafkaServer, NatsServer, Postgres

__all__ = ["ADMIN_PASSWORD", "TENANT_ADMIN_PASSWORD", "KafkaServer", "NatsServer", "basic", "use_kafka"]

pytest_plugins = ["tests.pokes"]  # every test: the relay's on-commit pokes recorded, not sent
CONFIGURED_DATABASE = bool(os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL"))
DOMAIN_TABLES = ("tenants_tenant", "users_user", "attributes_attributedefinition", "groups_group", "groups_membership")
DOMAIN_WRITE = re.compile(r'^\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?(' + "|".join(DOMAIN_TABLES) + r')"?\b', re.I)


@pytest.fixture(scope="session")
def django_db_modify_db_settings() -> Iterator[None]:
    """Without a configured database, start a real PostgreSQL (the pgserver wheel's binaries) for the session."""
    if CONFIGURED_DATABASE:
        yield
        return
    # As pgserver served it: the unix socket only (no TCP port is taken), in a directory of its own, with
    # the default port's name, so that a URL without a port reaches it.
    server = Postgres(5432, host="").init().start()
    database = settings.DATABASES["default"]
    database.update({"HOST": str(server.sockets), "PORT": "", "NAME": "postgres", "USER": "postgres", "PASSWORD": ""})
    database["OPTIONS"] = {k: v for k, v in database["OPTIONS"].items() if k != "host"}
    try:
        yield
    finally:
        server.cleanup()


@pytest.fixture(autouse=True)
def domain_write_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test whose code writes a domain table outside a service (so without its event)."""
    if "no_sql_guard" in request.keywords or "django_db_setup" not in request.fixturenames:
        yield
        return

    def guard(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        if DOMAIN_WRITE.match(sql) and not in_domain_write():
            raise AssertionError(f"domain table written outside a service function: {sql[:120]}")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(guard):
        yield


# --- principals ------------------------------------------------------------------------------------
ADMIN_PASSWORD = "console-admin-password-1"


@pytest.fixture
def superuser(django_user_model):  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_superuser("root", "root@example.com", ADMIN_PASSWORD)


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@pytest.fixture
def api(superuser):  # type: ignore[no-untyped-def]
    """A DRF client sending HTTP Basic credentials of a console superuser."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic("root", ADMIN_PASSWORD))
    return client


@pytest.fixture
def admin_client_logged_in(client, superuser):  # type: ignore[no-untyped-def]
    client.force_login(superuser)
    return client


TENANT_ADMIN_PASSWORD = "tenant-admin-password-1"


@pytest.fixture
def two_tenants(django_user_model):  # type: ignore[no-untyped-def]
    """Tenants A and B with an integer definition ``level`` and a user each; a tenant administrator of A."""
    from access.models import TenantAdministrator
    from tests.factories import DefinitionFactory, TenantFactory, UserFactory

    a, b = TenantFactory(slug="tenant-a", name="Alpha"), TenantFactory(slug="tenant-b", name="Bravo")
    for tenant in (a, b):
        DefinitionFactory(tenant=tenant, key="level", type="integer")
    ua = UserFactory(tenant=a, external_id="alice-of-a", attributes={"level": 1})
    ub = UserFactory(tenant=b, external_id="bob-of-b", attributes={"level": 2})
    tadmin = django_user_model.objects.create_user("tadmin", password=TENANT_ADMIN_PASSWORD, is_staff=True)
    TenantAdministrator.objects.create(user=tadmin, tenant=a)
    return {"a": a, "b": b, "ua": ua, "ub": ub, "tadmin": tadmin}


# --- NATS ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of the test module's own (a missing binary fails under CI=true)."""
    from tests.proc_helpers import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def with_redis(settings, redis_url):  # type: ignore[no-untyped-def]
    """The production cache configuration (``REDIS_URL`` set), against the module's redis-server; the
    process-local memos (slugs, held keys) emptied before and after."""
    import redis
    from django.core.cache import cache

    from access import keys
    from core import near_cache
    from resolver.cache import _SLUG_MEMO

    settings.CACHES = {"default": {"BACKEND": "core.redis_cache.RedisCache", "LOCATION": redis_url}}
    settings.SHARED_CACHE = True
    # The lane's one round trip per request, as these tests count it; tests/test_near_cache.py turns
    # on the near cache (no round trip) and waits for its lease.
    settings.PIP_NEAR_CACHE = False
    cache.clear()
    _SLUG_MEMO.clear()
    keys.drop_held()
    yield redis.Redis.from_url(redis_url)
    near_cache.stop()
    cache.clear()
    _SLUG_MEMO.clear()
    keys.drop_held()


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    store = Path(tempfile.mkdtemp(prefix="iam-test-nats-"))
    server = NatsServer(store).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(store, ignore_errors=True)


@pytest.fixture
def event_bus(nats_server: NatsServer, settings, request):  # type: ignore[no-untyped-def]
    """Point the relay at the test NATS server, with a stream of its own for this test."""
    import eventbus as bus
    from core.config import event_bus_config

    if nats_server.process is None:
        nats_server.start()
    settings.EVENT_BUS = event_bus_config(nats_server.url)
    name = re.sub(r"[^A-Za-z0-9]", "_", request.node.name)[:40].upper()
    settings.NATS_STREAM_NAME = f"T_{name}_{zlib.crc32(request.node.nodeid.encode()):08X}"  # one per parameter set
    settings.NATS_SUBJECT_PREFIX = f"t{abs(hash(request.node.nodeid)) % 10**8}"
    settings.NATS_PUBLISH_TIMEOUT_SECONDS = 2.0
    bus.reset_adapter()
    yield nats_server
    bus.reset_adapter()


@pytest.fixture(params=[1, 8], ids=["1-partition", "8-partitions"])
def partitions(request, settings) -> int:  # type: ignore[no-untyped-def]
    """``OUTBOX_PARTITIONS`` for a relay test that must hold with one lane and with several."""
    settings.OUTBOX_PARTITIONS = request.param
    return int(request.param)


# --- Kafka -----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def kafka_server() -> Iterator[KafkaServer]:
    log_dir = Path(tempfile.mkdtemp(prefix="iam-test-kafka-"))
    server = KafkaServer(log_dir).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(log_dir, ignore_errors=True)


def use_kafka(settings, server: KafkaServer, topic: str) -> None:  # type: ignore[no-untyped-def]
    import eventbus as bus
    from core.config import event_bus_config

    settings.EVENT_BUS = event_bus_config(server.url)
    settings.KAFKA_TOPIC = topic
    settings.KAFKA_TOPIC_PARTITIONS = 3
    settings.KAFKA_PUBLISH_TIMEOUT_SECONDS = 2.0
    bus.reset_adapter()


@pytest.fixture
def kafka_bus(kafka_server: KafkaServer, settings, request):  # type: ignore[no-untyped-def]
    """Point the relay at the test Kafka broker, with a topic of its own for this test."""
    import eventbus as bus

    if kafka_server.process is None:
        kafka_server.start()
    use_kafka(settings, kafka_server, f"t{abs(hash(request.node.nodeid)) % 10**8}.events")
    yield kafka_server
    bus.reset_adapter()


@pytest.fixture(params=["nats", "kafka"])
def bus(request):  # type: ignore[no-untyped-def]
    """The test's event bus, once per kind where the relay's promises are the same on both."""
    from tests.buses import Bus

    server = request.getfixturevalue("event_bus" if request.param == "nats" else "kafka_bus")
    return Bus(request.param, server, request.getfixturevalue("settings"))


class Cost:
    """Redis round trips and commands, and SQL queries, counted by the ``cost`` fixture."""

    def __init__(self) -> None:
        from collections import Counter

        self.round_trips = 0
        self.server_reads = 0
        self.commands: Counter[str] = Counter()
        self.queries: list[str] = []


@pytest.fixture
def cost(monkeypatch, request):  # type: ignore[no-untyped-def]
    """``with cost() as c:`` counts the Redis round trips, Redis commands and SQL queries inside."""
    import threading
    from contextlib import contextmanager

    import redis
    from django.test.utils import CaptureQueriesContext

    from core.redis_cache import Wire

    server = request.getfixturevalue("with_redis") if "with_redis" in request.fixturenames else None

    @contextmanager
    def measure() -> Iterator[Cost]:
        found = Cost()
        original = redis.connection.Connection.send_packed_command
        original_call = Wire.call

        def counting(self, command, check_health=True):  # type: ignore[no-untyped-def]
            if threading.current_thread().name != "near-cache":  # the listener's own, not the request's
                found.round_trips += 1
            return original(self, command, check_health)

        def counting_call(self, packed, count):  # type: ignore[no-untyped-def]
            found.round_trips += 1
            return original_call(self, packed, count)

        if server is not None:
            server.config_resetstat()
        monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting)
        monkeypatch.setattr(Wire, "call", counting_call)
        try:
            with CaptureQueriesContext(connection) as queries:
                yield found
        finally:
            monkeypatch.setattr(redis.connection.Connection, "send_packed_command", original)
            monkeypatch.setattr(Wire, "call", original_call)
        found.queries = [q["sql"] for q in queries.captured_queries]
        if server is not None:
            # The server's own count of socket reads: a pipelined write arrives as one (the INFO
            # command reading it is the last one).
            found.server_reads = int(server.info("stats")["total_reads_processed"]) - 1
            for name, stats in server.info("commandstats").items():
                command = name.removeprefix("cmdstat_")
                if command not in ("info", "config|resetstat", "config"):
                    found.commands[command] = stats["calls"]

    return measure


@pytest.fixture
def pip_tenant():  # type: ignore[no-untyped-def]
    """A tenant ``acme`` with an integer and a PII attribute, and two subjects (``alice``, ``bob/ops``)."""
    from tests.factories import DefinitionFactory, TenantFactory, UserFactory

    tenant = TenantFactory(slug="acme", name="Acme")
    DefinitionFactory(tenant=tenant, key="n", type="integer")
    DefinitionFactory(tenant=tenant, key="ssn", type="string", pii=True)
    UserFactory(tenant=tenant, external_id="alice", attributes={"n": 1, "ssn": "078-05-1120"})
    UserFactory(tenant=tenant, external_id="bob/ops", attributes={"n": 2})
    return tenant
