"""The runbook-true runtime, tested on real processes: gunicorn, Celery worker and beat, manage.py.

- ``http_requests_total`` / ``http_request_duration_seconds`` are exact across gunicorn workers,
  ``outbox_pending_count`` matches the table, ``database_errors_total`` ignores a 409, the scrape
  passes ``promtool check metrics``, and the probes answer whatever the Host header says;
- losing PostgreSQL is a 503 (API, console, /readyz), never a 500, and the same processes recover;
- a bad configuration stops every role at once with one FATAL line naming the variable (password
  redacted), while an unreachable event bus does not stop web;
- JSON request logs without secrets, ``application_name = 'iam-web'`` in ``pg_stat_activity``;
- ``manage.py check_dependencies``: a table, and the exit code bits of what failed.

Every process is started on loopback and free ports, bounded in time and stopped by the test that
started it (tests/proc_helpers.py); the only services stopped are those these tests started.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.embedded import free_port
from tests import proc_helpers as ph

pytestmark = pytest.mark.processes

USERNAME = "console-admin"
PASSWORD = "Proc-Tests-Console-Pass-7f3b2c"  # distinctive, so that a leak into the logs is found
AUTH = {"Authorization": ph.basic_auth(USERNAME, PASSWORD)}
JSON = {"Content-Type": "application/json"}

# The route label is the URL template (RUNBOOK "http_requests_total": method, route template, status;
# core.observability.route_of: "api/v1/tenants/{tenant}/"), never the raw path or a regex.
LIST_ROUTE = "api/v1/tenants/"
DETAIL_ROUTE = "api/v1/tenants/{tenant}/"
PRINCIPAL = f"basic:{USERNAME}"  # the API calls here use HTTP Basic: logged as such, not as the console
FOREIGN_HOST = "10.1.2.3:8000"  # a pod IP as kubelets and Prometheus use it, not in ALLOWED_HOSTS
SECRET = "s3cret-pass"


# --- fixtures ------------------------------------------------------------------------------------
@pytest.fixture
def procs() -> Iterator[list[ph.Proc]]:
    """Processes started by one test; every one is stopped when the test ends, pass or fail."""
    started: list[ph.Proc] = []
    try:
        yield started
    finally:
        for proc in reversed(started):
            proc.stop()


@pytest.fixture
def test_database_url(transactional_db) -> str:  # type: ignore[no-untyped-def]
    """The pytest-django test database as a DATABASE_URL (committed rows are visible to children)."""
    from django.conf import settings

    return ph.database_url(settings.DATABASES["default"])


@pytest.fixture
def console_superuser(transactional_db, django_user_model, settings):  # type: ignore[no-untyped-def]
    """A console superuser whose password hash production settings accept (tests use MD5 for speed)."""
    import iam_project.settings as production

    settings.PASSWORD_HASHERS = production.PASSWORD_HASHERS
    return django_user_model.objects.create_superuser(USERNAME, "admin@example.com", PASSWORD)


def start_web(
    procs: list[ph.Proc],
    workdir: Path,
    *,
    workers: int,
    database_url: str,
    event_bus_url: str,
    name: str = "gunicorn",
    **env_values: str,
) -> tuple[ph.Proc, int, Path]:
    """A production-mode gunicorn on a free loopback port, serving /healthz: (process, port, metrics dir)."""
    port = free_port()
    metrics_dir = workdir / f"{name}-metrics"
    metrics_dir.mkdir(parents=True)
    env = ph.production_env(
        database_url=database_url,
        event_bus_url=event_bus_url,
        metrics_dir=metrics_dir,
        data_dir=workdir / "data",
        **env_values,
    )
    proc = ph.gunicorn(workdir, env, port=port, workers=workers, name=name)
    procs.append(proc.start())
    ph.wait_for_http(proc, port, "/healthz", timeout=30)
    return proc, port, metrics_dir


def wait_for_workers(proc: ph.Proc, count: int, timeout: float = 20.0) -> list[int]:
    """The pids of the master's ``count`` workers, once that many run."""
    import psutil

    def workers() -> list[int] | None:
        children = psutil.Process(proc.pid).children()
        return sorted(child.pid for child in children) if len(children) == count else None

    return ph.wait_until(workers, timeout=timeout, message=f"{count} gunicorn workers")


def scrape(port: int, **kwargs: str) -> str:
    response = ph.http_request(port, "GET", "/metrics", **kwargs)
    assert response.status == 200, response.text[:500]
    assert response.header("Content-Type", "").startswith("text/plain"), response.header("Content-Type")
    return response.text


def api_routes(samples: ph.Samples) -> set[str]:
    return {dict(series)["route"] for name, series in samples if name == "http_requests_total"} - {
        "healthz",
        "readyz",
        "metrics",
    }


def requests_by_pid(metrics_dir: Path) -> dict[int, float]:
    """``http_requests_total`` summed per process, from the multiprocess files of each pid."""
    from prometheus_client.mmap_dict import MmapedDict

    totals: dict[int, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            _metric, name, labels, _help = json.loads(key)
            if name == "http_requests_total" and labels.get("route") not in ("healthz", "readyz", "metrics"):
                totals[pid] = totals.get(pid, 0.0) + value
    return totals


# --- 1. metrics across gunicorn workers -----------------------------------------------------------
N_LIST, N_MISSING, N_ANONYMOUS = 6, 4, 6
SLUGS = ("proc-alpha", "proc-beta", "proc-gamma")
# Not a performance figure (those live in bench/): a bound that catches a poke that hangs on the
# unreachable broker (kombu's default retry policy waits tens of seconds), generous for a loaded CI.
WRITE_WITH_BROKER_DOWN_SECONDS = 10


def timed(port: int, method: str, path: str, **kwargs) -> tuple[ph.Response, float]:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    response = ph.http_request(port, method, path, **kwargs)
    return response, time.monotonic() - started


def send_known_traffic(port: int) -> list[float]:
    """Known numbers of requests per method, route and status, spread over the workers.

    Returns how long each successful write took (the Celery broker is unreachable meanwhile).
    """

    def create(slug: str, name: str) -> tuple[ph.Response, float]:
        body = json.dumps({"slug": slug, "name": name})
        return timed(port, "POST", "/api/v1/tenants/", headers={**AUTH, **JSON}, body=body)

    # Concurrent clients: a busy sync worker leaves the next connection to another worker.
    with ThreadPoolExecutor(max_workers=len(SLUGS)) as pool:
        created = list(pool.map(lambda slug: create(slug, slug), SLUGS))
    duplicate, _ = create(SLUGS[0], "again")
    jobs = (
        [("/api/v1/tenants/", AUTH)] * N_LIST
        + [("/api/v1/tenants/nope/", AUTH)] * N_MISSING
        + [("/api/v1/tenants/", {})] * N_ANONYMOUS
    )
    with ThreadPoolExecutor(max_workers=4) as pool:
        reads = list(pool.map(lambda job: ph.http_request(port, "GET", job[0], headers=job[1]), jobs))
    assert [r.status for r, _ in created] == [201] * len(SLUGS), [(r.status, r.text[:300]) for r, _ in created]
    assert duplicate.status == 409, (duplicate.status, duplicate.text[:300])
    statuses = [r.status for r in reads]
    assert statuses == [200] * N_LIST + [404] * N_MISSING + [401] * N_ANONYMOUS, statuses
    return [seconds for _, seconds in created]


def test_metrics_are_exact_across_gunicorn_workers(procs, tmp_path, test_database_url, console_superuser, nats_server):  # type: ignore[no-untyped-def]
    from outbox.models import OutboxEvent

    web, port, metrics_dir = start_web(
        procs, tmp_path, workers=3, database_url=test_database_url, event_bus_url=nats_server.url
    )
    wait_for_workers(web, 3)
    write_seconds = send_known_traffic(port)

    served_by = {pid: count for pid, count in requests_by_pid(metrics_dir).items() if count}
    assert sum(served_by.values()) == len(SLUGS) + 1 + N_LIST + N_MISSING + N_ANONYMOUS, served_by
    assert len(served_by) >= 2, f"all requests were served by one worker, nothing to merge: {served_by}"

    pending_in_table = OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING).count()
    assert pending_in_table == len(SLUGS)  # one TenantCreated each; the broker is down, nothing relayed

    expected_requests = {
        ("GET", LIST_ROUTE, "200"): N_LIST,
        ("GET", LIST_ROUTE, "401"): N_ANONYMOUS,
        ("GET", DETAIL_ROUTE, "404"): N_MISSING,
        ("POST", LIST_ROUTE, "201"): len(SLUGS),
        ("POST", LIST_ROUTE, "409"): 1,
    }
    expected_durations = {
        ("GET", LIST_ROUTE): N_LIST + N_ANONYMOUS,
        ("GET", DETAIL_ROUTE): N_MISSING,
        ("POST", LIST_ROUTE): len(SLUGS) + 1,
    }
    texts = []
    for scrapes_before in range(4):  # whichever worker answers, the figures are the same
        text = scrape(port)
        texts.append(text)
        samples = ph.parse_metrics(text)
        assert api_routes(samples) == {LIST_ROUTE, DETAIL_ROUTE}, (
            f"route labels must be URL templates, got {sorted(api_routes(samples))}"
        )
        for (method, route, status), count in expected_requests.items():
            got = ph.sample(samples, "http_requests_total", method=method, route=route, status=status)
            assert got == count, f"http_requests_total{{{method},{route},{status}}} = {got}, expected {count}"
        for (method, route), count in expected_durations.items():
            got = ph.sample(samples, "http_request_duration_seconds_count", method=method, route=route)
            assert got == count, f"http_request_duration_seconds_count{{{method},{route}}} = {got}, expected {count}"
            inf = ph.sample(samples, "http_request_duration_seconds_bucket", method=method, route=route, le="+Inf")
            assert inf == count
        assert ph.sample(samples, "http_requests_total", method="GET", route="metrics", status="200") == (
            scrapes_before or None
        )
        assert ph.sample(samples, "outbox_pending_count") == pending_in_table
        assert ph.sample(samples, "database_errors_total") == 0, "a 409 (unique violation) is not a database error"

    promtool_check(texts[-1], tmp_path)

    # Probes and metrics answer a Host header outside ALLOWED_HOSTS (pods are scraped by IP) ...
    for path in ("/metrics", "/healthz", "/readyz"):
        response = ph.http_request(port, "GET", path, host=FOREIGN_HOST)
        assert response.status == 200, (path, response.status, response.text[:300])
    # ... and the rest of the site still does not.
    assert ph.http_request(port, "GET", "/api/v1/tenants/", headers=AUTH, host=FOREIGN_HOST).status == 400
    assert web.running()

    # The broker was unreachable all along: the on-commit poke gave up quickly (DESIGN, "The relay":
    # short broker timeouts), so a committed write is neither an error nor seconds late.
    assert max(write_seconds) < WRITE_WITH_BROKER_DOWN_SECONDS, (
        f"writes took {[round(s, 2) for s in write_seconds]} s with the broker down"
    )


def promtool_check(text: str, tmp_path: Path) -> None:
    promtool = "/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else shutil.which("promtool")
    if not promtool:
        reason = "promtool not installed (Debian package 'prometheus'; `make system-deps`)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30, check=False
    )
    (tmp_path / "scrape.txt").write_text(text)
    assert result.returncode == 0, f"promtool check metrics:\n{result.stdout}{result.stderr}"


# --- 4. JSON logs without secrets; application_name ----------------------------------------------
def web_backends(cursor) -> int:  # type: ignore[no-untyped-def]
    cursor.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'iam-web'"
        " AND datname = current_database() AND pid <> pg_backend_pid()"
    )
    return cursor.fetchone()[0]


def test_request_logs_are_json_without_secrets_and_web_connects_as_iam_web(  # type: ignore[no-untyped-def]
    procs, tmp_path, test_database_url, console_superuser, nats_server
):
    from django.db import connection

    with connection.cursor() as cursor:  # nobody else is connected as iam-web before this gunicorn
        ph.wait_until(lambda: web_backends(cursor) == 0, timeout=5, message="no iam-web backend left")
    web, port, _ = start_web(procs, tmp_path, workers=3, database_url=test_database_url, event_bus_url=nats_server.url)
    known = ph.http_request(port, "GET", "/api/v1/tenants/nope/", headers={**AUTH, "X-Request-ID": "proc-req-404"})
    assert known.status == 404 and known.header("X-Request-ID") == "proc-req-404"
    listed = ph.http_request(port, "GET", "/api/v1/tenants/", headers={**AUTH, "X-Request-ID": "proc-req-list"})
    assert listed.status == 200
    wrong = ph.basic_auth(USERNAME, "Wrong-Password-Not-Logged-1")
    assert ph.http_request(port, "GET", "/api/v1/tenants/", headers={"Authorization": wrong}).status == 401
    assert ph.http_request(port, "GET", "/api/v1/tenants/").status == 401
    body = json.dumps({"slug": "proc-logged", "name": "Logged"})
    assert ph.http_request(port, "POST", "/api/v1/tenants/", headers={**AUTH, **JSON}, body=body).status == 201

    # CONN_MAX_AGE keeps the worker's connection open after the request: visible to the runbook's query.
    with connection.cursor() as cursor:
        assert ph.wait_until(lambda: web_backends(cursor), timeout=5, message="an iam-web backend") >= 1

    web.stop()  # flushes and closes its output
    lines = ph.json_lines(web.stdout())
    requests = [line for line in lines if line.get("logger") == "iam.request"]
    assert len(requests) == 5, f"one line per request (the probes log at DEBUG): {requests}"
    fields = {"request_id", "method", "route", "status", "duration_ms", "tenant", "principal"}
    for line in requests:
        assert fields <= set(line), f"request line without {fields - set(line)}: {line}"
        assert isinstance(line["duration_ms"], int | float) and line["duration_ms"] >= 0
    by_id = {line["request_id"]: line for line in requests}
    missing = by_id["proc-req-404"]
    assert (missing["method"], missing["route"], missing["status"]) == ("GET", DETAIL_ROUTE, 404)
    assert missing["tenant"] == "nope"
    assert missing["principal"] == PRINCIPAL
    listing = by_id["proc-req-list"]
    assert (listing["method"], listing["route"], listing["status"]) == ("GET", LIST_ROUTE, 200)
    assert listing["tenant"] == "" and listing["principal"] == PRINCIPAL
    assert len({line["request_id"] for line in requests}) == len(requests), "request ids are not unique"
    refused = [line for line in requests if line["status"] == 401]
    assert len(refused) == 2 and all(line["principal"] == "" for line in refused), refused

    everything = web.output()
    assert PASSWORD not in everything and "Wrong-Password-Not-Logged-1" not in everything
    assert wrong.split()[1] not in everything
    assert AUTH["Authorization"] not in everything
    assert AUTH["Authorization"].split()[1] not in everything  # not even the base64 credentials alone


# --- 2. losing the database is a 503, and the same processes recover -------------------------------
@dataclass
class OutageStack:
    """Our own PostgreSQL (stoppable) and a production gunicorn on it, with known rows and a PIP key."""

    postgres: ph.Postgres
    web: ph.Proc
    port: int
    workers: list[int]
    pip_key: str
    tenant: str = "outage-acme"
    external_id: str = "alice"

    def pids(self) -> list[int]:
        import psutil

        return sorted(child.pid for child in psutil.Process(self.web.pid).children())

    def database_errors(self) -> float:
        value = ph.sample(ph.parse_metrics(scrape(self.port)), "database_errors_total")
        assert value is not None, "database_errors_total missing from /metrics"
        return value


@pytest.fixture(scope="module")
def outage_stack(nats_server, tmp_path_factory) -> Iterator[OutageStack]:  # type: ignore[no-untyped-def]
    workdir = tmp_path_factory.mktemp("outage")
    server = ph.Postgres()
    web: ph.Proc | None = None
    try:
        server.init().start()
        env = ph.production_env(database_url=server.url, event_bus_url=nats_server.url, data_dir=workdir / "data")
        pip_key = ph.prepare_site(env, USERNAME, PASSWORD, migrate_timeout=120)

        port = free_port()
        metrics_dir = workdir / "metrics"
        metrics_dir.mkdir()
        web = ph.gunicorn(workdir, {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}, port=port, workers=2)
        web.start()
        ph.wait_for_http(web, port, "/readyz", timeout=30)
        stack = OutageStack(server, web, port, wait_for_workers(web, 2), pip_key)
        tenant = ph.http_request(
            port,
            "POST",
            "/api/v1/tenants/",
            headers={**AUTH, **JSON},
            body=json.dumps({"slug": stack.tenant, "name": "Acme"}),
        )
        assert tenant.status == 201, tenant.text[:300]
        user = ph.http_request(
            port,
            "POST",
            f"/api/v1/tenants/{stack.tenant}/users/",
            headers={**AUTH, **JSON},
            body=json.dumps({"external_id": stack.external_id, "email": "alice@example.com"}),
        )
        assert user.status == 201, user.text[:300]
        yield stack
    finally:
        if web is not None:
            web.stop()
        server.cleanup()


@contextmanager
def database_down(stack: OutageStack) -> Iterator[None]:
    """PostgreSQL stopped for the block, then started again on the same port (also on failure)."""
    stack.postgres.stop()
    try:
        yield
    finally:
        if stack.postgres.postmaster_pid() is None:
            stack.postgres.start()


def expect_api_503(response: ph.Response, what: str) -> None:
    assert response.status == 503, f"{what}: {response.status} {response.text[:300]}"
    assert response.header("Content-Type") == "application/problem+json", (what, response.header("Content-Type"))
    assert response.header("Retry-After"), f"{what}: no Retry-After"
    assert response.json()["status"] == 503, what


def expect_console_503(response: ph.Response, what: str) -> None:
    assert response.status == 503, f"{what}: {response.status} {response.text[:300]}"
    assert response.header("Content-Type", "").startswith("text/html"), (what, response.header("Content-Type"))
    assert "Traceback" not in response.text and "Server Error (500)" not in response.text, what


def expect_recovery(stack: OutageStack, checks: list[tuple[str, str, dict[str, str]]]) -> None:
    """Every check answers 200 within a bounded wait, then on every worker, with the same processes."""

    def all_ok() -> bool:
        return all(ph.http_request(stack.port, m, p, headers=h).status == 200 for m, p, h in checks)

    ph.wait_until(all_ok, timeout=20, interval=0.5, message="200 again after PostgreSQL came back")
    for _ in range(4):  # each worker, not just the first to reconnect
        for method, path, headers in checks:
            response = ph.http_request(stack.port, method, path, headers=headers)
            assert response.status == 200, (path, response.status, response.text[:300])
    assert stack.web.running(), stack.web.tail()
    assert stack.pids() == stack.workers, "gunicorn workers were restarted"
    assert "Traceback" not in stack.web.output(), stack.web.tail()


def test_database_loss_is_503_for_api_console_and_readyz_then_recovers_without_restart(outage_stack) -> None:  # type: ignore[no-untyped-def]
    stack, port = outage_stack, outage_stack.port
    cookies = ph.console_login(port, USERNAME, PASSWORD)
    console = {"Cookie": ph.cookie_header(cookies)}
    assert ph.http_request(port, "GET", "/admin/", headers=console).status == 200
    errors_before = stack.database_errors()
    login_form = f"csrfmiddlewaretoken={cookies['csrftoken']}&username={USERNAME}&password=not-checked&next=/admin/"

    with database_down(stack):
        for _ in range(2):  # both workers: each loses its persistent connection
            expect_api_503(ph.http_request(port, "GET", "/api/v1/tenants/", headers=AUTH), "API list")
            expect_api_503(
                ph.http_request(
                    port, "POST", "/api/v1/tenants/", headers={**AUTH, **JSON}, body='{"slug": "down", "name": "Down"}'
                ),
                "API create",
            )
            expect_console_503(ph.http_request(port, "GET", "/admin/", headers=console), "console index")
            expect_console_503(ph.http_request(port, "GET", "/admin/login/", headers=console), "console login page")
            form_headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"csrftoken={cookies['csrftoken']}",
            }
            expect_console_503(
                ph.http_request(port, "POST", "/admin/login/", headers=form_headers, body=login_form), "console login"
            )
            ready = ph.http_request(port, "GET", "/readyz")
            assert ready.status == 503, ready.text[:300]
            assert ph.http_request(port, "GET", "/healthz").status == 200
        assert stack.database_errors() > errors_before

    expect_recovery(stack, [("GET", "/api/v1/tenants/", AUTH), ("GET", "/readyz", {}), ("GET", "/admin/", console)])
    body = json.dumps({"slug": "outage-back", "name": "Back"})
    after = ph.http_request(port, "POST", "/api/v1/tenants/", headers={**AUTH, **JSON}, body=body)
    assert after.status == 201, after.text[:300]


def test_database_loss_is_503_for_pip_lookups_then_recovers_without_restart(outage_stack) -> None:  # type: ignore[no-untyped-def]
    stack, port = outage_stack, outage_stack.port
    bearer = {"Authorization": f"Bearer {stack.pip_key}"}
    lookup = f"/api/v1/pip/tenants/{stack.tenant}/subjects/{stack.external_id}"
    batch = json.dumps({"subjects": [{"tenant": stack.tenant, "external_id": stack.external_id}]})
    found = ph.http_request(port, "GET", lookup, headers=bearer)
    assert found.status == 200, found.text[:300]
    errors_before = stack.database_errors()

    with database_down(stack):
        for _ in range(2):
            expect_api_503(ph.http_request(port, "GET", lookup, headers=bearer), "PIP lookup")
            expect_api_503(
                ph.http_request(port, "POST", "/api/v1/pip/resolve", headers={**bearer, **JSON}, body=batch),
                "PIP batch",
            )
        assert stack.database_errors() > errors_before

    expect_recovery(stack, [("GET", lookup, bearer)])
    resolved = ph.http_request(port, "POST", "/api/v1/pip/resolve", headers={**bearer, **JSON}, body=batch)
    assert resolved.status == 200 and resolved.json()["results"][0]["found"] is True, resolved.text[:300]


# --- 3. fail-fast start-up -----------------------------------------------------------------------
BAD_CONFIGS = {
    "malformed-database-url": ("DATABASE_URL", "postgres://user:s3cret-pass@host:notaport/db"),
    "unreachable-database": ("DATABASE_URL", "postgres://user:s3cret-pass@127.0.0.1:{free_port}/db"),
    "malformed-event-bus-url": ("EVENT_BUS_URL", "nats://user:s3cret-pass@:::bad"),
    # kafka:// is supported; a SASL mechanism librdkafka could not use with a password is not
    "kafka-unsupported-sasl-mechanism": (
        "EVENT_BUS_URL",
        "kafka://user:s3cret-pass@broker:9092?security_protocol=SASL_SSL&sasl_mechanism=GSSAPI",
    ),
    "kafka-cloudevents-mode": ("KAFKA_CLOUDEVENTS_MODE", "xml"),
}
ROLES = ("web", "worker", "beat")
# The roles wait DB_STARTUP_WAIT_SECONDS for an unreachable database; the deadline only tells "exits by
# itself" from "hangs", with room for a machine that runs several times slower than a quiet one.
STARTUP_WAIT = "2"
START_DEADLINE = 60.0


QUICK_AT_ONCE = 3  # bad-URL starts running together, beside the three waiting for an unreachable database


@pytest.fixture(scope="module")
def bad_starts(django_db_setup, nats_server, tmp_path_factory) -> Iterator[dict[tuple[str, str], ph.Proc]]:  # type: ignore[no-untyped-def]
    """Every bad configuration × role, each given START_DEADLINE s (from its own start) to exit.

    In parallel: the processes that wait for an unreachable database start first, the others a few
    at a time beside them (so that a dozen interpreters importing Django do not starve each other).
    """
    from django.conf import settings

    valid_database = ph.database_url(settings.DATABASES["default"])
    workdir = tmp_path_factory.mktemp("bad-starts")
    prepared: dict[tuple[str, str], ph.Proc] = {}
    for config, (variable, value) in BAD_CONFIGS.items():
        for role in ROLES:
            metrics_dir = workdir / f"{config}-{role}-metrics"
            metrics_dir.mkdir()  # as the deployments mount it: only the variable under test is bad
            env = ph.production_env(
                database_url=valid_database,
                event_bus_url=nats_server.url,
                metrics_dir=metrics_dir,
                data_dir=workdir / "data",
                DB_STARTUP_WAIT_SECONDS=STARTUP_WAIT,
            )
            env[variable] = value.format(free_port=free_port())  # otherwise valid
            name = f"{config}-{role}"
            if role == "web":
                prepared[(config, role)] = ph.gunicorn(workdir, env, port=free_port(), workers=2, name=name)
            elif role == "worker":
                prepared[(config, role)] = ph.celery_worker(workdir, env, name=name)
            else:
                schedule = workdir / f"{name}-schedule"
                prepared[(config, role)] = ph.celery_beat(workdir, env, schedule=schedule, name=name)
    slow = [key for key in prepared if key[0] == "unreachable-database"]
    quick = [key for key in prepared if key[0] != "unreachable-database"]
    started: list[ph.Proc] = []
    try:
        for key in slow:
            started.append(prepared[key].start())
        overall = time.monotonic() + START_DEADLINE * 3
        while time.monotonic() < overall:
            running_quick = [prepared[key] for key in quick if prepared[key].process is not None]
            if quick and sum(proc.poll() is None for proc in running_quick) < QUICK_AT_ONCE:
                next_key = next((key for key in quick if prepared[key].process is None), None)
                if next_key is not None:
                    started.append(prepared[next_key].start())
                    continue
            for proc in started:
                if proc.poll() is None and proc.runtime > START_DEADLINE + 1:
                    proc.stop(timeout=5)  # over its deadline: the test reports it
            if len(started) == len(prepared) and all(proc.poll() is not None for proc in started):
                break
            time.sleep(0.05)
        yield prepared
    finally:
        for proc in started:
            proc.stop(timeout=5)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("config", list(BAD_CONFIGS))
def test_bad_configuration_stops_the_role_with_one_fatal_line(bad_starts, config: str, role: str) -> None:  # type: ignore[no-untyped-def]
    variable, _ = BAD_CONFIGS[config]
    proc = bad_starts[(config, role)]
    assert proc.process is not None, f"{role} was never started"
    assert proc.runtime <= START_DEADLINE, (
        f"{role} ran {proc.runtime:.1f} s (still running, or stopped late):\n{proc.tail()}"
    )
    code = proc.poll()
    assert code is not None and code != 0, f"exit code {code}:\n{proc.tail()}"
    output = proc.output()
    fatal = ph.fatal_lines(output)
    assert len(fatal) == 1, f"expected one FATAL line, got {len(fatal)}:\n{proc.tail()}"
    line = json.loads(fatal[0])
    assert line["level"] == "FATAL"
    assert line.get("variable") == variable, line
    assert variable in line["message"], line
    if config == "unreachable-database":
        assert f"unreachable after {STARTUP_WAIT} s" in line["message"], line  # the configured wait
    assert SECRET not in output, f"the password leaked:\n{proc.tail()}"


@pytest.mark.parametrize("scheme", ["nats", "kafka"])
def test_unreachable_event_bus_does_not_stop_web(procs, tmp_path, test_database_url, scheme: str) -> None:  # type: ignore[no-untyped-def]
    unreachable = f"{scheme}://127.0.0.1:{free_port()}"
    web, port, _ = start_web(procs, tmp_path, workers=1, database_url=test_database_url, event_bus_url=unreachable)
    assert ph.http_request(port, "GET", "/healthz").status == 200
    assert ph.http_request(port, "GET", "/readyz").status == 200  # readiness does not depend on the bus
    time.sleep(0.5)
    assert web.running(), web.tail()
    assert not ph.fatal_lines(web.output())


def test_web_starts_with_a_metrics_directory_that_does_not_exist_yet(
    procs, tmp_path, test_database_url, nats_server
) -> None:  # type: ignore[no-untyped-def]
    """gunicorn.conf.py's on_starting creates PROMETHEUS_MULTIPROC_DIR: a missing one is not a crash."""
    port = free_port()
    metrics_dir = tmp_path / "not-yet" / "metrics"
    env = ph.production_env(
        database_url=test_database_url,
        event_bus_url=nats_server.url,
        metrics_dir=metrics_dir,
        data_dir=tmp_path / "data",
    )
    web = ph.gunicorn(tmp_path, env, port=port, workers=1)
    procs.append(web.start())
    ph.wait_for_http(web, port, "/healthz", timeout=30)
    assert metrics_dir.is_dir()
    assert "Traceback" not in web.output()


# --- 5. manage.py check_dependencies -------------------------------------------------------------
def table_rows(stdout: str) -> dict[str, str]:
    """``{dependency: status}`` from the command's table."""
    rows = {}
    for line in stdout.splitlines()[1:]:
        for name in ("database", "migrations", "event bus", "broker"):
            if line.startswith(name):
                rows[name] = line[len(name) :].split()[0]
    return rows


def test_check_dependencies_all_reachable(tmp_path, test_database_url, nats_server) -> None:  # type: ignore[no-untyped-def]
    env = ph.base_env(
        IAM_ENV="development",
        IAM_DATA_DIR=str(tmp_path / "data"),
        DATABASE_URL=test_database_url,
        EVENT_BUS_URL=nats_server.url,
        CELERY_BROKER_URL="filesystem://",
        NATS_STREAM_NAME="PROC_CHECK_DEPENDENCIES",
        NATS_SUBJECT_PREFIX="proccheck",
    )
    result = ph.manage(["check_dependencies"], env, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0].split()[:2] == ["dependency", "status"], result.stdout
    assert table_rows(result.stdout) == {"database": "ok", "migrations": "ok", "event bus": "ok", "broker": "ok"}


def test_check_dependencies_reports_unreachable_bus_and_broker(tmp_path, test_database_url) -> None:  # type: ignore[no-untyped-def]
    env = ph.production_env(
        database_url=test_database_url,
        event_bus_url=f"nats://user:{SECRET}@127.0.0.1:{free_port()}",
        broker_url=f"redis://:{SECRET}@127.0.0.1:{free_port()}/0",
        data_dir=tmp_path / "data",
        NATS_CONNECT_TIMEOUT_SECONDS="1",
        NATS_PUBLISH_TIMEOUT_SECONDS="1",  # ensure_stream is bounded by connect + 2 x publish timeouts
    )
    started = time.monotonic()
    result = ph.manage(["check_dependencies"], env, timeout=60)
    assert result.returncode == 4 | 8, result.stdout + result.stderr
    assert table_rows(result.stdout) == {"database": "ok", "migrations": "ok", "event bus": "FAIL", "broker": "FAIL"}
    assert SECRET not in result.stdout + result.stderr
    assert time.monotonic() - started < 30


def test_check_dependencies_knows_kafka(tmp_path, test_database_url, kafka_server) -> None:  # type: ignore[no-untyped-def]
    """EVENT_BUS_URL=kafka://…: the event bus row checks the broker and creates the topic if absent."""
    from tests.kafka_topic import topic_partitions

    env = ph.base_env(
        IAM_ENV="development",
        IAM_DATA_DIR=str(tmp_path / "data"),
        DATABASE_URL=test_database_url,
        EVENT_BUS_URL=kafka_server.url,
        CELERY_BROKER_URL="filesystem://",
        KAFKA_TOPIC="proc.check.dependencies",
        KAFKA_TOPIC_PARTITIONS="4",
    )
    result = ph.manage(["check_dependencies"], env, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert table_rows(result.stdout) == {"database": "ok", "migrations": "ok", "event bus": "ok", "broker": "ok"}
    assert "kafka topic proc.check.dependencies ready" in result.stdout
    assert topic_partitions(kafka_server.bootstrap, "proc.check.dependencies") == 4


def test_check_dependencies_reports_an_unreachable_kafka_without_its_password(tmp_path, test_database_url) -> None:  # type: ignore[no-untyped-def]
    env = ph.production_env(
        database_url=test_database_url,
        event_bus_url=(
            f"kafka://user:{SECRET}@127.0.0.1:{free_port()}?security_protocol=SASL_PLAINTEXT&sasl_mechanism=SCRAM-SHA-512"
        ),
        data_dir=tmp_path / "data",
        KAFKA_CONNECT_TIMEOUT_SECONDS="1",
        KAFKA_PUBLISH_TIMEOUT_SECONDS="1",
    )
    result = ph.manage(["check_dependencies", "--skip", "broker"], env, timeout=60)
    assert result.returncode == 4, result.stdout + result.stderr
    assert table_rows(result.stdout)["event bus"] == "FAIL"
    assert SECRET not in result.stdout + result.stderr
