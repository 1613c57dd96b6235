"""Reads past one database, on a real PostgreSQL primary and a streaming hot standby (issue 22).

The module starts its own primary and a standby made by ``pg_basebackup -R`` from the same binaries
(``devtools/harness/replication.py``), migrates the primary, and serves the service with production
settings under gunicorn with ``DATABASE_REPLICA_URLS`` pointing at the standby (one worker: the
replicas' health is per process). Pausing the standby's replay makes lag on demand. What the tests
see: the values the API and the PIP answer, the ``/metrics`` counters of reads by target, the
replica's lag and the web's log lines. No Redis here: every PIP lookup reads a database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.harness import Postgres, free_port, wait_until
from devtools.harness.replication import Standby, replication_binaries_missing
from tests import proc_helpers as ph

USERNAME, PASSWORD = "replica-admin", "Replica-Tests-Console-Pass-41"
AUTH = {"Authorization": ph.basic_auth(USERNAME, PASSWORD)}
JSON = {"Content-Type": "application/json"}
TENANT, SUBJECT = "replica-acme", "alice"
PIP = f"/api/v1/pip/tenants/{TENANT}/subjects/{SUBJECT}"

pytestmark = pytest.mark.skipif(replication_binaries_missing() is not None, reason=str(replication_binaries_missing()))


@dataclass
class Stack:
    primary: Postgres
    standby: Standby
    env: dict[str, str]
    workdir: Path
    web: ph.Proc
    port: int
    pip_key: str
    user_url: str = ""

    def pip(self, **headers: str) -> ph.Response:
        return ph.http_request(self.port, "GET", PIP, headers={"Authorization": f"Bearer {self.pip_key}", **headers})

    def level(self, path: str = PIP, **headers: str) -> int:
        response = ph.http_request(
            self.port, "GET", path, headers={"Authorization": f"Bearer {self.pip_key}", **headers}
        )
        assert response.status == 200, response.text[:300]
        return int(response.json()["attributes"]["level"])

    def set_level(self, level: int) -> str:
        """PATCH the subject's level; the write's consistency token."""
        response = ph.http_request(
            self.port,
            "PATCH",
            self.user_url,
            headers={**AUTH, **JSON},
            body=json.dumps({"attributes": {"level": level}}),
        )
        assert response.status == 200, response.text[:300]
        token = response.header("Consistency-Token")
        assert token, "a successful write answers its Consistency-Token"
        return token

    def reads(self, target: str) -> float:
        samples = ph.parse_metrics(ph.http_request(self.port, "GET", "/metrics").text)
        return ph.sample(samples, "database_reads_total", target=target) or 0.0

    def metric(self, name: str, **labels: str) -> float | None:
        return ph.sample(ph.parse_metrics(ph.http_request(self.port, "GET", "/metrics").text), name, **labels)


def token_lsn(token: str) -> int:
    """The WAL position inside a token (the tests know its format; clients must not)."""
    return int(token.split(".")[0], 16)


def start_web(stack_env: dict[str, str], workdir: Path, name: str, **extra: str) -> tuple[ph.Proc, int]:
    port = free_port()
    metrics_dir = workdir / f"metrics-{name}"
    metrics_dir.mkdir()
    env = {**stack_env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), **extra}
    web = ph.gunicorn(workdir, env, port=port, workers=1, name=name)
    web.start()
    ph.wait_for_http(web, port, "/readyz", timeout=60)
    return web, port


@pytest.fixture(scope="module")
def stack(nats_server, tmp_path_factory) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    workdir = tmp_path_factory.mktemp("replicas")
    primary = Postgres()
    standby: Standby | None = None
    web: ph.Proc | None = None
    try:
        primary.init().start()
        url = primary.create_database("iam")
        env = ph.production_env(database_url=url, event_bus_url=nats_server.url, data_dir=workdir / "data")
        pip_key = ph.prepare_site(env, USERNAME, PASSWORD, migrate_timeout=180)
        standby = Standby(primary).init().start()
        env = {
            **env,
            "DATABASE_REPLICA_URLS": standby.database_url("iam"),
            "REPLICA_MAX_LAG_SECONDS": "3600",  # lag never skips it here: test_lag_over_the_limit... has its own web
            "REPLICA_CHECK_SECONDS": "0.2",
        }
        web, port = start_web(env, workdir, "web")
        stack = Stack(primary, standby, env, workdir, web, port, pip_key)
        for path, body in (
            ("/api/v1/tenants/", {"slug": TENANT, "name": "Acme"}),
            (f"/api/v1/tenants/{TENANT}/attribute-definitions/", {"key": "level", "type": "integer"}),
            (f"/api/v1/tenants/{TENANT}/users/", {"external_id": SUBJECT, "attributes": {"level": 1}}),
        ):
            response = ph.http_request(port, "POST", path, headers={**AUTH, **JSON}, body=json.dumps(body))
            assert response.status == 201, response.text[:300]
        stack.user_url = f"/api/v1/tenants/{TENANT}/users/{response.json()['id']}/"
        standby.wait_for(token_lsn(response.header("Consistency-Token") or "0.0"))
        yield stack
    finally:
        if web is not None:
            web.stop()
        if standby is not None:
            standby.cleanup()
        primary.cleanup()


def test_an_untokened_read_is_served_by_the_replica(stack: Stack) -> None:
    before = stack.reads("replica")
    response = stack.pip()
    assert response.status == 200 and response.json()["attributes"] == {"level": 1}
    assert response.header("Consistency-Token"), "a PIP response carries the token of the state it read"
    assert stack.reads("replica") == before + 1


def test_with_replay_paused_the_token_read_answers_the_write_and_the_untokened_one_the_replica(stack: Stack) -> None:
    made = ph.manage(
        ["create_api_key", "--name", "directory", "--scopes", "directory:read"], dict(stack.env), timeout=60
    )
    assert made.returncode == 0, made.stderr[-2000:]
    directory = {"Authorization": f"Bearer {made.stdout.strip().splitlines()[-1]}"}
    stack.standby.pause_replay()
    try:
        token = stack.set_level(2)
        assert stack.standby.replayed() < token_lsn(token)  # the replica has not seen the write
        replica_reads, primary_reads = stack.reads("replica"), stack.reads("primary")

        assert stack.level() == 1  # no token: the replica, stale within REPLICA_MAX_LAG_SECONDS
        assert stack.level(**{"Consistency-Token": token}) == 2  # never staler than the token: the primary
        assert stack.level(f"{PIP}?consistency={token}") == 2
        assert stack.level(Consistency="full") == 2
        assert stack.reads("replica") == replica_reads + 1
        assert stack.reads("primary") == primary_reads + 3

        # The REST API's GETs follow the same rules (the ORM's reads, through the router).
        api_get = ph.http_request(stack.port, "GET", stack.user_url, headers=AUTH)
        assert api_get.status == 200 and api_get.json()["attributes"] == {"level": 1}
        api_get = ph.http_request(stack.port, "GET", stack.user_url, headers={**AUTH, "Consistency-Token": token})
        assert api_get.status == 200 and api_get.json()["attributes"] == {"level": 2}

        # A search with a key (the lean door, api/users/lean.py) reads where the view would.
        search = f"/api/v1/tenants/{TENANT}/users/?q=level%20ge%202"
        found = ph.http_request(stack.port, "GET", search, headers=directory)
        assert found.status == 200 and found.json()["results"] == [], "the replica, which has not seen level 2"
        found = ph.http_request(stack.port, "GET", search, headers={**directory, "Consistency-Token": token})
        assert found.status == 200 and [user["external_id"] for user in found.json()["results"]] == [SUBJECT]
    finally:
        stack.standby.resume_replay()

    stack.standby.wait_for(token_lsn(token))
    before = stack.reads("replica")
    assert stack.level(**{"Consistency-Token": token}) == 2  # caught up: the replica serves the token read
    assert stack.reads("replica") == before + 1


def test_a_pip_answer_token_reads_at_least_as_fresh(stack: Stack) -> None:
    stack.standby.caught_up()
    first = stack.pip(Consistency="full")
    assert first.status == 200
    token = first.header("Consistency-Token")
    assert token is not None
    assert stack.level(**{"Consistency-Token": token}) == first.json()["attributes"]["level"]


def test_the_replica_lag_metric_rises_while_replay_is_paused(stack: Stack) -> None:
    stack.standby.pause_replay()
    try:
        stack.set_level(3)

        def lagging() -> bool:
            stack.pip()  # a read runs the (at most every REPLICA_CHECK_SECONDS) health check
            lag = stack.metric("database_replica_lag_seconds", replica="replica_1")
            return lag is not None and lag > 0

        wait_until(lagging, timeout=20, interval=0.3, message="database_replica_lag_seconds > 0")
        assert stack.metric("database_replica_up", replica="replica_1") == 1.0  # within REPLICA_MAX_LAG_SECONDS
    finally:
        stack.standby.resume_replay()
    stack.standby.caught_up()

    def back_to_zero() -> bool:
        stack.pip()
        return stack.metric("database_replica_lag_seconds", replica="replica_1") == 0.0

    wait_until(back_to_zero, timeout=20, interval=0.3, message="database_replica_lag_seconds back to 0")


def test_a_replica_lagging_over_the_limit_is_skipped(stack: Stack) -> None:
    web, port = start_web(stack.env, stack.workdir, "web-strict", REPLICA_MAX_LAG_SECONDS="0.5")
    try:
        stack.standby.caught_up()
        stack.standby.pause_replay()
        try:
            stack.set_level(4)
            auth = {"Authorization": f"Bearer {stack.pip_key}"}

            def from_primary() -> bool:
                response = ph.http_request(port, "GET", PIP, headers=auth)
                assert response.status == 200, response.text[:300]
                return response.json()["attributes"]["level"] == 4  # no token, yet the write: the primary

            wait_until(from_primary, timeout=20, interval=0.3, message="reads leave the lagging replica")
            samples = ph.parse_metrics(ph.http_request(port, "GET", "/metrics").text)
            assert ph.sample(samples, "database_replica_up", replica="replica_1") == 0.0
            assert (ph.sample(samples, "database_replica_skipped_total", replica="replica_1", reason="lag") or 0) >= 1
        finally:
            stack.standby.resume_replay()
    finally:
        web.stop()
    assert "database replica skipped: lag" in web.output()


def test_the_pip_cache_never_keeps_a_lagging_replicas_answer(stack: Stack, redis_url: str) -> None:
    web, port = start_web(stack.env, stack.workdir, "web-cached", REDIS_URL=redis_url)
    auth = {"Authorization": f"Bearer {stack.pip_key}"}

    def level(**headers: str) -> int:
        response = ph.http_request(port, "GET", PIP, headers={**auth, **headers})
        assert response.status == 200, response.text[:300]
        return int(response.json()["attributes"]["level"])

    try:
        stack.standby.caught_up()
        before = level()
        assert level() == before  # cached now
        stack.standby.pause_replay()
        try:
            patched = ph.http_request(  # through this web: its commit replaces the cache's tokens
                port,
                "PATCH",
                stack.user_url,
                headers={**AUTH, **JSON},
                body=json.dumps({"attributes": {"level": before + 10}}),
            )
            assert patched.status == 200, patched.text[:300]
            token = patched.header("Consistency-Token") or ""
            # The write replaced the cache's tokens; the replica has not replayed it: its answer is
            # served (no token asked for more) but not cached as the state after the write.
            assert level() == before
            assert level() == before
            assert level(**{"Consistency-Token": token}) == before + 10  # the primary, then cached
            assert level() == before + 10  # the cache never goes back to the replica's older state
        finally:
            stack.standby.resume_replay()
    finally:
        web.stop()


def test_a_replica_url_that_reaches_a_primary_is_skipped(stack: Stack) -> None:
    web, port = start_web(
        stack.env, stack.workdir, "web-no-standby", DATABASE_REPLICA_URLS=stack.primary.database_url("iam")
    )
    try:
        response = ph.http_request(port, "GET", PIP, headers={"Authorization": f"Bearer {stack.pip_key}"})
        assert response.status == 200, response.text[:300]
        samples = ph.parse_metrics(ph.http_request(port, "GET", "/metrics").text)
        assert ph.sample(samples, "database_replica_up", replica="replica_1") == 0.0
        assert ph.sample(samples, "database_reads_total", target="primary") == 1.0
    finally:
        web.stop()
    assert "database replica skipped: not_standby" in web.output()


def test_check_dependencies_reports_the_replicas(stack: Stack) -> None:
    out = ph.manage(["check_dependencies", "--skip", "event bus", "--skip", "broker"], stack.env, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    (row,) = [line for line in out.stdout.splitlines() if line.startswith("replicas ")]
    assert " ok " in row and "replica_1 ok (lag" in row, row


@pytest.mark.parametrize(
    ("path", "headers", "named"),
    [
        (PIP, {"Consistency-Token": "garbage"}, "Consistency-Token"),
        (PIP, {"Consistency-Token": "1a2b3c.0123456789abcdef"}, "Consistency-Token"),  # well-formed, forged
        (f"{PIP}?consistency=1a2b3c.0123456789abcdef", {}, "?consistency="),
        (f"/api/v1/tenants/{TENANT}/", {"Consistency-Token": "0/16B3740"}, "Consistency-Token"),
        (PIP, {"Consistency": "eventual"}, "Consistency"),
    ],
)
def test_a_forged_or_garbage_token_is_a_400_problem_naming_it(
    stack: Stack, path: str, headers: dict, named: str
) -> None:
    response = ph.http_request(
        stack.port, "GET", path, headers={"Authorization": f"Bearer {stack.pip_key}", **AUTH, **headers}
    )
    assert response.status == 400, response.text[:300]
    assert response.header("Content-Type", "").startswith("application/problem+json")
    assert named in response.json()["detail"]


def test_console_changelists_read_the_replica_and_honour_the_token_cookie(stack: Stack) -> None:
    cookies = ph.console_login(stack.port, USERNAME, PASSWORD)  # sessions: always the primary
    stack.standby.caught_up()
    stack.standby.pause_replay()
    try:
        created = ph.http_request(
            stack.port,
            "POST",
            f"/api/v1/tenants/{TENANT}/users/",
            headers={**AUTH, **JSON},
            body=json.dumps({"external_id": "bob-after-the-pause"}),
        )
        assert created.status == 201, created.text[:300]
        token = created.header("Consistency-Token") or ""

        def changelist(extra: dict[str, str]) -> str:
            page = ph.http_request(
                stack.port, "GET", "/admin/users/user/", headers={"Cookie": ph.cookie_header({**cookies, **extra})}
            )
            assert page.status == 200, page.text[:300]
            return page.text

        assert "bob-after-the-pause" not in changelist({})  # the replica's page
        # What the console's own writes set: the cookie iam_consistency (tests/test_consistency.py).
        assert "bob-after-the-pause" in changelist({"iam_consistency": token})
    finally:
        stack.standby.resume_replay()


def test_with_the_replica_stopped_reads_fall_back_to_the_primary(stack: Stack) -> None:
    stack.standby.caught_up()
    expected = stack.level(Consistency="full")
    stack.standby.stop()
    try:
        for _ in range(5):
            response = stack.pip()
            assert response.status == 200, response.text[:300]
            assert response.json()["attributes"]["level"] == expected
            api_get = ph.http_request(stack.port, "GET", stack.user_url, headers=AUTH)
            assert api_get.status == 200, api_get.text[:300]
        assert stack.metric("database_replica_up", replica="replica_1") == 0.0
        assert "database replica skipped: down" in stack.web.output()
        out = ph.manage(["check_dependencies", "--skip", "event bus", "--skip", "broker"], stack.env, timeout=60)
        assert out.returncode == 16, out.stdout + out.stderr  # the replicas' bit
        assert "replica_1 down" in out.stdout, out.stdout
    finally:
        stack.standby.start()
    stack.standby.caught_up()

    def back() -> bool:
        before = stack.reads("replica")
        stack.pip()
        return stack.reads("replica") == before + 1

    wait_until(back, timeout=20, interval=0.3, message="reads back on the restarted replica")
