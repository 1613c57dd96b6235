"""Benchmark of the Policy Information Point against the cheapest authenticated DRF view (not a test).

    .venv/bin/python bench/pip.py [--users 100000] [--duration 15] [--connections 32] [--rounds 3]
                                  [--pgdata DIR] [--profile db,redis]
    .venv/bin/python bench/pip.py --replica [--write-rate 200] …   (bench/lib/pip_replica.py)

Starts its own PostgreSQL (the pgserver wheel's binaries; ``--pgdata`` keeps and reuses its data) and,
when ``redis-server`` is on PATH, its own Redis on a free port (``devtools.harness``: nothing it starts
outlives it, even when it is killed); migrates; loads ``--users`` users x 10
attributes into the tenant ``load-0`` with ``manage.py generate_demo_data``; creates a ``pip:read``
key with ``manage.py create_api_key`` (``pii:read``, no attribute list: no release policy) and a second
key with a release policy of ``--policy-keys`` attributes; then serves the app with gunicorn in production mode
(``iam_project/gunicorn.conf.py``, ``--workers`` sync workers) twice, identical but for ``REDIS_URL``:

* stack **db** (no ``REDIS_URL``: nothing is cached, every lookup reads PostgreSQL): ceiling, single
  lookup (uncached), 304 revalidation, batch of 50, then the OPA bundle (build time, RSS growth of
  the serving worker from /proc, and in a separate process with tracemalloc);
* stack **redis** (``REDIS_URL`` set: PIP cache and API-key cache): every subject's cache entry is
  warmed first, then ceiling, single lookup (cached), 304 revalidation, and the cached lookup with
  the tenant's id instead of its slug in the path.

Every process runs with ``DJANGO_SETTINGS_MODULE=bench.ceiling_settings`` (``--settings`` to layer a
candidate fix on it), which adds ``/bench/ceiling`` (a ``ScopedView`` + ``APIView`` returning
``{"ok": true}`` under ``pip:read``) to the app's URLs: the ceiling has the same middleware, Bearer-key
authentication, throttle and gunicorn config. Load comes from ``wrk`` on 127.0.0.1 (Lua scripts pick
a random subject among all users per request; bench/lua/). Each of ``--rounds`` rounds runs the ceiling then
every scenario; ratios are to the same round's ceiling, and the table shows medians over rounds.

The host may be shared: before each run the script waits (at most ``--quiet-wait`` s) until other
processes use under ``--quiet-cores``, measures the CPU every group of processes used during the run
(gunicorn, PostgreSQL, Redis, wrk, others), and runs again (``--retries``) a run that others
disturbed. Prints a table and writes ``bench/results/pip-<timestamp>.json`` (git-ignored);
``--profile`` adds py-spy profiles of the workers (``.folded`` files next to it).

The per-principal throttle stays on, with ``API_THROTTLE_RATE`` raised (default ``1000000/s``): the
default 6000/min would answer 429 after 100 requests a second from the one key. ``PIP_CACHE_SECONDS``
is an hour on the redis stack so that entries do not expire while the runs go on.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.lib.http import log  # noqa: E402 - after the repository is on the path
from bench.lib.pip_bundle import RESULTS_DIR, BundleAndProfile  # noqa: E402
from bench.lib.pip_replica import ReplicaRuns, print_replica_table  # noqa: E402
from bench.lib.pip_report import Evaluate, environment, print_table  # noqa: E402
from bench.lib.pip_runs import Runs  # noqa: E402
from bench.lib.web import Gunicorn  # noqa: E402
from devtools.harness import Postgres, RedisServer, free_port, redis_server_binary  # noqa: E402
from devtools.harness.load import CpuMeter, Wrk  # noqa: E402
from devtools.harness.roles import inherited_env, manage_output  # noqa: E402


class Bench(Runs, BundleAndProfile, Evaluate, ReplicaRuns):
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="iam-bench-pip-"))
        self.started: list = []
        self.results: dict = {
            "benchmark": "pip",
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "parameters": {k: v for k, v in vars(args).items() if k not in ("pgdata",) and not k.startswith("_")},
            "runs": [],
            "scenarios": [],
            "skipped": [],
        }
        self.wrk = Wrk(self.workdir, args.threads, args.connections)
        self.cpu = CpuMeter()
        self.redis: RedisServer | None = None

    # environment ------------------------------------------------------------------------------------
    def base_env(self, database_url: str, broker: str) -> dict[str, str]:
        env = inherited_env(
            drop_prefixes=("DJANGO_", "IAM_", "GUNICORN_", "REDIS_", "CELERY_", "PROMETHEUS_"),
            drop=("DATABASE_URL", "EVENT_BUS_URL", "SECRET_KEY", "ALLOWED_HOSTS", "DEBUG", "PORT"),
            IAM_ENV="production",
            DJANGO_SETTINGS_MODULE=self.args.settings,
            PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
            SECRET_KEY=secrets.token_urlsafe(45)[:60],
            ALLOWED_HOSTS="127.0.0.1,localhost",
            SECURE_SSL_REDIRECT="false",
            DATABASE_URL=database_url,
            EVENT_BUS_URL=f"nats://127.0.0.1:{free_port()}",  # unreachable: the web role never waits on it
            CELERY_BROKER_URL=broker,
            LOG_LEVEL="WARNING",
            API_THROTTLE_RATE=self.args.throttle_rate,
            PIP_THROTTLE_RATE=self.args.throttle_rate,
            XDG_RUNTIME_DIR=os.environ.get("XDG_RUNTIME_DIR", str(self.workdir)),
        )
        return {**env, "BENCH_NO_THROTTLE": "1"} if self.args.no_throttle else env

    def manage(self, env: dict[str, str], *args: str, timeout: float = 3600) -> str:
        return manage_output(env, *args, timeout=timeout)

    def start_gunicorn(self, env: dict[str, str], name: str) -> Gunicorn:
        server = Gunicorn(env, self.args.workers, self.workdir / f"gunicorn-{name}.log")
        self.started.append(server)
        self.cpu.groups["gunicorn"] = server.process.pid
        return server

    def stop(self, server: object) -> None:
        if server in self.started:
            self.started.remove(server)
        server.stop()  # type: ignore[attr-defined]

    # run ------------------------------------------------------------------------------------------------
    def run(self) -> dict:
        args = self.args
        self.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        log(f"PostgreSQL (the pgserver wheel's binaries) in {args.pgdata or 'a temporary directory'}")
        # As pgserver serves it: the unix socket only, the server's default settings (fsync on).
        pg = Postgres(host="", settings={}, data_dir=Path(args.pgdata).resolve() if args.pgdata else None)
        self.started.append(pg)
        pg.init().start()
        database_url = pg.create_database("iam")
        self.cpu.groups["postgres"] = pg.proc.pid
        redis: RedisServer | None = None
        if redis_server_binary():
            redis = RedisServer(self.workdir / "redis")
            self.started.append(redis)
            redis.start()
            self.cpu.groups["redis"] = redis.proc.pid
        else:
            reason = "redis-server is not on PATH (apt-get install redis-server): no shared cache to measure"
            self.results["skipped"] += [{"name": n, "reason": reason} for n in ("ceiling (redis)", "hot", "304 hot")]
            log(f"cached runs skipped: {reason}")
        broker = redis.url if redis else "memory://"
        env_db = self.base_env(database_url, broker)
        key = self.load(pg, env_db)
        etags = self.etags(pg)
        self.etag_of = etags.__getitem__
        reval = {"ETAGS": ",".join(f"[{i}]='{e}'" for i, e in etags.items()), "INDEXES": ",".join(map(str, etags))}
        self.results["etags"] = {"revalidated_subjects": len(etags)}
        log(f"baseline: a minimal DRF APIView in its own app, gunicorn with {args.workers} sync workers")
        env_baseline = {**env_db, "DJANGO_SETTINGS_MODULE": "bench.baseline_settings"}
        self.baseline_server = Gunicorn(
            env_baseline, args.workers, self.workdir / "gunicorn-baseline.log", "/bench/baseline"
        )
        self.started.append(self.baseline_server)
        self.cpu.groups["baseline"] = self.baseline_server.process.pid

        # stack db: nothing cached -------------------------------------------------------------------
        if "db" in args.stacks:
            self.run_db(env_db, key, reval)
        if redis is not None and "redis" in args.stacks:
            # Entries live an hour so that the hot runs stay hot however long warming the cache takes.
            env_redis = {**env_db, "REDIS_URL": redis.url, "PIP_CACHE_SECONDS": str(self.args.pip_cache_seconds)}
            # Every subject for both keys in each worker's near cache: the "cached" runs are warm in
            # every layer (the workers' RSS is reported with the warming).
            env_redis["PIP_NEAR_CACHE_ENTRIES"] = str(max(50_000, 2 * args.users + 1_000))
            self.run_redis(env_redis, key, reval, redis)
        self.results["environment"] = environment(self.wrk.version, redis)
        self.evaluate()
        return self.results

    def run_db(self, env_db: dict[str, str], key: str, reval: dict[str, str]) -> None:
        args = self.args
        log(f"gunicorn, {args.workers} sync workers, no REDIS_URL")
        server = self.start_gunicorn(env_db, "db")
        self.check(server, key)
        self.warm_up(server, key)
        scenarios = [
            ("cheapest authenticated view", "ceiling", {}),
            ("single, uncached", "single", {}),
            ("304 revalidation", "revalidate", reval),
            (f"batch of {args.batch}", "batch", {"BATCH": str(args.batch)}),
            (f"single, uncached, {args.policy_keys}-key policy", "single", {"KEY": self.policy_key}),
        ]
        self.rounds("db", server, key, scenarios)
        if not args.skip_bundle:
            self.results["bundle"] = self.bundle(server, key, env_db)
        if "db" in args.profile:
            self.results["profile_db_single"] = self.profile(server, key, "single", "db")
            self.results["profile_db_ceiling"] = self.profile(server, key, "ceiling", "db")
            self.results["profile_db_batch"] = self.profile(server, key, "batch", "db")
        self.stop(server)

    def run_redis(self, env_redis: dict[str, str], key: str, reval: dict[str, str], redis: RedisServer) -> None:
        args = self.args
        log(f"gunicorn, {args.workers} sync workers, REDIS_URL set")
        server = self.start_gunicorn(env_redis, "redis")
        self.check(server, key)
        self.warm_up(server, key)
        self.results["cache_warm"] = self.warm_cache(server, key, redis)
        self.results["cache_warm_policy"] = self.warm_cache(server, self.policy_key, redis, policy=True)
        by_id = {"PREFIX": f"/api/v1/pip/tenants/{self.tenant_id}/subjects/"}
        if env_redis.get("PIP_NEAR_CACHE", "true") == "true" and args.near_warm_seconds > 0:
            self.results["near_warm"] = self.warm_near(server, key, redis)
            self.results["near_warm_policy"] = self.warm_near(server, self.policy_key, redis)
        self.redis = redis
        scenarios = [
            ("cheapest authenticated view", "ceiling", {}),
            ("single, cached", "single", {}),
            ("304 revalidation", "revalidate", reval),
            # The same lookup with the tenant's id in the path: no slug -> id round trip to Redis.
            ("single, cached, tenant id", "single", by_id),
            (f"single, cached, {args.policy_keys}-key policy", "single", {"KEY": self.policy_key}),
        ]
        self.rounds("redis", server, key, scenarios)
        if "near_warm" in self.results:
            self.results["near_writes"] = self.near_writes(server, key, redis)
        self.redis = None
        if "redis" in args.profile:
            self.results["profile_redis_single"] = self.profile(server, key, "single", "redis")
            self.results["profile_redis_ceiling"] = self.profile(server, key, "ceiling", "redis")
        self.stop(server)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--attributes", type=int, default=10)
    parser.add_argument("--duration", type=float, default=15, help="seconds per measured scenario")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn sync workers (same for every server)")
    parser.add_argument("--batch", type=int, default=50, help="subjects per batch request")
    parser.add_argument(
        "--policy-keys", type=int, default=10, help="attributes in the release policy of the second key"
    )
    parser.add_argument(
        "--settings",
        default="bench.ceiling_settings",
        help="settings module of every process (one that imports bench.ceiling_settings, to try a candidate fix)",
    )
    parser.add_argument("--throttle-rate", default="1000000/s", help="API_THROTTLE_RATE for the run")
    parser.add_argument("--no-throttle", action="store_true", help="drop the per-principal throttle (diagnosis)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (ceiling, scenarios...); medians reported")
    parser.add_argument("--pip-cache-seconds", type=int, default=3600, help="PIP_CACHE_SECONDS of the redis stack")
    parser.add_argument("--quiet-cores", type=float, default=0.2, help="wait until others use fewer cores than this")
    parser.add_argument("--disturbed-cores", type=float, default=0.3, help="run again if others used more than this")
    parser.add_argument("--retries", type=int, default=2, help="how often a disturbed run is run again")
    parser.add_argument("--quiet-wait", type=float, default=120, help="... but at most this many seconds per run")
    parser.add_argument("--bundle-repeats", type=int, default=3)
    parser.add_argument("--skip-bundle", action="store_true")
    parser.add_argument(
        "--near-warm-seconds",
        type=float,
        default=240,
        help="at most this long per key warming the near caches (0: not)",
    )
    parser.add_argument("--stacks", default="db,redis", help="which stacks to run (db: no REDIS_URL; redis)")
    parser.add_argument(
        "--profile", default="", help="comma list of stacks (db,redis) to profile with py-spy after measuring"
    )
    parser.add_argument("--pgdata", default="", help="reuse this PostgreSQL data directory (kept; loaded once)")
    parser.add_argument(
        "--replica", action="store_true", help="a primary + hot standby: reads on the replica, tokens (issue 22)"
    )
    parser.add_argument(
        "--write-rate", type=float, default=200, help="--replica: user updates/s during the writes runs"
    )
    args = parser.parse_args()
    args.profile = [p for p in args.profile.split(",") if p]
    args.stacks = [p for p in args.stacks.split(",") if p]
    if shutil.which("wrk") is None:
        print(
            "error: wrk is not on PATH. Install it (Debian/Ubuntu: apt-get install wrk; macOS: brew install wrk).",
            file=sys.stderr,
        )
        return 2
    os.chdir(ROOT)
    bench = Bench(args)
    try:
        results = bench.run_replica() if args.replica else bench.run()
    except BaseException:
        for log_file in sorted(bench.workdir.glob("gunicorn-*.std*")):
            print(f"--- last lines of {log_file.name} ---", file=sys.stderr)
            print("\n".join(log_file.read_text(errors="replace").splitlines()[-40:]), file=sys.stderr)
        raise
    finally:
        for server in reversed(bench.started):
            try:  # PostgreSQL: stopped and its files removed (the data too, unless --pgdata)
                server.cleanup() if isinstance(server, Postgres) else server.stop()
            except Exception as exc:  # noqa: BLE001 - stop the others anyway
                print(f"warning: could not stop {server}: {exc}", file=sys.stderr)
        shutil.rmtree(bench.workdir, ignore_errors=True)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"pip-{'replica-' if args.replica else ''}{bench.stamp}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    if args.replica:
        print_replica_table(results)
    else:
        print_table(results)
    print(f"\nwrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
