"""Outage acceptance tests with the real processes: gunicorn (web), Celery worker and beat.

Each test starts its own NATS server (and, for the broker outage, its own ``redis-server``) on free
ports, then web, worker and beat as subprocesses pointed at the pytest-django test database. It
stops the dependency during writes and checks the contract of DESIGN.md "The relay": the API keeps
answering 201, events wait in the table (``outbox_pending_count``), and once the dependency is back
every event reaches JetStream exactly once with no process restarted.

The processes run ``iam_project.settings`` unchanged except for ``PASSWORD_HASHERS`` (MD5, as in
``tests/settings.py``): HTTP Basic checks the password on every request, and the production
hashers (Argon2, PBKDF2 with 1,000,000 iterations: ~0.2 s of CPU per check here) would make 500
requests take minutes on 2 cores. The overlay module is written to the test's tmp dir.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import nats
import pytest
from django.conf import settings

from devtools.harness import NatsServer, RedisServer, children_of, free_port
from tests import proc_helpers as ph
from tests.jetstream import stream_messages

pytestmark = [pytest.mark.processes, pytest.mark.nats]

PASSWORD = "process-test-admin-password-1"
OVERLAY_SETTINGS = '''"""Written by tests/test_outbox_processes.py: the real settings, with a cheap password hasher."""
from iam_project.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
'''


# --- helpers --------------------------------------------------------------------------------------
def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.2) -> object:
    try:
        return ph.wait_until(predicate, timeout=timeout, interval=interval, message=what)
    except TimeoutError as error:
        raise AssertionError(str(error)) from None


def http_get(url: str, timeout: float = 5) -> tuple[int, str]:
    parts = urlsplit(url)
    response = ph.http_request(parts.port or 80, "GET", parts.path, timeout=timeout)
    return response.status, response.text


def metric_sum(text: str, name: str) -> float | None:
    """The sum of every sample of ``name`` (all label sets) in a Prometheus exposition, or None."""
    values = [
        float(match.group(1))
        for match in re.finditer(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, flags=re.MULTILINE)
    ]
    return sum(values) if values else None


def database_url() -> str:
    """The pytest-django test database as a ``DATABASE_URL`` (TCP or unix-socket form)."""
    from django.db import connection

    return ph.database_url({"USER": "postgres", **connection.settings_dict})


def pending_count() -> int:
    from outbox.models import OutboxEvent

    return OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING).count()


async def _stream_count(url: str, stream: str) -> int:
    nc = await nats.connect(url, connect_timeout=1, max_reconnect_attempts=1, allow_reconnect=False)
    try:
        return (await nc.jsm().stream_info(stream)).state.messages
    finally:
        await nc.close()


def stream_count(url: str, stream: str) -> int:
    return asyncio.run(_stream_count(url, stream))


class Service:
    """One run of the service's processes: gunicorn (2 workers), a Celery worker (2 children) and beat."""

    def __init__(self, tmp: Path, partitions: int = 1) -> None:
        self.tmp = tmp
        self.partitions = partitions
        self.processes: dict[str, ph.Proc] = {}
        self.web_port = free_port()
        self.metrics_port = free_port()
        self.stream = f"PROC_{uuid.uuid4().hex[:10].upper()}"
        self.prefix = f"p{uuid.uuid4().hex[:10]}"
        (tmp / "overlay").mkdir(parents=True, exist_ok=True)
        (tmp / "overlay" / "iam_processes_settings.py").write_text(OVERLAY_SETTINGS)

    def env(self, *, broker_url: str, nats_url: str, metrics_dir: str | None) -> dict[str, str]:
        dropped = ("DJANGO_SETTINGS_MODULE", "PROMETHEUS_MULTIPROC_DIR", "DATABASE_URL", "TEST_DATABASE_URL")
        dropped += ("REDIS_URL", "CELERY_BROKER_URL", "EVENT_BUS_URL", "IAM_ROLE")
        env = ph.inherited_env(
            drop_prefixes=("PYTEST",),
            drop=dropped,
            IAM_ENV="development",
            DJANGO_SETTINGS_MODULE="iam_processes_settings",
            PYTHONPATH=f"{self.tmp / 'overlay'}{os.pathsep}{ph.REPO}",
            PYTHONUNBUFFERED="1",
            IAM_DATA_DIR=str(self.tmp / "data"),
            DATABASE_URL=database_url(),
            EVENT_BUS_URL=nats_url,
            NATS_STREAM_NAME=self.stream,
            NATS_SUBJECT_PREFIX=self.prefix,
            CELERY_BROKER_URL=broker_url,
            OUTBOX_RELAY_INTERVAL="0.5",
            OUTBOX_PARTITIONS=str(self.partitions),
            OUTBOX_RELAY_CONCURRENCY="2",
            NATS_CONNECT_TIMEOUT_SECONDS="1",
            NATS_PUBLISH_TIMEOUT_SECONDS="1",
            WORKER_METRICS_PORT=str(self.metrics_port),
            LOG_LEVEL="INFO",
            DEBUG="false",
        )
        if metrics_dir:  # not created here: gunicorn.conf.py and iam_project/celery.py create it
            env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        return env

    def log(self, name: str) -> str:
        return self.processes[name].output() if name in self.processes else ""

    def logs_tail(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {name} ---\n{self.log(name)[-chars:]}" for name in self.processes)

    def start(self, *, broker_url: str, nats_url: str) -> None:
        (self.tmp / "data").mkdir(exist_ok=True)
        web_env = self.env(broker_url=broker_url, nats_url=nats_url, metrics_dir=str(self.tmp / "metrics-web"))
        worker_env = self.env(broker_url=broker_url, nats_url=nats_url, metrics_dir=str(self.tmp / "metrics-worker"))
        beat_env = self.env(broker_url=broker_url, nats_url=nats_url, metrics_dir=None)
        # Quick shutdowns: gunicorn's SIGINT, Celery's cold shutdown (SIGQUIT) — nothing to finish here.
        web = ph.gunicorn(self.tmp, web_env, port=self.web_port, workers=2, name="web")
        worker = ph.celery_worker(self.tmp, worker_env, "--concurrency", "2", "--hostname", f"proc-{self.prefix}@%h")
        beat = ph.celery_beat(self.tmp, beat_env, schedule=self.tmp / "beat-schedule")
        for proc, quick in ((web, signal.SIGINT), (worker, signal.SIGQUIT), (beat, signal.SIGTERM)):
            proc.stop_signal = quick
            self.processes[proc.name] = proc.start()
        try:
            wait_for(lambda: http_get(f"{self.web_url}/healthz", 1)[0] == 200, 30, "gunicorn /healthz")
            wait_for(lambda: http_get(self.worker_metrics_url, 1)[0] == 200, 30, "the worker's /metrics")
            wait_for(lambda: len(self.pool_pids()) == 2 and len(self.web_worker_pids()) == 2, 30, "process pools")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.logs_tail()}") from None
        self.check_alive()

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def worker_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def web_worker_pids(self) -> set[int]:
        return children_of(self.processes["web"].pid)

    def pool_pids(self) -> set[int]:
        return children_of(self.processes["worker"].pid)

    def pids(self) -> dict[str, object]:
        return {
            "gunicorn master": self.processes["web"].pid,
            "gunicorn workers": sorted(self.web_worker_pids()),
            "celery worker": self.processes["worker"].pid,
            "celery pool": sorted(self.pool_pids()),
            "celery beat": self.processes["beat"].pid,
        }

    def check_alive(self) -> None:
        dead = {name: p.poll() for name, p in self.processes.items() if not p.running()}
        assert not dead, f"processes exited: {dead}\n{self.logs_tail()}"
        for name in self.processes:
            for line in self.log(name).splitlines():
                if "Unrecoverable error" in line or "Warm shutdown" in line or "Cold shutdown" in line:
                    raise AssertionError(f"{name} is shutting down: {line[:1500]}")

    def stop(self) -> None:
        """Stop every process this run started, by its own process group (all signalled first, in parallel)."""
        for proc in self.processes.values():
            if proc.running():
                proc.signal_group(proc.stop_signal)
        for proc in self.processes.values():
            proc.stop(timeout=10)


# --- fixtures -------------------------------------------------------------------------------------
@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def service(transactional_db, tmp_path: Path, request) -> Iterator[Service]:  # type: ignore[no-untyped-def]
    """The processes (``OUTBOX_PARTITIONS``: the indirect parameter, else 1); stopped (before the test
    database is flushed) even when the test fails."""
    run = Service(tmp_path, partitions=getattr(request, "param", 1))
    try:
        yield run
    finally:
        run.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = ph.RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tenant_and_admin(transactional_db, service: Service, settings):  # type: ignore[no-untyped-def]
    """A console superuser and the tenant ``acme``, written by this process under the processes' prefix.

    An outbox row keeps the subject it was written with, so this process must use the same
    ``NATS_SUBJECT_PREFIX`` as the processes (whose stream captures ``<prefix>.>`` only).
    """
    from django.contrib.auth import get_user_model

    from tenants.services import tenant_create

    settings.NATS_SUBJECT_PREFIX = service.prefix
    settings.OUTBOX_PARTITIONS = service.partitions
    get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)
    return tenant_create(slug="acme", name="Acme")


# --- the API, from a small thread pool ------------------------------------------------------------
def create_users(service: Service, count: int, *, prefix: str, clients: int = 8) -> list[tuple[int, float, str]]:
    """POST ``count`` users through the API from ``clients`` threads; returns (status, seconds, body) per request."""
    url = f"{service.web_url}/api/v1/tenants/acme/users/"
    headers = {
        "Authorization": "Basic " + base64.b64encode(f"root:{PASSWORD}".encode()).decode(),
        "Content-Type": "application/json",
    }

    def post(index: int) -> tuple[int, float, str]:
        body = json.dumps({"external_id": f"{prefix}-{index}", "email": f"{prefix}-{index}@example.com"}).encode()
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read().decode()
        except Exception as error:  # timeout, connection reset: report it as a failed request
            status, text = 0, repr(error)
        return status, time.monotonic() - started, text[:300]

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return list(pool.map(post, range(count)))


def wait_until_delivered(service: Service, nats_url: str, expected_users: int, timeout: float) -> None:
    expected = expected_users + 1  # plus the tenant's TenantCreated

    def delivered() -> bool:
        return pending_count() == 0 and stream_count(nats_url, service.stream) >= expected

    try:
        wait_for(delivered, timeout, f"{expected_users} UserCreated events in JetStream and no pending rows", 0.5)
    except AssertionError as error:
        raise AssertionError(f"{error}; pending={pending_count()}\n{service.logs_tail()}") from None


def assert_stream_holds_exactly(nats_url: str, service: Service, tenant, expected_users: int) -> None:  # type: ignore[no-untyped-def]
    stored = stream_messages(nats_url, service.stream)
    created = [m for m in stored if m.envelope["type"] == "UserCreated"]
    assert len(created) == expected_users, f"{len(created)} UserCreated messages, expected {expected_users}"
    assert len({m.msg_id for m in created}) == expected_users
    assert all(m.msg_id == m.envelope["id"] for m in stored)
    assert all(m.subject == f"{service.prefix}.{tenant.id}.user.UserCreated" for m in created)
    assert [m.envelope["type"] for m in stored if m.envelope["type"] != "UserCreated"] == ["TenantCreated"]


# --- the tests ------------------------------------------------------------------------------------
@pytest.mark.parametrize("service", [1, 8], indirect=True, ids=["1-partition", "8-partitions"])
def test_event_bus_outage_during_writes_loses_nothing_and_restarts_nothing(
    own_nats: NatsServer, service: Service, tenant_and_admin
) -> None:  # type: ignore[no-untyped-def]
    users = 500
    service.start(broker_url="filesystem://", nats_url=own_nats.url)
    # The relay works: beat's tick (or a poke) relays the tenant's event and creates the stream.
    wait_for(lambda: pending_count() == 0, 30, "the TenantCreated event relayed")
    assert stream_count(own_nats.url, service.stream) == 1
    pids_before = service.pids()
    errors_before = metric_sum(http_get(service.worker_metrics_url)[1], "event_bus_errors_total") or 0.0

    own_nats.stop()
    time.sleep(5)  # every relay connection is now reconnecting (max_reconnect_attempts=-1: never gives up)
    results = create_users(service, users, prefix="outage")
    statuses = [status for status, _, _ in results]
    assert statuses.count(201) == users, [r for r in results if r[0] != 201][:5]

    assert pending_count() == users
    status, web_metrics = http_get(f"{service.web_url}/metrics")
    assert status == 200
    assert metric_sum(web_metrics, "outbox_pending_count") == pending_count() == users
    assert metric_sum(web_metrics, "outbox_partition_pending_events") == users  # summed over the partitions
    wait_for(
        lambda: (metric_sum(http_get(service.worker_metrics_url)[1], "event_bus_errors_total") or 0.0) > errors_before,
        15,
        "event_bus_errors_total to rise on the worker's /metrics",
    )
    wait_for(
        lambda: "failed to publish event" in service.log("worker"), 10, "'failed to publish event' in the worker log"
    )

    own_nats.start()  # same port, same store directory
    wait_until_delivered(service, own_nats.url, users, 60)  # recovered within 60 s, no restart

    assert_stream_holds_exactly(own_nats.url, service, tenant_and_admin, users)
    assert pending_count() == 0
    service.check_alive()
    assert service.pids() == pids_before, "a process was restarted"


def test_broker_outage_during_writes_never_fails_the_api_and_recovers_without_restarts(
    own_nats: NatsServer, redis_server: RedisServer, service: Service, tenant_and_admin
) -> None:  # type: ignore[no-untyped-def]
    users = 100
    service.start(broker_url=redis_server.url, nats_url=own_nats.url)
    wait_for(lambda: pending_count() == 0, 30, "the TenantCreated event relayed through the Redis broker")
    pids_before = service.pids()
    # The same writes with the broker up, in this run and on this machine: the baseline.
    # As many clients as gunicorn workers: each request's time is its own, not time queued behind others.
    baseline = create_users(service, 20, prefix="baseline", clients=2)
    assert [status for status, _, _ in baseline].count(201) == 20, baseline[:5]
    wait_until_delivered(service, own_nats.url, 20, 60)

    redis_server.stop()
    time.sleep(1)
    results = create_users(service, users, prefix="broker", clients=2)
    assert [status for status, _, _ in results].count(201) == users, [r for r in results if r[0] != 201][:5]
    # The on-commit poke gives up within its short broker timeouts (settings: one retry, 1 s connect):
    # a write with the broker down costs at most that budget more than the slowest write with it up, on
    # a machine however slow; kombu's default retry policy would hold each write for tens of seconds.
    options = settings.REDIS_BROKER_TRANSPORT_OPTIONS  # the service's, whatever broker this process has
    budget = (options["max_retries"] + 1) * options["socket_connect_timeout"] + options["interval_max"]
    allowed = 2 * max(seconds for _, seconds, _ in baseline) + 2 * budget
    slow = [round(seconds, 2) for _, seconds, _ in results if seconds > allowed]
    assert not slow, f"{len(slow)} writes over {allowed:.1f} s during the broker outage: {slow[:10]}"
    assert "could not poke the outbox relay" in service.log("web")
    # Without a broker nothing relays: the events wait in the table.
    time.sleep(2)
    assert pending_count() == users

    redis_server.start()  # same port
    wait_until_delivered(service, own_nats.url, users + len(baseline), 60)
    assert_stream_holds_exactly(own_nats.url, service, tenant_and_admin, users + len(baseline))
    service.check_alive()
    assert service.pids() == pids_before, "a process was restarted"
