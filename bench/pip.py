"""Benchmark of the Policy Information Point against the cheapest authenticated DRF view (not a test).

    .venv/bin/python bench/pip.py [--users 100000] [--duration 15] [--connections 32] [--rounds 3]
                                  [--pgdata DIR] [--profile db,redis]

Starts its own PostgreSQL (the pgserver wheel; ``--pgdata`` keeps and reuses its data) and, when
``redis-server`` is on PATH, its own Redis on a free port; migrates; loads ``--users`` users x 10
attributes into the tenant ``load-0`` with ``manage.py generate_demo_data``; creates a ``pip:read``
key with ``manage.py create_api_key``; then serves the app with gunicorn in production mode
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
a random subject among all users per request). Each of ``--rounds`` rounds runs the ceiling then
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
import http.client
import io
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
TENANT = "load-0"  # generate_demo_data --tenants 1 names its tenant <prefix>-0
SUBJECT_PATH = f"/api/v1/pip/tenants/{TENANT}/subjects/"

# Ratios to the baseline (a minimal DRF APIView, no middleware, no authentication) of the same round.
TARGETS = {
    "ceiling_rps_ratio": 0.85,  # the cheapest authenticated view (the stack's own cost), Redis configured
    "cached_rps_ratio": 1.00,  # cached single lookup
    "revalidate_rps_ratio": 1.00,  # 304 revalidation, cached
    "uncached_rps_ratio": 0.60,  # single lookup without a shared cache (PostgreSQL every time)
    "p99_ratio": 1.5,  # p99 of the single lookups <= 1.5x the baseline's
    "batch_subjects_per_second": 25_000.0,  # batch of 50
    "bundle_growth_mb": 100.0,  # peak RSS growth of the serving worker while it builds the bundle
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- nothing outlives the benchmark -------------------------------------------------------------------
def die_with_parent() -> None:
    """``preexec_fn`` of every child: the kernel sends it SIGTERM when the benchmark dies (even by
    SIGKILL), via ``prctl(PR_SET_PDEATHSIG)``."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


WATCHDOG_CODE = r"""
import os, shutil, signal, sys, time
groups, pgdata, remove = [], [], []
for line in sys.stdin:  # until the benchmark exits, however it exits (EOF)
    kind, _, value = line.rstrip("\n").partition(" ")
    if kind == "done":
        sys.exit(0)
    {"group": groups, "pgdata": pgdata, "remove": remove}[kind].append(value)
for pgid in groups:  # gunicorn masters and redis-server: their process groups
    try:
        os.killpg(int(pgid), signal.SIGTERM)
    except OSError:
        pass
for directory in pgdata:  # PostgreSQL (pgserver daemonizes it): a fast shutdown
    try:
        os.kill(int(open(os.path.join(directory, "postmaster.pid")).readline()), signal.SIGINT)
    except (OSError, ValueError):
        pass
time.sleep(3)
for pgid in groups:
    try:
        os.killpg(int(pgid), signal.SIGKILL)
    except OSError:
        pass
for directory in remove:
    shutil.rmtree(directory, ignore_errors=True)
"""


class Watchdog:
    """A process of its own that stops what the benchmark started once the benchmark is gone.

    Children also get PDEATHSIG (:func:`die_with_parent`), but PostgreSQL is daemonized by pgserver
    and gunicorn's workers outlive a master killed hard: the watchdog reads the benchmark's pipe and,
    on end of file without a ``done`` line (an interrupted or killed benchmark), terminates the
    process groups and PostgreSQL it was told about. SIGTERM and SIGHUP also raise ``SystemExit`` in
    the benchmark (:func:`main`), so its own ``finally`` stops everything first.
    """

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    def _send(self, line: str) -> None:
        if self.process is None:
            self.process = subprocess.Popen(
                [sys.executable, "-c", WATCHDOG_CODE],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C to the benchmark's group does not stop it
                text=True,
            )
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def group(self, pgid: int) -> None:
        self._send(f"group {pgid}")

    def pgdata(self, directory: Path, remove: bool) -> None:
        self._send(f"pgdata {directory}")
        if remove:
            self.remove(directory)

    def remove(self, directory: Path) -> None:
        self._send(f"remove {directory}")

    def done(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self._send("done")
            self.process.wait(10)


WATCHDOG = Watchdog()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.args[0]} exited with {process.returncode}")
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


# --- the servers this script starts (and stops, by their pid) ---------------------------------------
class Postgres:
    """PostgreSQL from the pgserver wheel (unix socket), in a temporary or a reusable data directory."""

    def __init__(self, data_dir: Path | None) -> None:
        from devtools.embedded import quiet_pgserver

        quiet_pgserver()
        import pgserver

        self.temporary = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="iam-bench-pg-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        WATCHDOG.pgdata(self.data_dir, remove=self.temporary)
        self.server = pgserver.get_server(self.data_dir, cleanup_mode="stop")
        if "1 row" not in self.server.psql("SELECT 1 FROM pg_database WHERE datname = 'iam';"):
            self.server.psql("CREATE DATABASE iam;")
        self.socket_dir = re.search(r"host=([^&]+)", self.server.get_uri("iam")).group(1)  # type: ignore[union-attr]
        self.url = f"postgres://postgres@/iam?host={self.socket_dir}"

    def connect(self):  # type: ignore[no-untyped-def]
        import psycopg

        return psycopg.connect(host=self.socket_dir, dbname="iam", user="postgres", autocommit=True)

    def stop(self) -> None:
        self.server.cleanup()
        if self.temporary:
            shutil.rmtree(self.data_dir, ignore_errors=True)


class Redis:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(workdir), "--logfile", str(workdir / "redis.log")]
        self.process = subprocess.Popen(
            ["redis-server", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        WATCHDOG.group(self.process.pid)
        wait_port(self.port, 15, self.process)

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class Gunicorn:
    """The web role as deployed: ``gunicorn -c iam_project/gunicorn.conf.py iam_project.wsgi``."""

    def __init__(self, env: dict[str, str], workers: int, log_file: Path, health: str = "/healthz") -> None:
        self.port = free_port()
        self.health = health
        self.workers = workers
        metrics = log_file.parent / f"{log_file.stem}-metrics"
        metrics.mkdir(exist_ok=True)
        env = {**env, "PORT": str(self.port), "GUNICORN_WORKERS": str(workers), "IAM_ROLE": "web"}
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
        cmd = [str(BIN / "gunicorn"), "-c", "iam_project/gunicorn.conf.py", "--bind", f"127.0.0.1:{self.port}"]
        self.log = open(log_file, "ab")  # noqa: SIM115 - the child's output, closed in stop()
        self.process = subprocess.Popen(
            [*cmd, "iam_project.wsgi"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        WATCHDOG.group(self.process.pid)
        wait_port(self.port, 60, self.process)
        deadline = time.monotonic() + 60
        while len(self.worker_pids()) < workers or not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start; see {log_file}")
            time.sleep(0.2)

    def _healthy(self) -> bool:
        try:
            return http_get(self.port, self.health)[0] == 200
        except OSError:
            return False

    def worker_pids(self) -> list[int]:
        pid = self.process.pid
        try:
            return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            pids = []
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == pid:
                    pids.append(int(stat.parent.name))
            return pids

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # the master stops its workers (graceful_timeout 25 s)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()


# --- HTTP helpers ----------------------------------------------------------------------------------
def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def http_post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", path, body=body, headers={**headers, "Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def external_id(index: int) -> str:
    return f"user-{index:07d}"


# --- wrk ---------------------------------------------------------------------------------------------
LUA_COMMON = r"""
local started = 0
function setup(thread)
  started = started + 1
  thread:set("tid", started)
end
function init(args)
  math.randomseed(os.time() * 1009 + tid * 7919)
  math.random(); math.random()
end
wrk.headers["Authorization"] = "Bearer __KEY__"
local n = __USERS__
local prefix = "__PREFIX__user-"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_us":%d,"p75_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(75), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""

LUA = {
    "baseline": r"""
function request()
  return wrk.format("GET", "/bench/baseline")
end
""",
    "ceiling": r"""
function request()
  return wrk.format("GET", "/bench/ceiling")
end
""",
    "single": r"""
function request()
  return wrk.format("GET", prefix .. string.format("%07d", math.random(0, n - 1)))
end
""",
    "revalidate": r"""
local etags = {__ETAGS__}
local indexes = {__INDEXES__}
local auth = wrk.headers["Authorization"]
function request()
  local i = indexes[math.random(1, #indexes)]
  return wrk.format("GET", prefix .. string.format("%07d", i), {["Authorization"] = auth, ["If-None-Match"] = etags[i]})
end
""",
    "batch": r"""
local size = __BATCH__
local parts = {}
wrk.headers["Content-Type"] = "application/json"
function request()
  for j = 1, size do
    parts[j] = string.format('{"tenant":"__TENANT__","external_id":"user-%07d"}', math.random(0, n - 1))
  end
  return wrk.format("POST", "/api/v1/pip/resolve", nil, '{"subjects":[' .. table.concat(parts, ",") .. ']}')
end
""",
    # Every subject in order (thread t takes t, t + threads, ...), until bench/pip.py interrupts wrk.
    "warm": r"""
local threads = __THREADS__
local i
function init(args)
  i = tid - 1
end
function request()
  local path = prefix .. string.format("%07d", i % n)
  i = i + threads
  return wrk.format("GET", path)
end
""",
}


def lua_script(kind: str, key: str, users: int, **extra: str) -> str:
    text = LUA_COMMON + LUA[kind]
    values = {"KEY": key, "USERS": str(users), "PREFIX": SUBJECT_PATH, "TENANT": TENANT, **extra}
    for name, value in values.items():
        text = text.replace(f"__{name}__", value)
    return text


class Wrk:
    def __init__(self, workdir: Path, threads: int, connections: int) -> None:
        self.workdir = workdir
        self.threads = threads
        self.connections = connections
        self.version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0]

    def command(self, name: str, script: str, port: int, duration: float) -> list[str]:
        path = self.workdir / f"{name.replace(' ', '_').replace(',', '')}.lua"
        path.write_text(script)
        seconds = max(1, round(duration))  # wrk takes whole seconds only ("-d3.3s" is an error)
        cmd = ["wrk", f"-t{self.threads}", f"-c{self.connections}", f"-d{seconds}s", "--timeout", "10s"]
        return [*cmd, "--latency", "-s", str(path), f"http://127.0.0.1:{port}"]

    def run(self, name: str, script: str, port: int, duration: float, cpu: CpuMeter | None = None) -> dict:
        cmd = self.command(name, script, port, duration)
        before = cpu.snapshot() if cpu else None
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120, preexec_fn=die_with_parent)
        match = re.search(r"^WRKJSON (.*)$", out.stdout, re.M)
        if out.returncode != 0 or match is None:
            raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}\n{out.stderr}")
        stats = json.loads(match.group(1))
        usage = cpu.since(before, stats["requests"]) if cpu and before else None
        seconds = stats["duration_us"] / 1e6
        errors = {k: stats[k] for k in ("connect", "read", "write", "status", "timeout") if stats[k]}
        return {
            "requests": stats["requests"],
            "seconds": round(seconds, 2),
            "rps": round(stats["requests"] / seconds, 1),
            "p50_ms": stats["p50_us"] / 1000,
            "p75_ms": stats["p75_us"] / 1000,
            "p90_ms": stats["p90_us"] / 1000,
            "p99_ms": stats["p99_us"] / 1000,
            "max_ms": stats["max_us"] / 1000,
            "mean_ms": round(stats["mean_us"] / 1000, 2),
            "errors": errors,  # "status": non-2xx/3xx answers (e.g. 429, 5xx)
            "cpu": usage,
            "wrk_output": out.stdout.split("WRKJSON")[0].strip(),
        }


class CpuMeter:
    """CPU used during a run, in cores: by each of this benchmark's servers, by wrk, and by everything else.

    The host is shared (other work may run on the same cores): ``others_cores`` says how much of the
    machine a measurement did not get. ``groups`` maps a name (gunicorn, postgres, redis) to the pid
    at the root of its process tree.
    """

    HZ = os.sysconf("SC_CLK_TCK")

    def __init__(self) -> None:
        self.groups: dict[str, int] = {}

    @staticmethod
    def busy_ticks() -> int:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        return user + nice + system + irq + softirq + steal

    def tree_ticks(self) -> dict[str, int]:
        parent, ticks = {}, {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                rest = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            pid = int(stat.parent.name)
            # utime + stime, and cutime + cstime: an exited child's ticks move to the parent that reaped it
            parent[pid], ticks[pid] = int(rest[1]), sum(int(v) for v in rest[11:15])
        children: dict[int, list[int]] = {}
        for pid, ppid in parent.items():
            children.setdefault(ppid, []).append(pid)

        def tree(root: int) -> int:
            total, todo, seen = 0, [root], set()
            while todo:
                pid = todo.pop()
                if pid not in seen:
                    seen.add(pid)
                    total += ticks.get(pid, 0)
                    todo.extend(children.get(pid, []))
            return total

        found = {name: tree(pid) for name, pid in self.groups.items()}
        own = resource.getrusage(resource.RUSAGE_SELF)
        found["bench"] = round((own.ru_utime + own.ru_stime) * self.HZ)
        reaped = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once it has exited
        found["wrk"] = round((reaped.ru_utime + reaped.ru_stime) * self.HZ)
        return found

    def snapshot(self) -> tuple[float, int, dict[str, int]]:
        return time.monotonic(), self.busy_ticks(), self.tree_ticks()

    def since(self, before: tuple[float, int, dict[str, int]], requests: int = 0) -> dict:
        now, busy, groups = self.snapshot()
        seconds = now - before[0]
        ticks = {name: groups[name] - before[2].get(name, 0) for name in groups}
        ours = sum(ticks.values())
        busy_cores = (busy - before[1]) / self.HZ / seconds
        result = {
            "ours_cores": round(ours / self.HZ / seconds, 2),
            "others_cores": round(max(0.0, busy_cores - ours / self.HZ / seconds), 2),
            "cores": {name: round(t / self.HZ / seconds, 2) for name, t in ticks.items()},
        }
        if requests:
            result["cpu_ms_per_request"] = {name: round(1000 * t / self.HZ / requests, 3) for name, t in ticks.items()}
        return result


# --- the benchmark -----------------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="iam-bench-pip-"))
        WATCHDOG.remove(self.workdir)
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
        self.redis: Redis | None = None

    # environment ------------------------------------------------------------------------------------
    def base_env(self, database_url: str, broker: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "IAM_", "GUNICORN_", "REDIS_", "CELERY_", "PROMETHEUS_"))
            and k not in ("DATABASE_URL", "EVENT_BUS_URL", "SECRET_KEY", "ALLOWED_HOSTS", "DEBUG", "PORT")
        }
        env.update(
            {
                "IAM_ENV": "production",
                "DJANGO_SETTINGS_MODULE": self.args.settings,
                "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
                "SECRET_KEY": secrets.token_urlsafe(45)[:60],
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "SECURE_SSL_REDIRECT": "false",
                "DATABASE_URL": database_url,
                "EVENT_BUS_URL": f"nats://127.0.0.1:{free_port()}",  # unreachable: the web role never waits on it
                "CELERY_BROKER_URL": broker,
                "LOG_LEVEL": "WARNING",
                "API_THROTTLE_RATE": self.args.throttle_rate,
                "PIP_THROTTLE_RATE": self.args.throttle_rate,
                "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", str(self.workdir)),
            }
        )
        if self.args.no_throttle:
            env["BENCH_NO_THROTTLE"] = "1"
        return env

    def manage(self, env: dict[str, str], *args: str, timeout: float = 3600) -> str:
        out = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
        if out.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout

    def start_gunicorn(self, env: dict[str, str], name: str) -> Gunicorn:
        server = Gunicorn(env, self.args.workers, self.workdir / f"gunicorn-{name}.log")
        self.started.append(server)
        self.cpu.groups["gunicorn"] = server.process.pid
        return server

    def stop(self, server: object) -> None:
        if server in self.started:
            self.started.remove(server)
        server.stop()  # type: ignore[attr-defined]

    # data -------------------------------------------------------------------------------------------
    def load(self, pg: Postgres, env: dict[str, str]) -> str:
        log("migrating")
        self.manage(env, "migrate", "--noinput")
        with pg.connect() as conn:
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
        with pg.connect() as conn:
            conn.execute("VACUUM ANALYZE")
            self.results["database"] = {
                "server_version": conn.execute("SHOW server_version").fetchone()[0],
                "users_user_bytes": conn.execute("SELECT pg_total_relation_size('users_user')").fetchone()[0],
                "users": conn.execute("SELECT count(*) FROM users_user").fetchone()[0],
            }
        with pg.connect() as conn:
            self.tenant_id = str(conn.execute("SELECT id FROM tenants_tenant WHERE slug = %s", [TENANT]).fetchone()[0])
        key = self.manage(env, "create_api_key", "--name", "bench-pip", "--scopes", "pip:read", "--tenants", TENANT)
        return key.strip().splitlines()[-1]

    def etags(self, pg: Postgres, sample: int = 2000) -> dict[int, str]:
        """The current ETags of a sample of subjects, by user index (an ETag names its subject)."""
        with pg.connect() as conn:
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
        status, _, _ = http_get(server.port, SUBJECT_PATH + "nobody", auth)
        assert status == 404, status
        subjects = [{"tenant": TENANT, "external_id": external_id(i)} for i in range(self.args.batch)]
        status, body = http_post(server.port, "/api/v1/pip/resolve", json.dumps({"subjects": subjects}).encode(), auth)
        results = json.loads(body)["results"]
        assert status == 200 and len(results) == self.args.batch and all(r["found"] for r in results), status

    def warm_cache(self, server: Gunicorn, key: str, redis: Redis) -> dict:
        """Request every subject in order until each has a cache entry (or 15 minutes have passed)."""
        log(f"warming the PIP cache with all {self.args.users:,} subjects")
        started = time.monotonic()
        script = lua_script("warm", key, self.args.users, THREADS=str(self.args.threads))
        client = redis.client()
        warm = subprocess.Popen(
            self.wrk.command("warm-cache", script, server.port, 900),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=die_with_parent,
        )
        # Two keys per subject (its token and its entry), so count the entries once there can be enough.
        entries = 0
        try:
            while warm.poll() is None and entries < self.args.users:
                time.sleep(1)
                if client.dbsize() >= 2 * self.args.users:
                    entries = sum(1 for _ in client.scan_iter(match="*pip:e2:*", count=10000))
        finally:
            if warm.poll() is None:
                warm.send_signal(signal.SIGINT)
            try:
                warm.wait(30)
            except subprocess.TimeoutExpired:
                warm.kill()
                warm.wait(5)
        entries = sum(1 for _ in client.scan_iter(match="*pip:e2:*", count=10000))
        info = {"seconds": round(time.monotonic() - started, 1), "entries": entries, "users": self.args.users}
        log(f"cache warmed in {info['seconds']} s: {entries:,} entries for {self.args.users:,} users")
        return info

    def redis_stats(self, redis: Redis) -> dict[str, int]:
        stats = redis.client().info("stats")
        names = ("keyspace_hits", "keyspace_misses", "total_commands_processed", "total_reads_processed")
        return {k: int(stats.get(k, 0)) for k in names}

    # the OPA bundle -----------------------------------------------------------------------------------
    def bundle(self, server: Gunicorn, key: str, env: dict[str, str]) -> dict:
        auth = {"Authorization": f"Bearer {key}"}
        path = f"/api/v1/pip/tenants/{TENANT}/bundle.tar.gz"
        requests = []
        for attempt in range(self.args.bundle_repeats):
            pids = server.worker_pids()
            before = {pid: proc_kb(pid, "VmRSS") for pid in pids}
            reset = all(reset_peak_rss(pid) for pid in pids)
            sampled = dict(before)
            stop = threading.Event()

            def sample(pids: list[int] = pids, sampled: dict[int, int] = sampled, stop: threading.Event = stop) -> None:
                while not stop.is_set():
                    for pid in pids:
                        sampled[pid] = max(sampled[pid], proc_kb(pid, "VmRSS"))
                    time.sleep(0.002)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
            conn.request("GET", path, headers=auth)
            response = conn.getresponse()
            first_byte = time.perf_counter() - started
            body = response.read()
            total = time.perf_counter() - started
            conn.close()
            stop.set()
            sampler.join()
            assert response.status == 200, (response.status, body[:500])
            growth_sampled = {pid: sampled[pid] - before[pid] for pid in pids}
            growth_peak = {pid: proc_kb(pid, "VmHWM") - before[pid] for pid in pids} if reset else {}
            serving = max(growth_sampled, key=lambda pid: growth_sampled[pid])
            record = {
                "attempt": attempt + 1,
                "seconds_to_first_byte": round(first_byte, 3),
                "seconds_total": round(total, 3),
                "bytes": len(body),
                "worker_pid": serving,
                "worker_rss_before_mb": round(before[serving] / 1024, 1),
                "rss_growth_sampled_mb": round(growth_sampled[serving] / 1024, 1),
                "rss_growth_peak_mb": round(max(growth_peak.values()) / 1024, 1) if growth_peak else None,
            }
            requests.append(record)
            etag = response.getheader("ETag")
            log(
                f"bundle #{attempt + 1}: {len(body) / 1e6:.1f} MB in {total:.2f} s (first byte {first_byte:.2f} s), "
                f"worker RSS +{record['rss_growth_peak_mb'] or record['rss_growth_sampled_mb']} MB"
            )
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
            users = json.load(archive.extractfile("data.json"))  # type: ignore[arg-type]
        count = len(users["iam"]["tenants"][TENANT]["users"])
        assert count == self.args.users, count
        started = time.perf_counter()
        status, _, _ = http_get(server.port, path, {**auth, "If-None-Match": etag or ""})
        revalidate = time.perf_counter() - started
        assert status == 304, status
        in_process = json.loads(
            self.manage(env, "shell", "-c", BUNDLE_IN_PROCESS.replace("__TENANT__", TENANT)).strip().splitlines()[-1]
        )
        log(
            f"bundle in-process: build {in_process['build_seconds']} s, peak RSS +{in_process['rss_growth_peak_mb']} MB, "
            f"tracemalloc peak {in_process['tracemalloc_peak_mb']} MB; 304 in {revalidate * 1000:.0f} ms"
        )
        return {
            "users": count,
            "requests": requests,
            "revalidate_304_seconds": round(revalidate, 3),
            "in_process": in_process,
            "rss_growth_max_mb": max(r["rss_growth_peak_mb"] or r["rss_growth_sampled_mb"] for r in requests),
            "seconds_median": sorted(r["seconds_total"] for r in requests)[len(requests) // 2],
        }

    # py-spy ---------------------------------------------------------------------------------------------
    def profile(self, server: Gunicorn, key: str, kind: str, stack: str) -> dict:
        pyspy = shutil.which("py-spy") or str(BIN / "py-spy")
        if not Path(pyspy).exists():
            return {"skipped": "py-spy not installed (.venv/bin/pip install py-spy)"}
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        raw = RESULTS_DIR / f"pip-{self.stamp}-{stack}-{kind}.folded"
        seconds = max(5, int(self.args.duration))
        spy = subprocess.Popen(
            [
                pyspy,
                "record",
                "--pid",
                str(server.process.pid),
                "--subprocesses",
                "--format",
                "raw",
                "--rate",
                "250",
                "--nonblocking",
                "--duration",
                str(seconds + 1),
                "--output",
                str(raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(1)
        self.wrk.run(f"profile-{kind}", lua_script(kind, key, self.args.users), server.port, seconds)
        spy.wait(60)
        if not raw.exists():
            return {"skipped": f"py-spy failed: {spy.stderr.read().decode()[-500:] if spy.stderr else ''}"}
        summary = summarize_profile(raw)
        log(f"py-spy profile of {stack}/{kind} in {raw.relative_to(ROOT)}:")
        for row in summary["inclusive"][:40]:
            log(f"  {row['percent']:5.1f}%  {row['frame']}")
        log("  self (leaf) time:")
        for row in summary["self"][:15]:
            log(f"  {row['percent']:5.1f}%  {row['frame']}")
        return {"file": str(raw.relative_to(ROOT)), **summary}

    # run ------------------------------------------------------------------------------------------------
    def run(self) -> dict:
        args = self.args
        self.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        log(f"PostgreSQL (pgserver) in {args.pgdata or 'a temporary directory'}")
        pg = Postgres(Path(args.pgdata) if args.pgdata else None)
        self.started.append(pg)
        self.cpu.groups["postgres"] = pg.server.get_pid() or 0
        redis: Redis | None = None
        if shutil.which("redis-server"):
            redis = Redis(self.workdir)
            self.started.append(redis)
            self.cpu.groups["redis"] = redis.process.pid
        else:
            reason = "redis-server is not on PATH (apt-get install redis-server): no shared cache to measure"
            self.results["skipped"] += [{"name": n, "reason": reason} for n in ("ceiling (redis)", "hot", "304 hot")]
            log(f"cached runs skipped: {reason}")
        broker = redis.url if redis else "memory://"
        env_db = self.base_env(pg.url, broker)
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
        ]
        self.rounds("db", server, key, scenarios)
        if not args.skip_bundle:
            self.results["bundle"] = self.bundle(server, key, env_db)
        if "db" in args.profile:
            self.results["profile_db_single"] = self.profile(server, key, "single", "db")
            self.results["profile_db_ceiling"] = self.profile(server, key, "ceiling", "db")
        self.stop(server)

    def run_redis(self, env_redis: dict[str, str], key: str, reval: dict[str, str], redis: Redis) -> None:
        args = self.args
        log(f"gunicorn, {args.workers} sync workers, REDIS_URL set")
        server = self.start_gunicorn(env_redis, "redis")
        self.check(server, key)
        self.warm_up(server, key)
        self.results["cache_warm"] = self.warm_cache(server, key, redis)
        self.redis = redis
        by_id = {"PREFIX": f"/api/v1/pip/tenants/{self.tenant_id}/subjects/"}
        scenarios = [
            ("cheapest authenticated view", "ceiling", {}),
            ("single, cached", "single", {}),
            ("304 revalidation", "revalidate", reval),
            # The same lookup with the tenant's id in the path: no slug -> id round trip to Redis.
            ("single, cached, tenant id", "single", by_id),
        ]
        self.rounds("redis", server, key, scenarios)
        self.redis = None
        if "redis" in args.profile:
            self.results["profile_redis_single"] = self.profile(server, key, "single", "redis")
            self.results["profile_redis_ceiling"] = self.profile(server, key, "ceiling", "redis")
        self.stop(server)

    def evaluate(self) -> None:
        """Per round, ratios to the baseline of the same round and stack; then medians over the rounds."""
        runs = [r for r in self.results["runs"] if r.get("counted")]
        baselines = {(r["stack"], r["round"]): r for r in runs if r["name"] == "baseline"}
        for r in runs:
            baseline = baselines[(r["stack"], r["round"])]
            r["rps_ratio"] = round(r["rps"] / baseline["rps"], 3)
            r["p99_ratio"] = round(r["p99_ms"] / baseline["p99_ms"], 2)
        groups: dict[tuple[str, str], list[dict]] = {}
        for r in runs:
            groups.setdefault((r["stack"], r["name"]), []).append(r)
        scenarios = []
        for (stack, name), group in groups.items():
            summary = {"stack": stack, "name": name, "rounds": len(group)}
            for field in ("rps", "p50_ms", "p99_ms", "rps_ratio", "p99_ratio", "subjects_per_second"):
                if field in group[0]:
                    summary[field] = round(statistics.median(r[field] for r in group), 3)
            summary["rps_min_max"] = [min(r["rps"] for r in group), max(r["rps"] for r in group)]
            summary["others_cores_median"] = round(
                statistics.median((r["cpu"] or {}).get("others_cores", 0) for r in group), 2
            )
            per_request = [
                r["cpu"]["cpu_ms_per_request"] for r in group if r["cpu"] and "cpu_ms_per_request" in r["cpu"]
            ]
            if per_request:
                summary["cpu_ms_per_request"] = {
                    name: round(statistics.median(x.get(name, 0) for x in per_request), 3) for name in per_request[0]
                }
            errors: Counter[str] = Counter()
            for r in group:
                errors.update(r["errors"])
            summary["errors"] = dict(errors)
            for field in ("redis_misses_per_request", "redis_commands_per_request", "redis_round_trips_per_request"):
                values = [r[field] for r in group if field in r]
                if values:
                    summary[field] = statistics.median(values)
            scenarios.append(summary)
        self.results["scenarios"] = scenarios
        by_name = {(s["stack"], s["name"]): s for s in scenarios}
        targets = []

        def ratio(stack: str, name: str, label: str, limit_key: str, p99: bool = False) -> None:
            found = by_name.get((stack, name))
            if found is None:
                targets.append({"target": label, "met": None, "reason": "not measured (no redis-server?)"})
                return
            targets.append(target(f"{label} req/s vs baseline", found["rps_ratio"], ">=", TARGETS[limit_key]))
            if p99:
                targets.append(target(f"{label} p99 vs baseline", found["p99_ratio"], "<=", TARGETS["p99_ratio"]))

        ratio("redis", "cheapest authenticated view", "cheapest authenticated view (Redis)", "ceiling_rps_ratio")
        ratio("redis", "single, cached", "cached single lookup", "cached_rps_ratio", p99=True)
        ratio("redis", "304 revalidation", "304 revalidation (cached)", "revalidate_rps_ratio")
        ratio("db", "single, uncached", "uncached single lookup", "uncached_rps_ratio", p99=True)
        batch = by_name.get(("db", f"batch of {self.args.batch}"))
        if batch is not None:
            limit = TARGETS["batch_subjects_per_second"]
            targets.append(target(f"batch of {self.args.batch} subjects/s", batch["subjects_per_second"], ">=", limit))
        if "bundle" in self.results:
            growth = self.results["bundle"]["rss_growth_max_mb"]
            targets.append(
                target("bundle peak RSS growth of the serving worker (MB)", growth, "<", TARGETS["bundle_growth_mb"])
            )
        self.results["targets"] = targets


BUNDLE_IN_PROCESS = r"""
import json, time, tracemalloc
from pathlib import Path
from resolver.bundle import bundle_build, bundle_revision
from tenants.models import Tenant

def kb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])

tenant_id = str(Tenant.objects.get(slug="__TENANT__").id)
started = time.perf_counter()
revision = bundle_revision(tenant_id)
revision_seconds = time.perf_counter() - started
bundle_build(tenant_id, revision).file.close()  # imports, connection, first chunked cursor
before = kb("VmRSS")
try:
    Path("/proc/self/clear_refs").write_text("5")
    reset = True
except OSError:
    reset = False
started = time.perf_counter()
bundle = bundle_build(tenant_id, revision)
build_seconds = time.perf_counter() - started
size = bundle.size
bundle.file.close()
peak = kb("VmHWM") if reset else None
tracemalloc.start()
bundle_build(tenant_id, revision).file.close()
current, traced_peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
print(json.dumps({
    "revision_seconds": round(revision_seconds, 3),
    "build_seconds": round(build_seconds, 3),
    "bytes": size,
    "rss_before_mb": round(before / 1024, 1),
    "rss_growth_peak_mb": round((peak - before) / 1024, 1) if reset else None,
    "tracemalloc_peak_mb": round(traced_peak / 2**20, 1),
}))
"""


def target(name: str, value: float, op: str, limit: float) -> dict:
    met = {">=": value >= limit, "<=": value <= limit, "<": value < limit}[op]
    return {"target": f"{name} {op} {limit:g}", "value": value, "met": met}


def proc_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss(pid: int) -> bool:
    """Writing 5 to clear_refs resets VmHWM (Linux >= 4.0), so VmHWM is the peak from now on."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def summarize_profile(path: Path) -> dict:
    """Share of the workers' CPU samples per function (inclusive: counted once per stack; self: leaf).

    Line numbers are dropped so that a function is one row; the gunicorn scaffolding every sample
    shares (arbiter, worker loop) is left out of the inclusive rows.
    """
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";") if not f.startswith("process ")]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            leaf[frames[-1]] += count
    scaffolding = (
        "<module> (gunicorn)",
        "(gunicorn/app/",
        "(gunicorn/arbiter.py)",
        "Worker.init_process",
        "Worker.run ",
    )
    rows = [
        {"frame": f, "percent": round(100 * c / total, 1)}
        for f, c in inclusive.most_common(120)
        if not any(mark in f for mark in scaffolding) and not f.startswith("SyncWorker.run")
    ]
    leaves = [{"frame": f, "percent": round(100 * c / total, 1)} for f, c in leaf.most_common(30)]
    return {"samples": total, "inclusive": rows[:80], "self": leaves}


def environment(wrk_version: str, redis: Redis | None) -> dict:
    import django
    import gunicorn
    import psycopg
    import rest_framework

    cpu = ""
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_model": cpu,
        "memory_gb": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "django": django.__version__,
        "drf": rest_framework.VERSION,
        "gunicorn": gunicorn.__version__,
        "psycopg": psycopg.__version__,
        "redis_server": redis.client().info("server")["redis_version"] if redis else None,
        "wrk": wrk_version,
        "load_generator": "wrk on the same cores as the server",
        "git": git_state(),
    }


def git_state() -> dict:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    return {
        "head": git("rev-parse", "HEAD"),
        "modified": git("status", "--porcelain", "--untracked-files=no").splitlines(),
    }


def print_table(results: dict) -> None:
    rows = []
    for s in results["scenarios"]:
        extra = f"{s['subjects_per_second']:,.0f} subjects/s" if "subjects_per_second" in s else ""
        if s["errors"]:
            extra = (extra + f" errors {s['errors']}").strip()
        low, high = s["rps_min_max"]
        cpu = s.get("cpu_ms_per_request", {})
        rows.append(
            [
                s["stack"],
                s["name"],
                f"{s['rps']:,.0f}",
                f"{low:,.0f}-{high:,.0f}",
                f"{s['rps_ratio']:.0%}",
                f"{s['p50_ms']:.1f}",
                f"{s['p99_ms']:.1f}",
                f"{s['p99_ratio']:.2f}x",
                f"{s['others_cores_median']:.2f}",
                *(f"{cpu.get(g, 0):.2f}" for g in ("web", "postgres", "redis", "wrk")),
                f"{s.get('redis_round_trips_per_request', 0):.2f}",
                f"{s.get('redis_commands_per_request', 0):.2f}",
                extra,
            ]
        )
    headers = ["stack", "scenario", "req/s", "range", "vs baseline", "p50 ms", "p99 ms", "p99 vs base", "others"]
    headers += ["web", "pg", "redis", "wrk", "RTT/req", "cmd/req", ""]
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    print(
        f"\nmedians of {results['parameters']['rounds']} rounds; ratios to the same round's baseline (a minimal DRF "
        "APIView, no middleware, no authentication, same gunicorn settings);"
    )
    print(
        "others: CPU cores used by processes outside this benchmark during the runs (the host has "
        f"{results['environment']['cpus']}); web/pg/redis/wrk: CPU ms per request of the serving gunicorn, "
        "PostgreSQL, Redis and wrk; RTT/req, cmd/req: Redis socket reads (round trips) and commands per request"
    )
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in rows:
        print(
            "  ".join(
                str(c).rjust(w) if 2 <= i <= 14 else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    for skipped in results["skipped"]:
        print(f"skipped: {skipped['name']}: {skipped['reason']}")
    if "bundle" in results:
        b = results["bundle"]
        print(
            f"\nOPA bundle, {b['users']:,} users: {b['requests'][-1]['bytes'] / 1e6:.1f} MB gzip'd, "
            f"{b['seconds_median']:.2f} s per request (in-process build {b['in_process']['build_seconds']} s), "
            f"serving worker peak RSS growth {b['rss_growth_max_mb']} MB "
            f"(in-process {b['in_process']['rss_growth_peak_mb']} MB, "
            f"tracemalloc peak {b['in_process']['tracemalloc_peak_mb']} MB), 304 in "
            f"{b['revalidate_304_seconds'] * 1000:.0f} ms"
        )
    print("\ntargets:")
    for t in results["targets"]:
        mark = {True: "met", False: "MISSED", None: "skipped"}[t["met"]]
        value = f" (got {t['value']})" if "value" in t else f" ({t.get('reason', '')})"
        print(f"  [{mark}] {t['target']}{value}")


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
    parser.add_argument("--stacks", default="db,redis", help="which stacks to run (db: no REDIS_URL; redis)")
    parser.add_argument(
        "--profile", default="", help="comma list of stacks (db,redis) to profile with py-spy after measuring"
    )
    parser.add_argument("--pgdata", default="", help="reuse this PostgreSQL data directory (kept; loaded once)")
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
    sys.path.insert(0, str(ROOT))

    def interrupted(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # so that the finally below stops every server

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    bench = Bench(args)
    try:
        results = bench.run()
    except BaseException:
        for log_file in sorted(bench.workdir.glob("gunicorn-*.log")):
            print(f"--- last lines of {log_file.name} ---", file=sys.stderr)
            print("\n".join(log_file.read_text(errors="replace").splitlines()[-40:]), file=sys.stderr)
        raise
    finally:
        for server in reversed(bench.started):
            try:
                server.stop()
            except Exception as exc:  # noqa: BLE001 - stop the others anyway
                print(f"warning: could not stop {server}: {exc}", file=sys.stderr)
        shutil.rmtree(bench.workdir, ignore_errors=True)
        WATCHDOG.done()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"pip-{bench.stamp}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nwrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
