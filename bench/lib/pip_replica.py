"""``bench/pip.py --replica``: PIP lookups on a streaming replica, with and without consistency tokens.

One primary (TCP on 127.0.0.1, the server's default settings) and one hot standby made from it with
``pg_basebackup -R`` (``devtools/harness/replication.py``), on the same machine; the app under
gunicorn with ``DATABASE_REPLICA_URLS``. In rounds, side by side:

* **quiet**: single lookups on the replica without a token; with a token the replica has replayed
  (target: at most 1.1x the untokened read's CPU per request, web workers and both servers); and with
  ``Consistency: full`` (the primary);
* with ``redis-server`` on PATH, ``REDIS_URL`` is set (keys held and revoked through Redis, as in
  production) with ``PIP_CACHE_SECONDS=0`` (no PIP entry kept: every lookup still reads a database);
* **under writes**: the same untokened replica read and the primary read while a writer changes
  ``--write-rate`` users a second on the primary (SQL ``UPDATE``s of users' attributes straight to
  the primary: the load is the primary's and the replication's, not the web workers').

Every scenario checks where its reads went (``database_reads_total{target}`` of the web's /metrics).
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bench.lib.http import http_get, log
from bench.lib.pip_runs import SUBJECT_PATH, TENANT, external_id, lua_script
from devtools.harness import Postgres, RedisServer, redis_server_binary
from devtools.harness.replication import Standby

if TYPE_CHECKING:
    from bench.lib.web import Gunicorn

TOKEN_RATIO_LIMIT = 1.1  # a token read the replica can serve: at most 1.1x an untokened replica read


class Writer(threading.Thread):
    """``rate`` user updates a second on the primary, paced, until stopped; counts what it did."""

    def __init__(self, url: str, users: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.url, self.users, self.rate = url, users, rate
        self.stopping = threading.Event()
        self.count = 0
        self.seconds = 0.0

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            tenant = conn.execute("SELECT id FROM tenants_tenant WHERE slug = %s", [TENANT]).fetchone()[0]  # type: ignore[index]  # the loaded tenant
            started = next_at = time.monotonic()
            while not self.stopping.is_set():
                conn.execute(
                    "UPDATE users_user SET attributes = attributes || jsonb_build_object('written', %s::int), "
                    "version = version + 1 WHERE tenant_id = %s AND external_id = %s",
                    [self.count, tenant, external_id(random.randrange(self.users))],
                )
                self.count += 1
                next_at += 1 / self.rate
                self.stopping.wait(max(0.0, next_at - time.monotonic()))
            self.seconds = time.monotonic() - started

    def stop(self) -> dict:
        self.stopping.set()
        self.join(30)
        return {"updates": self.count, "seconds": round(self.seconds, 1), "rate": round(self.count / self.seconds, 1)}


class ReplicaRuns:
    """Mixed into bench/pip.py's ``Bench`` (its ``load``, ``scenario``, ``start_gunicorn``, ``wrk``)."""

    def run_replica(self) -> dict:
        args = self.args  # type: ignore[attr-defined]
        self.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        log("PostgreSQL primary (TCP, for the standby to stream from) and a hot standby, same machine")
        primary = Postgres(host="127.0.0.1", settings={})
        self.started.append(primary)  # type: ignore[attr-defined]
        primary.init().start()
        url = primary.create_database("iam")
        self.cpu.groups["postgres"] = primary.proc.pid  # type: ignore[attr-defined, union-attr]
        env = self.base_env(url, "memory://")  # type: ignore[attr-defined]
        key = self.load(primary, env)  # type: ignore[attr-defined]
        standby = Standby(primary, settings={})
        self.started.append(standby)  # type: ignore[attr-defined]
        standby.init().start()
        standby.caught_up(timeout=300)
        self.cpu.groups["standby"] = standby.proc.pid  # type: ignore[attr-defined, union-attr]
        replica_env = {**env, "DATABASE_REPLICA_URLS": standby.database_url("iam"), "REPLICA_MAX_LAG_SECONDS": "60"}
        if redis_server_binary():
            # Production's shape: keys held and their revocation checked through Redis (without it a
            # replica read checks the key on the primary). PIP_CACHE_SECONDS=0: no entry is kept,
            # every lookup reads a database.
            redis = RedisServer(self.workdir / "redis")  # type: ignore[attr-defined]
            self.started.append(redis)  # type: ignore[attr-defined]
            redis.start()
            replica_env.update({"REDIS_URL": redis.url, "PIP_CACHE_SECONDS": "0"})
        self.results["redis"] = "REDIS_URL" in replica_env  # type: ignore[attr-defined]
        log(
            f"gunicorn, {args.workers} sync workers, DATABASE_REPLICA_URLS set, REDIS_URL: {'REDIS_URL' in replica_env}"
        )
        server = self.start_gunicorn(replica_env, "replica")  # type: ignore[attr-defined]
        token = self.replayed_token(server, key, standby)
        for kind, extra in (("single", {}), ("header", {"HEADER": "Consistency-Token", "VALUE": token})):
            self.wrk.run(f"warmup-{kind}", lua_script(kind, key, args.users, **extra), server.port, 3)  # type: ignore[attr-defined]
        quiet = [
            ("replica, no token", "single", {}, "replica"),
            ("replica, replayed token", "header", {"HEADER": "Consistency-Token", "VALUE": token}, "replica"),
            ("primary (Consistency: full)", "header", {"HEADER": "Consistency", "VALUE": "full"}, "primary"),
        ]
        self.replica_rounds("quiet", server, key, quiet)
        writer = Writer(url, args.users, args.write_rate)
        writer.start()
        try:
            loaded = [
                (f"{name}, {args.write_rate:g} writes a second", kind, extra, target)
                for name, kind, extra, target in quiet
            ]
            self.replica_rounds("writes", server, key, [loaded[0], loaded[2]])
        finally:
            self.results["writes"] = writer.stop()  # type: ignore[attr-defined]
        self.stop(server)  # type: ignore[attr-defined]
        self.summarize_replica()
        return self.results  # type: ignore[attr-defined, no-any-return]

    def replayed_token(self, server: Gunicorn, key: str, standby: Standby) -> str:
        """A token from a lookup read on the primary, once the standby has replayed past it."""
        auth = {"Authorization": f"Bearer {key}"}
        status, headers, _ = http_get(server.port, SUBJECT_PATH + external_id(0), {**auth, "Consistency": "full"})
        assert status == 200, status
        token = headers["Consistency-Token"]
        standby.wait_for(int(token.split(".")[0], 16))
        status, _, _ = http_get(server.port, SUBJECT_PATH + external_id(0), {**auth, "Consistency-Token": token})
        assert status == 200, status
        return token

    def reads(self, server: Gunicorn) -> dict[str, float]:
        from tests.proc_helpers import parse_metrics, sample

        samples = parse_metrics(http_get(server.port, "/metrics")[2].decode())
        return {
            target: sample(samples, "database_reads_total", target=target) or 0.0 for target in ("primary", "replica")
        }

    def replica_rounds(
        self, stack: str, server: Gunicorn, key: str, scenarios: list[tuple[str, str, dict, str]]
    ) -> None:
        for round_ in range(1, self.args.rounds + 1):  # type: ignore[attr-defined]
            for name, kind, extra, target in scenarios:
                before = self.reads(server)
                result = self.scenario(name, stack, kind, server, key, round_, **extra)  # type: ignore[attr-defined]
                after = self.reads(server)
                served = {where: after[where] - before[where] for where in after}
                result["reads_by_target"] = served
                result["target"] = target
                result["counted"] = True
                if served[target] < 0.99 * result["requests"]:
                    raise AssertionError(f"{name}: reads by target {served}, expected {target} for each request")

    def summarize_replica(self) -> None:
        runs = [r for r in self.results["runs"] if r.get("counted")]  # type: ignore[attr-defined]
        groups: dict[tuple[str, str], list[dict]] = {}
        for r in runs:
            groups.setdefault((r["stack"], r["name"]), []).append(r)
        scenarios = []
        for (stack, name), group in groups.items():
            scenarios.append(
                {
                    "stack": stack,
                    "name": name,
                    "rounds": len(group),
                    "rps": round(statistics.median(r["rps"] for r in group), 1),
                    "p50_ms": round(statistics.median(r["p50_ms"] for r in group), 2),
                    "p99_ms": round(statistics.median(r["p99_ms"] for r in group), 2),
                    "rps_min_max": [min(r["rps"] for r in group), max(r["rps"] for r in group)],
                    "cpu_ms_per_request": round(statistics.median(serving_ms(r) for r in group), 3),
                }
            )
        self.results["scenarios"] = scenarios  # type: ignore[attr-defined]
        # The cost of a request: the CPU the web workers and both PostgreSQL servers spent on it (on a
        # shared host, less disturbed by the others than req/s). Per round, side by side: the token
        # read's cost over the untokened replica read's, then the median.
        by_round: dict[int, dict[str, float]] = {}
        for r in runs:
            if r["stack"] == "quiet":
                by_round.setdefault(r["round"], {})[r["name"]] = serving_ms(r)
        ratios = [ms["replica, replayed token"] / ms["replica, no token"] for ms in by_round.values()]
        cost = round(statistics.median(ratios), 3)
        self.results["targets"] = {  # type: ignore[attr-defined]
            "token_read_cost_ratio": {
                "value": cost,
                "limit": TOKEN_RATIO_LIMIT,
                "met": cost <= TOKEN_RATIO_LIMIT,
                "per_round": [round(x, 3) for x in ratios],
            }
        }


def serving_ms(run: dict) -> float:
    """CPU milliseconds per request of the web workers, the primary and the standby."""
    per_request = (run.get("cpu") or {}).get("cpu_ms_per_request") or {}
    return float(sum(per_request.get(group, 0.0) for group in ("gunicorn", "postgres", "standby")))


def print_replica_table(results: dict) -> None:
    print(f"\n{'stack':<7} {'scenario':<50} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'cpu ms':>7}  min..max req/s")
    for s in results["scenarios"]:
        low, high = s["rps_min_max"]
        print(
            f"{s['stack']:<7} {s['name']:<50} {s['rps']:>8,.0f} {s['p50_ms']:>7.1f} {s['p99_ms']:>7.1f} "
            f"{s['cpu_ms_per_request']:>7.2f}  {low:,.0f}..{high:,.0f}"
        )
    target = results["targets"]["token_read_cost_ratio"]
    print(
        f"\ntoken read / untokened replica read, CPU per request: {target['value']}x (limit {target['limit']}x, "
        f"{'met' if target['met'] else 'NOT met'}; per round {target['per_round']})"
    )
    print(f"writer during the 'writes' runs: {results['writes']}")
