"""bench/pip.py's measured runs: wrk scenarios in rounds, on a quiet host, with their CPU and Redis cost."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.lib.http import http_get, http_post, log

if TYPE_CHECKING:
    from bench.lib.web import Gunicorn
    from devtools.harness import Postgres
    from devtools.harness import RedisServer as Redis

LUA_DIR = Path(__file__).resolve().parent.parent / "lua"
TENANT = "load-0"  # generate_demo_data --tenants 1 names its tenant <prefix>-0
SUBJECT_PATH = f"/api/v1/pip/tenants/{TENANT}/subjects/"


def external_id(index: int) -> str:
    return f"user-{index:07d}"


def lua_script(kind: str, key: str, users: int, **extra: str) -> str:
    """bench/lua/common.lua + bench/lua/<kind>.lua, with ``__NAME__`` placeholders filled in."""
    text = (LUA_DIR / "common.lua").read_text() + (LUA_DIR / f"{kind}.lua").read_text()
    values = {"KEY": key, "USERS": str(users), "PREFIX": SUBJECT_PATH, "TENANT": TENANT, **extra}
    for name, value in values.items():
        text = text.replace(f"__{name}__", value)
    return text


class Runs:
    """Mixed into bench/pip.py's ``Bench`` (``args``, ``wrk``, ``cpu``, ``results``, ``redis``, ``baseline_server``)."""

    # data -------------------------------------------------------------------------------------------
    def load(self, pg: Postgres, env: dict[str, str]) -> str:
        log("migrating")
        self.manage(env, "migrate", "--noinput")
        with pg.connect("iam") as conn:
            row = conn.execute(
                "SELECT count(u.id) FROM tenants_tenant t LEFT JOIN users_user u ON u.tenant_id = t.id "
                "WHERE t.slug = %s GROUP BY t.id",
                [TENANT],
            ).fetchone()
        have = row[0] if row else 0
        users, attributes = self.args.users, self.args.attributes
        if have < users:
            log(f"loading {users:,} users x {attributes} attributes (generate_demo_data; about 1 min per 100k)")
            started = time.monotonic()
            out = self.manage(
                env, "generate_demo_data", "--tenants", "1", "--users", str(users), "--attributes", str(attributes)
            )
            self.results["load_seconds"] = round(time.monotonic() - started, 1)
            log(f"loaded in {self.results['load_seconds']} s: {out.strip()}")
        elif have > users:
            raise SystemExit(f"{TENANT} already has {have} users in --pgdata; use --users {have} or a new --pgdata")
        with pg.connect("iam") as conn:
            conn.execute("VACUUM ANALYZE")
            self.results["database"] = {
                "server_version": conn.execute("SHOW server_version").fetchone()[0],
                "users_user_bytes": conn.execute("SELECT pg_total_relation_size('users_user')").fetchone()[0],
                "users": conn.execute("SELECT count(*) FROM users_user").fetchone()[0],
            }
        with pg.connect("iam") as conn:
            self.tenant_id = str(conn.execute("SELECT id FROM tenants_tenant WHERE slug = %s", [TENANT]).fetchone()[0])
        # The key with no release policy: every attribute, PII included (issue 19's "no policy").
        key = self.manage(
            env, "create_api_key", "--name", "bench-pip", "--scopes", "pip:read,pii:read", "--tenants", TENANT
        )
        # A key with a release policy of --policy-keys attributes and no pii:read: the lookups that cut
        # the subject's attributes to the policy (decoded and re-encoded once per uncached lookup).
        listed = ",".join(f"attr_{index:02d}" for index in range(self.args.policy_keys))
        policy_key = self.manage(
            env, "create_api_key", "--name", "bench-pip-policy", "--scopes", "pip:read", "--tenants", TENANT,
            "--attributes", listed,
        )  # fmt: skip
        self.policy_key = policy_key.strip().splitlines()[-1]
        return key.strip().splitlines()[-1]

    def etags(self, pg: Postgres, sample: int = 2000) -> dict[int, str]:
        """The current ETags of a sample of subjects, by user index (an ETag names its subject)."""
        with pg.connect("iam") as conn:
            rows = conn.execute(
                "SELECT u.external_id, u.id::text, u.version, t.version, t.schema_version FROM users_user u "
                "JOIN tenants_tenant t ON t.id = u.tenant_id WHERE t.slug = %s AND u.external_id LIKE 'user-%%' "
                "ORDER BY u.external_id LIMIT %s",
                [TENANT, sample],
            ).fetchall()
        return {int(ext.removeprefix("user-")): f'"{uid}.{uver}.{tver}.{sver}"' for ext, uid, uver, tver, sver in rows}

    # scenarios --------------------------------------------------------------------------------------
    def scenario(self, name: str, stack: str, kind: str, server: Gunicorn, key: str, round_: int, **extra: str) -> dict:
        script = lua_script(kind, key, self.args.users, **extra)
        waited, others = self.wait_quiet()
        before_redis = self.redis_stats(self.redis) if self.redis is not None else None
        result = self.wrk.run(f"{stack}-{name}", script, server.port, self.args.duration, self.cpu)
        result.update({"name": name, "stack": stack, "round": round_, "quiet_wait": [waited, others]})
        per_request = (result["cpu"] or {}).get("cpu_ms_per_request")
        if per_request is not None:  # "web": the workers of the server that answered
            per_request["web"] = per_request.get("baseline" if kind == "baseline" else "gunicorn", 0)
        if kind == "batch":
            result["subjects_per_second"] = round(result["rps"] * self.args.batch, 1)
        self.results["runs"].append(result)
        if self.redis is not None and before_redis is not None:
            after_redis = self.redis_stats(self.redis)
            misses = after_redis["keyspace_misses"] - before_redis["keyspace_misses"]
            result["redis_misses_per_request"] = round(misses / max(1, result["requests"]), 4)
            commands = after_redis["total_commands_processed"] - before_redis["total_commands_processed"]
            result["redis_commands_per_request"] = round(commands / max(1, result["requests"]), 2)
            # Socket reads by the server: a pipeline arrives in one, so this counts round trips.
            reads = after_redis["total_reads_processed"] - before_redis["total_reads_processed"]
            result["redis_round_trips_per_request"] = round(reads / max(1, result["requests"]), 2)
        errors = f"  errors {result['errors']}" if result["errors"] else ""
        cpu = result["cpu"] or {}
        log(
            f"{stack:>5} #{round_} {name:<26} {result['rps']:>8,.0f} req/s  p50 {result['p50_ms']:5.1f} ms  "
            f"p99 {result['p99_ms']:6.1f} ms  cpu: bench {cpu.get('ours_cores', 0):.2f}, "
            f"others {cpu.get('others_cores', 0):.2f} cores{errors}"
        )
        return result

    def wait_quiet(self) -> tuple[float, float]:
        """Wait (up to --quiet-wait s) until processes outside the benchmark use < --quiet-cores cores.

        Returns the seconds waited and the other processes' load when the run started.
        """
        started = time.monotonic()
        while True:
            before = self.cpu.snapshot()
            time.sleep(1)
            others = self.cpu.since(before)["others_cores"]
            waited = time.monotonic() - started
            if others <= self.args.quiet_cores or waited >= self.args.quiet_wait:
                if waited > 2:
                    log(f"waited {waited:.0f} s for a quieter host (others now use {others:.2f} cores)")
                return round(waited, 1), others

    def rounds(self, stack: str, server: Gunicorn, key: str, scenarios: list[tuple[str, str, dict]]) -> None:
        """Each round runs the baseline, then every scenario: a ratio compares neighbours in time.

        A run during which other processes used more than --disturbed-cores is run again (at most
        --retries times); every attempt is kept in the JSON, the last one counts.
        """
        for round_ in range(1, self.args.rounds + 1):
            for name, kind, extra in [("baseline", "baseline", {}), *scenarios]:
                target = self.baseline_server if kind == "baseline" else server
                for attempt in range(self.args.retries + 1):
                    result = self.scenario(name, stack, kind, target, key, round_, **extra)
                    others = (result["cpu"] or {}).get("others_cores", 0)
                    result["disturbed"] = others > self.args.disturbed_cores
                    if not result["disturbed"]:
                        break
                    if attempt < self.args.retries:
                        log(f"  other processes used {others:.2f} cores during that run: running it again")
                result["counted"] = True

    def warm_up(self, server: Gunicorn, key: str) -> None:
        """Every worker imports, connects and fills its caches before anything is measured."""
        seconds = max(2.0, min(5.0, self.args.duration / 3))
        for kind in ("baseline", "ceiling", "single"):
            port = self.baseline_server.port if kind == "baseline" else server.port
            self.wrk.run(f"warmup-{kind}", lua_script(kind, key, self.args.users), port, seconds)

    def check(self, server: Gunicorn, key: str) -> None:
        """Each scenario's request answers what the scenario claims to measure."""
        auth = {"Authorization": f"Bearer {key}"}
        status, _, body = http_get(self.baseline_server.port, "/bench/baseline")
        assert status == 200 and json.loads(body) == {"ok": True}, (status, body)
        status, _, body = http_get(server.port, "/bench/ceiling", auth)
        assert status == 200 and json.loads(body) == {"ok": True}, (status, body)
        last = external_id(self.args.users - 1)
        status, headers, body = http_get(server.port, SUBJECT_PATH + last, auth)
        assert status == 200 and json.loads(body)["external_id"] == last, (status, body)
        assert len(json.loads(body)["attributes"]) == self.args.attributes, body
        status, headers, _ = http_get(server.port, SUBJECT_PATH + external_id(0), auth)
        assert headers["ETag"] == self.etag_of(0), headers
        status, _, _ = http_get(server.port, SUBJECT_PATH + external_id(0), {**auth, "If-None-Match": self.etag_of(0)})
        assert status == 304, status
        by_id = f"/api/v1/pip/tenants/{self.tenant_id}/subjects/{last}"
        status, headers, body = http_get(server.port, by_id, auth)
        assert status == 200 and json.loads(body)["external_id"] == last, (status, body)
        policy = {"Authorization": f"Bearer {self.policy_key}"}
        status, headers, body = http_get(server.port, SUBJECT_PATH + last, policy)
        expected = min(self.args.policy_keys, self.args.attributes)
        assert status == 200 and len(json.loads(body)["attributes"]) == expected, (status, body)
        assert headers["ETag"].rstrip('"').rsplit(".", 1)[-1].startswith("r"), headers  # the policy's own ETag
        status, _, _ = http_get(server.port, SUBJECT_PATH + "nobody", auth)
        assert status == 404, status
        subjects = [{"tenant": TENANT, "external_id": external_id(i)} for i in range(self.args.batch)]
        status, body = http_post(server.port, "/api/v1/pip/resolve", json.dumps({"subjects": subjects}).encode(), auth)
        results = json.loads(body)["results"]
        assert status == 200 and len(results) == self.args.batch and all(r["found"] for r in results), status

    def warm_cache(self, server: Gunicorn, key: str, redis: Redis, policy: bool = False) -> dict:
        """Request every subject in order until each has a cache entry (or 15 minutes have passed).

        ``policy``: the entries of the policy key (their names end in the policy's fingerprint, those
        of the key without a policy in ``:``).
        """
        match = "*pip:e3:*:r*" if policy else "*pip:e3:*:"
        log(f"warming the PIP cache with all {self.args.users:,} subjects" + (" (policy key)" if policy else ""))
        started = time.monotonic()
        script = lua_script("warm", key, self.args.users, THREADS=str(self.args.threads))
        client = redis.client()
        warm = self.wrk.start("warm-cache", script, server.port, 900)
        # Two keys per subject (its token and its entry), so count the entries once there can be enough.
        entries = 0
        try:
            while warm.poll() is None and entries < self.args.users:
                time.sleep(1)
                if client.dbsize() >= (3 if policy else 2) * self.args.users:
                    entries = sum(1 for _ in client.scan_iter(match=match, count=10000))
        finally:
            if warm.poll() is None:
                warm.send_signal(signal.SIGINT)
            try:
                warm.wait(30)
            except subprocess.TimeoutExpired:
                warm.kill()
                warm.wait(5)
        entries = sum(1 for _ in client.scan_iter(match=match, count=10000))
        info = {"seconds": round(time.monotonic() - started, 1), "entries": entries, "users": self.args.users}
        log(f"cache warmed in {info['seconds']} s: {entries:,} entries for {self.args.users:,} users")
        return info

    def warm_near(self, server: Gunicorn, key: str, redis: Redis, **extra: str) -> dict:
        """Run the single lookup until fewer than 1 request in 20 reaches Redis (or
        ``--near-warm-seconds`` have passed): every worker's near cache (ADR 0011) then holds the subjects, as the hot runs assume.
        Each worker remembers a subject the first time it answers it from a fresh Redis entry, and
        random subjects reach the workers at random, so this takes several passes over the users."""
        started = time.monotonic()
        script = lua_script("single", key, self.args.users, **extra)
        trips = 1.0
        while trips >= 0.05 and time.monotonic() - started < self.args.near_warm_seconds:
            before = redis.client().info("stats")["total_reads_processed"]
            result = self.wrk.run("warm-near", script, server.port, 5)
            reads = redis.client().info("stats")["total_reads_processed"] - before
            trips = reads / max(1, result["requests"])
        rss = [_rss_mb(pid) for pid in server.worker_pids()]
        info = {"seconds": round(time.monotonic() - started, 1), "round_trips_per_request": round(trips, 3)}
        info["worker_rss_mb"] = rss
        log(f"near caches warm in {info['seconds']} s: {trips:.3f} round trips per request, workers' RSS {rss} MB")
        return info

    def near_writes(self, server: Gunicorn, key: str, redis: Redis) -> dict:
        """What the near cache costs a write: the wait for every worker's acknowledgement, idle and
        under the cached lookup's full load (bench/lib/near_writes.py)."""
        from bench.lib.near_writes import publish_waits

        script = lua_script("single", key, self.args.users)
        idle = publish_waits(redis.url, 300)
        loaded = publish_waits(redis.url, 300, lambda: self.wrk.run("near-writes", script, server.port, 8))
        log(f"a write's wait for the workers' acknowledgements: idle {idle}, under load {loaded}")
        return {"idle": idle, "under_load": loaded}

    def redis_stats(self, redis: Redis) -> dict[str, int]:
        stats = redis.client().info("stats")
        names = ("keyspace_hits", "keyspace_misses", "total_commands_processed", "total_reads_processed")
        return {k: int(stats.get(k, 0)) for k in names}


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0
