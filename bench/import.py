"""Import benchmark: ``manage.py import_users`` against PostgreSQL ``COPY`` of the same rows (not a test).

    .venv/bin/python bench/import.py [--users 100000] [--attributes 10] [--debug-run] [--profile]

Starts its own PostgreSQL (the pgserver wheel) in a temporary directory, migrates
(``manage.py migrate`` as a subprocess), creates one tenant per run with ``--attributes`` attribute
definitions (``devtools.demo.generated_definitions``), writes a JSON Lines file of ``--users`` users
with one value per definition (``generated_value``), then measures each run as a subprocess: wall
time, peak RSS (``VmHWM`` polled, and ``ru_maxrss`` from ``wait4``), its CPU time, the PostgreSQL
server's CPU time (postmaster and children, from /proc) and the CPU pressure of the machine (PSI):

* **COPY users only** — psycopg ``cursor.copy()`` of the file's rows into ``users_user`` (ids,
  timestamps and version 1 generated), chunks of 10,000 rows, one transaction, into an empty tenant;
* **COPY users+outbox+audit** — the same plus one ``UserCreated`` outbox row (the same CloudEvents
  envelope, built by ``outbox.events.envelope``) and one audit record per user, as the import writes;
* **ours partial / atomic** — ``manage.py import_users --tenant T FILE --mode partial|atomic --json``
  into an empty tenant each;
* **ours re-run** — the partial import again with the same file into the now-full tenant: every row
  unchanged, nothing written;
* ``import_users`` of an empty file (the fixed cost: interpreter, Django, tenant lookup);
* with ``--debug-run``: the partial import again with ``DEBUG=true`` (the development default).

Each COPY baseline runs twice, before and after ours, into empty tenants; ratios use the faster of
the two (strict on a shared machine). Before every run: ``VACUUM (ANALYZE)`` of the three tables (so
that autovacuum does not bill one run's rows to the next) and ``CHECKPOINT``. Child processes run
with ``IAM_ENV=development``, ``DEBUG=false`` (as in production: with DEBUG, Django keeps the SQL of
the last 9000 queries in memory) and ``CELERY_BROKER_URL=memory://`` (the on-commit relay poke goes
nowhere). ``--profile`` adds an untimed partial import under ``py-spy record`` into one more tenant
and prints its hottest functions (py-spy: ``pip install py-spy`` into the venv).

Prints a table and writes ``bench/results/import-<timestamp>.json`` (git-ignored). Targets: peak RSS
< 300 MB, and rows/s ≥ 25% of the COPY baseline's — reported against both baselines: users+outbox+
audit (the same rows into the same tables: the fair one) and users only (the strict one).
"""

from __future__ import annotations

import argparse
import atexit
import collections
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO))
TARGET_RSS_MB = 300.0
TARGET_RATIO = 0.25
COPY_CHUNK = 10_000


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def progress(total: int, description: str):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="rows", leave=False, file=sys.stderr, disable=None)


# --- the COPY baseline (a child process: psycopg only, no Django) ------------------------------------
def _audit_changes(data: dict) -> dict:
    """``audit.services.diff(None, data, pii=set())`` for a created user (no PII definitions here)."""
    skipped = {"version", "changed", "id", "tenant_id"}
    changes = {field: [None, data[field]] for field in sorted(data) if field not in skipped | {"attributes"}}
    for key in sorted(data["attributes"]):
        changes[f"attributes.{key}"] = [None, data["attributes"][key]]
    return changes


def copy_child(argv: list[str]) -> None:
    """``--copy-child users|all DATABASE_URL FILE TENANT_ID SUBJECT_PREFIX SOURCE ACTOR``."""
    import psycopg

    from outbox.events import EVENT_TYPES, envelope, subject_for

    what, database_url, file, tenant_text, prefix, source, actor = argv
    tenant_id = uuid.UUID(tenant_text)
    event = EVENT_TYPES["UserCreated"]
    subject = subject_for(prefix, tenant_id, event)
    started = time.perf_counter()
    users_sql = (
        "COPY users_user (id, tenant_id, external_id, email, display_name, status, attributes, version, "
        "created_at, updated_at) FROM STDIN"
    )
    outbox_sql = (
        "COPY outbox_outboxevent (event_id, event_type, aggregate_type, aggregate_id, aggregate_version, "
        "tenant_id, subject, payload, status, attempts, last_error, created_at) FROM STDIN"
    )
    audit_sql = (
        "COPY audit_auditrecord (at, actor_kind, actor, actor_id, action, object_type, object_id, object_repr, "
        "tenant_id, event_id, changes) FROM STDIN"
    )
    rows = 0
    with psycopg.connect(database_url) as conn, open(file, "rb") as handle:
        bar = progress(int(os.environ.get("BENCH_ROWS", "0")) or None, f"COPY {what}")  # type: ignore[arg-type]

        def flush(chunk: list[dict]) -> None:
            now = datetime.now(UTC)
            ids = [uuid.uuid4() for _ in chunk]
            with conn.cursor() as cursor:
                with cursor.copy(users_sql) as copy:
                    for user_id, row in zip(ids, chunk, strict=True):
                        copy.write_row(
                            (
                                user_id, tenant_id, row["external_id"], row.get("email", ""),
                                row.get("display_name", ""), row.get("status") or "active",
                                json.dumps(row.get("attributes") or {}), 1, now, now,
                            )
                        )  # fmt: skip
                if what == "users":
                    return
                events = []
                with cursor.copy(outbox_sql) as copy:
                    for user_id, row in zip(ids, chunk, strict=True):
                        data = {
                            "id": str(user_id),
                            "tenant_id": str(tenant_id),
                            "external_id": row["external_id"],
                            "email": row.get("email", ""),
                            "display_name": row.get("display_name", ""),
                            "status": row.get("status") or "active",
                            "attributes": row.get("attributes") or {},
                            "version": 1,
                        }
                        event_id = uuid.uuid4()
                        events.append((event_id, data))
                        payload = envelope(
                            event_id=event_id, event=event, source=source, time=now, tenant_id=tenant_id,
                            aggregate_id=user_id, aggregate_version=1, data=data,
                        )  # fmt: skip
                        copy.write_row(
                            (
                                event_id, "UserCreated", "user", user_id, 1, tenant_id, subject,
                                json.dumps(payload), "pending", 0, "", now,
                            )
                        )  # fmt: skip
                with cursor.copy(audit_sql) as copy:
                    for event_id, data in events:
                        copy.write_row(
                            (
                                now, "system", actor, "", "create", "user", data["id"], data["external_id"][:300],
                                tenant_id, event_id, json.dumps(_audit_changes(data)),
                            )
                        )  # fmt: skip

        chunk: list[dict] = []
        for line in handle:
            if not line.strip():
                continue
            chunk.append(json.loads(line))
            if len(chunk) >= COPY_CHUNK:
                flush(chunk)
                rows += len(chunk)
                bar.update(len(chunk))
                chunk = []
        if chunk:
            flush(chunk)
            rows += len(chunk)
            bar.update(len(chunk))
        conn.commit()
        bar.close()
    print(json.dumps({"rows": rows, "seconds": time.perf_counter() - started}))


# --- measuring a child process ------------------------------------------------------------------------
def proc_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_pressure_us() -> int | None:
    """Total microseconds some task waited for a CPU (PSI), or None without /proc/pressure."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return None
    return int(first.rsplit("total=", 1)[1])


class PostgresCpu:
    """CPU seconds of the PostgreSQL server: the postmaster, its exited children (cutime/cstime) and its
    live children (backends, checkpointer, WAL writer, autovacuum)."""

    def __init__(self, data_dir: Path) -> None:
        self.postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
        self.tick = os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _stat(pid: int) -> list[str] | None:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None

    def seconds(self) -> float:
        own = self._stat(self.postmaster)
        if own is None:
            return float("nan")
        ticks = sum(int(x) for x in own[11:15])  # utime, stime, cutime, cstime
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (stat := self._stat(int(entry))) and int(stat[1]) == self.postmaster:
                ticks += int(stat[11]) + int(stat[12])
        return ticks / self.tick


def measured(command: list[str], env: dict[str, str], *, label: str, pg: PostgresCpu) -> dict:
    """Run ``command``; wall seconds, peak RSS (VmHWM polled and ru_maxrss of wait4), CPU of the child and
    of PostgreSQL, the share of the time some task waited for a CPU (PSI), exit code, stdout."""
    out_path = Path(tempfile.mkstemp(prefix="iam-bench-import-out-")[1])
    with open(out_path, "w") as out:
        pg_before, pressure_before = pg.seconds(), cpu_pressure_us()
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=None)
        peak = [0]
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], proc_kb(process.pid, "VmHWM"))
                done.wait(0.05)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        pg_seconds, pressure_after = pg.seconds() - pg_before, cpu_pressure_us()
        done.set()
        poller.join()
        process.returncode = os.waitstatus_to_exitcode(status)
    stdout = out_path.read_text()
    out_path.unlink()
    summary = None
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            summary = json.loads(line)
            break
    # VmHWM of the exec'd child; ru_maxrss (KiB) also counts the pre-exec copy of this process, kept small.
    rss_kb = max(peak[0], usage.ru_maxrss)
    return {
        "label": label,
        "exit_code": process.returncode,
        "seconds": seconds,
        "peak_rss_mb": rss_kb / 1024,
        "peak_rss_polled_mb": peak[0] / 1024,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "pg_cpu_seconds": pg_seconds,
        "cpu_pressure_pct": (
            100 * (pressure_after - pressure_before) / 1e6 / seconds
            if pressure_before is not None and pressure_after is not None
            else None
        ),
        "summary": summary,
        "stdout_tail": stdout[-2000:] if summary is None or process.returncode else "",
    }


# --- set-up -------------------------------------------------------------------------------------------
def start_postgres(tmp: Path):  # type: ignore[no-untyped-def]
    from devtools.embedded import quiet_pgserver

    quiet_pgserver()
    import pgserver

    server = pgserver.get_server(tmp / "pg", cleanup_mode="stop")
    server.psql("CREATE DATABASE bench;")
    return server, server.get_uri("bench")


def child_env(tmp: Path, database_url: str) -> dict[str, str]:
    from devtools.embedded import free_port

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "IAM_", "REDIS_", "CELERY_"))
        and k not in ("DATABASE_URL", "EVENT_BUS_URL", "DEBUG", "LOG_LEVEL")
    }
    env.update(
        {
            "IAM_ENV": "development",
            "IAM_DATA_DIR": str(tmp / "data"),  # not the repository's .data/
            "DJANGO_SETTINGS_MODULE": "iam_project.settings",
            "DATABASE_URL": database_url,
            "EVENT_BUS_URL": f"nats://127.0.0.1:{free_port()}",  # set, so manage.py starts no NATS; never used
            "CELERY_BROKER_URL": "memory://",
            "LOG_LEVEL": "WARNING",
            "DEBUG": "false",
            "PYTHONPATH": str(REPO),
            "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", str(tmp / "run")),
        }
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


SETUP_SCRIPT = """
import json, random, sys
from django.conf import settings
from tqdm import tqdm
from attributes.services import definition_create
from devtools.demo import generated_definitions, generated_value
from tenants.services import tenant_create
definitions = generated_definitions(ATTRIBUTES)
out = {}
for slug in SLUGS:
    tenant = tenant_create(slug=slug, name=f"Import bench {slug}")
    for definition in definitions:
        definition_create(tenant=tenant, **definition)
    out[slug] = str(tenant.id)
rng = random.Random(SEED)
with open(FILE, "w", encoding="utf-8") as handle, tqdm(total=USERS, desc="writing JSONL", unit="rows", leave=False, disable=None) as bar:
    for index in range(USERS):
        row = {
            "external_id": f"user-{index:07d}",
            "email": f"user-{index}@import.example",
            "display_name": f"User {index}",
            "status": "active",
            "attributes": {d["key"]: generated_value(d, rng) for d in definitions},
        }
        handle.write(json.dumps(row, separators=(",", ":")) + "\\n")
        if index % 1000 == 999:
            bar.update(1000)
print(json.dumps({"tenants": out, "prefix": settings.NATS_SUBJECT_PREFIX, "source": settings.IAM_EVENT_SOURCE}))
"""


def set_up(env: dict[str, str], slugs: list[str], args: argparse.Namespace, file: Path) -> dict:
    """Tenants with the generated definitions (through the services) and the JSONL file, in a child
    process: this one stays small, so that the ``ru_maxrss`` its children inherit at fork stays below theirs."""
    head = f"SLUGS = {slugs!r}\nATTRIBUTES = {args.attributes}\nUSERS = {args.users}\nSEED = {args.seed}\n"
    out = manage(env, "shell", "-c", head + f"FILE = {str(file)!r}\n" + SETUP_SCRIPT)
    return json.loads(out.strip().splitlines()[-1])


def counts(database_url: str, tenant_id: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        return {
            "users": conn.execute("SELECT count(*) FROM users_user WHERE tenant_id = %s", [tenant_id]).fetchone()[0],
            "outbox": conn.execute(
                "SELECT count(*) FROM outbox_outboxevent WHERE tenant_id = %s AND aggregate_type = 'user'",
                [tenant_id],
            ).fetchone()[0],
            "audit": conn.execute(
                "SELECT count(*) FROM audit_auditrecord WHERE tenant_id = %s AND object_type = 'user'", [tenant_id]
            ).fetchone()[0],
        }


def settle(database_url: str) -> None:
    """Before a run: vacuum what the previous run wrote (so that autovacuum does not bill it to this run)
    and checkpoint (so that this run starts with no dirty buffers)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) users_user, outbox_outboxevent, audit_auditrecord")
        conn.execute("CHECKPOINT")


def database_facts(database_url: str) -> dict:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        facts = {"server_version": conn.execute("SHOW server_version").fetchone()[0]}
        for name in ("shared_buffers", "synchronous_commit", "fsync", "wal_level", "max_wal_size"):
            facts[name] = conn.execute(f"SHOW {name}").fetchone()[0]
        for table in ("users_user", "outbox_outboxevent", "audit_auditrecord"):
            facts[f"{table}_bytes"] = conn.execute("SELECT pg_total_relation_size(%s)", [table]).fetchone()[0]
        return facts


def versions() -> dict:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for package in ("Django", "psycopg", "pgserver"):
        try:
            out[package] = version(package)
        except Exception:  # noqa: BLE001 - informative only
            out[package] = None
    return out


# --- profile (optional) ---------------------------------------------------------------------------------
def profile_import(env: dict[str, str], slug: str, file: Path, out: Path) -> dict:
    """An untimed partial import under ``py-spy record --format raw``; self and inclusive share per function."""
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        return {"skipped": "py-spy is not installed in the venv (pip install py-spy)"}
    command = [
        str(py_spy), "record", "--format", "raw", "--rate", "200", "--output", str(out), "--",
        sys.executable, "manage.py", "import_users", "--tenant", slug, str(file), "--mode", "partial", "--json",
    ]  # fmt: skip
    subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if not out.exists():
        return {"skipped": "py-spy wrote no profile"}
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = [re.sub(r" \((.*?/)?([^/]+\.py):\d+\)$", r" (\2)", f) for f in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    top = lambda counter: [(name, round(100 * n / total, 1)) for name, n in counter.most_common(25)]  # noqa: E731
    return {"samples": total, "file": str(out.relative_to(REPO)), "self_pct": top(own), "inclusive_pct": top(inclusive)}


# --- main ---------------------------------------------------------------------------------------------------
def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--copy-child":
        copy_child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--attributes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="also profile a partial import with py-spy")
    parser.add_argument("--debug-run", action="store_true", help="also import with DEBUG=true (development default)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="iam-bench-import-"))
    if not args.keep:  # registered before pgserver's own atexit hook (which touches tmp/run), so it runs after it
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    (tmp / "run").mkdir(mode=0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(tmp / "run"))
    os.environ["IAM_DATA_DIR"] = str(tmp / "data")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    server = None
    try:
        log(f"starting PostgreSQL in {tmp}")
        server, database_url = start_postgres(tmp)
        env = child_env(tmp, database_url)
        env["BENCH_ROWS"] = str(args.users)
        log("migrating")
        manage(env, "migrate", "--noinput")
        slugs = ["copy-users-1", "copy-all-1", "ours-partial", "ours-atomic", "copy-users-2", "copy-all-2"]
        slugs += (["ours-debug"] if args.debug_run else []) + (["ours-profile"] if args.profile else [])
        file = tmp / "users.jsonl"
        log(f"creating {len(slugs)} tenants, writing {args.users:,} users × {args.attributes} attributes")
        created = set_up(env, slugs, args, file)
        tenants, prefix, source = created["tenants"], created["prefix"], created["source"]
        file_bytes = file.stat().st_size
        empty = tmp / "empty.jsonl"
        empty.write_text("")
        pg = PostgresCpu(tmp / "pg")

        actor = f"import_users:{file.name}"
        runs: dict[str, dict] = {}

        def copy_run(key: str, what: str, slug: str) -> None:
            settle(database_url)
            log(f"{key}: COPY {what} into {slug}")
            command = [sys.executable, __file__, "--copy-child", what, database_url, str(file), tenants[slug]]
            runs[key] = measured([*command, prefix, source, actor], env, label=key, pg=pg)
            runs[key]["counts"] = counts(database_url, tenants[slug])
            runs[key]["inner_seconds"] = (runs[key]["summary"] or {}).get("seconds")

        def import_run(key: str, mode: str, slug: str, path: Path = file, extra_env: dict | None = None) -> None:
            settle(database_url)
            log(f"{key}: import_users --mode {mode} into {slug}")
            command = [sys.executable, "manage.py", "import_users", "--tenant", slug, str(path), "--mode", mode]
            runs[key] = measured([*command, "--json"], {**env, **(extra_env or {})}, label=key, pg=pg)
            runs[key]["counts"] = counts(database_url, tenants[slug])
            rps = (runs[key]["summary"] or {}).get("rows_per_second")
            runs[key]["inner_seconds"] = args.users / rps if rps and path == file else None

        # The COPY baselines run before and after ours; each ratio uses the faster of the two (strict).
        copy_run("copy_users_1", "users", "copy-users-1")
        copy_run("copy_all_1", "all", "copy-all-1")
        import_run("ours_partial", "partial", "ours-partial")
        import_run("ours_atomic", "atomic", "ours-atomic")
        import_run("ours_rerun", "partial", "ours-partial")
        copy_run("copy_users_2", "users", "copy-users-2")
        copy_run("copy_all_2", "all", "copy-all-2")
        import_run("ours_empty_file", "partial", "ours-atomic", empty)  # the fixed cost: start-up, tenant lookup
        if args.debug_run:  # the development default: DEBUG=true keeps the SQL of the last 9000 queries
            import_run("ours_partial_debug", "partial", "ours-debug", extra_env={"DEBUG": "true"})

        n = args.users
        created_n = {"created": n, "unchanged": 0, "invalid": 0}
        expected = {
            "copy_users_1": ({"users": n, "outbox": 0, "audit": 0}, None),
            "copy_users_2": ({"users": n, "outbox": 0, "audit": 0}, None),
            "copy_all_1": ({"users": n, "outbox": n, "audit": n}, None),
            "copy_all_2": ({"users": n, "outbox": n, "audit": n}, None),
            "ours_partial": ({"users": n, "outbox": n, "audit": n}, created_n),
            "ours_atomic": ({"users": n, "outbox": n, "audit": n}, created_n),
            "ours_rerun": ({"users": n, "outbox": n, "audit": n}, {"created": 0, "unchanged": n, "invalid": 0}),
        }
        if args.debug_run:
            expected["ours_partial_debug"] = ({"users": n, "outbox": n, "audit": n}, created_n)
        problems = []
        for key, (want_counts, want_summary) in expected.items():
            run = runs[key]
            if run["exit_code"] != 0:
                problems.append(f"{key}: exit {run['exit_code']}: {run['stdout_tail']}")
            if run["counts"] != want_counts:
                problems.append(f"{key}: tables hold {run['counts']}, expected {want_counts}")
            got = run["summary"] or {}
            if want_summary and any(got.get(k) != v for k, v in want_summary.items()):
                problems.append(f"{key}: summary {got}, expected {want_summary}")
        for key, run in runs.items():
            rows = 0 if key == "ours_empty_file" else n
            run["rows"] = rows
            run["rows_per_second"] = rows / run["seconds"] if rows else None
            run["inner_rows_per_second"] = rows / run["inner_seconds"] if rows and run.get("inner_seconds") else None
            cpu = run["cpu_seconds"] + run["pg_cpu_seconds"]
            run["rows_per_cpu_second"] = rows / cpu if rows and cpu > 0 else None
        baselines = {}
        for base in ("copy_users", "copy_all"):
            pair = [runs[f"{base}_1"], runs[f"{base}_2"]]
            baselines[base] = {
                "rows_per_second": max(r["rows_per_second"] for r in pair),
                "inner_rows_per_second": max(r["inner_rows_per_second"] or 0 for r in pair),
                "rows_per_cpu_second": max(r["rows_per_cpu_second"] or 0 for r in pair),
            }
        for key in ("ours_partial", "ours_atomic", "ours_rerun", "ours_partial_debug"):
            if key not in runs:
                continue
            for base, best in baselines.items():
                for metric in ("rows_per_second", "inner_rows_per_second", "rows_per_cpu_second"):
                    if runs[key][metric] and best[metric]:
                        prefix_ = {"rows_per_second": "", "inner_rows_per_second": "inner_"}.get(metric, "cpu_")
                        runs[key][f"{prefix_}ratio_to_{base}"] = runs[key][metric] / best[metric]
        profile = None
        if args.profile:
            log("profiling a partial import with py-spy (untimed)")
            RESULTS.mkdir(parents=True, exist_ok=True)
            profile = profile_import(env, "ours-profile", file, RESULTS / f"import-profile-{stamp}.txt")

        targets = {}
        for key in ("ours_partial", "ours_atomic"):
            run = runs[key]
            targets[key] = {
                "rss_met": run["peak_rss_mb"] < TARGET_RSS_MB,
                "ratio_fair_met (users+outbox+audit)": run["ratio_to_copy_all"] >= TARGET_RATIO,
                "ratio_strict_met (users only)": run["ratio_to_copy_users"] >= TARGET_RATIO,
            }
        figures = {
            "benchmark": "import",
            "timestamp": stamp,
            "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "loadavg": os.getloadavg()},
            "versions": versions(),
            "parameters": {"users": n, "attributes": args.attributes, "seed": args.seed, "copy_chunk": COPY_CHUNK},
            "file_bytes": file_bytes,
            "database": database_facts(database_url),
            "runs": runs,
            "baselines (best of two)": baselines,
            "targets": {"rss_mb_max": TARGET_RSS_MB, "ratio_min": TARGET_RATIO, "results": targets},
            "problems": problems,
            "profile": profile,
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"import-{stamp}.json"
        path.write_text(json.dumps(figures, indent=2, default=str) + "\n")
        print_table(figures)
        print(f"\nfigures written to {path.relative_to(REPO)}")
        if problems:
            print("\nPROBLEMS:\n  " + "\n  ".join(problems))
            raise SystemExit(1)
    finally:
        if server is not None:
            server.cleanup()


def print_table(f: dict) -> None:
    runs, baselines = f["runs"], f["baselines (best of two)"]
    names = {
        "copy_users_1": "COPY users only (before)",
        "copy_users_2": "COPY users only (after)",
        "copy_all_1": "COPY users+outbox+audit (before)",
        "copy_all_2": "COPY users+outbox+audit (after)",
        "ours_partial": "import_users --mode partial",
        "ours_atomic": "import_users --mode atomic",
        "ours_rerun": "re-run, all unchanged",
        "ours_empty_file": "import_users, empty file",
        "ours_partial_debug": "partial, DEBUG=true",
    }
    print(
        f"\n{f['parameters']['users']:,} users × {f['parameters']['attributes']} attributes, "
        f"{f['file_bytes'] / 1e6:.1f} MB JSONL, {f['machine']['cores']} cores, "
        f"PostgreSQL {f['database']['server_version']}"
    )
    header = (
        f"{'run':<33} {'rows/s':>7} {'wall s':>7} {'inner/s':>7} {'cli CPU':>7} {'PG CPU':>6} {'rows/CPUs':>9} "
        f"{'RSS MB':>6} {'CPUwait':>7} {'vs all':>6} {'vs usr':>6} {'CPU vs all':>10} {'CPU vs usr':>10}"
    )
    print(header)
    print("-" * len(header))
    fmt = lambda v, spec: format(v, spec) if v is not None else "-"  # noqa: E731
    for key, name in names.items():
        if key not in runs:
            continue
        r = runs[key]
        print(
            f"{name:<33} {fmt(r['rows_per_second'], ',.0f'):>7} {r['seconds']:>7.1f} "
            f"{fmt(r['inner_rows_per_second'], ',.0f'):>7} {r['cpu_seconds']:>7.1f} {r['pg_cpu_seconds']:>6.1f} "
            f"{fmt(r['rows_per_cpu_second'], ',.0f'):>9} {r['peak_rss_mb']:>6.0f} {fmt(r['cpu_pressure_pct'], '.0f'):>6}% "
            f"{fmt(r.get('ratio_to_copy_all'), '.0%'):>6} {fmt(r.get('ratio_to_copy_users'), '.0%'):>6} "
            f"{fmt(r.get('cpu_ratio_to_copy_all'), '.0%'):>10} {fmt(r.get('cpu_ratio_to_copy_users'), '.0%'):>10}"
        )
    print(
        "\nrows/s: rows / wall time of the child process (start-up included); inner/s: the child's own timer "
        "(import_users: its rows_per_second, file check included; COPY: connect → commit). rows/CPUs: rows / "
        "(child CPU + PostgreSQL CPU). CPUwait: share of the wall time some task on the machine waited for a "
        "CPU (PSI; high = other load). Ratios use the faster of the two COPY runs: 'all' = users+outbox+audit "
        "(fair), 'usr' = users only (strict)."
    )
    for base, best in baselines.items():
        print(f"baseline {base}: {best['rows_per_second']:,.0f} rows/s, {best['rows_per_cpu_second']:,.0f} rows/CPU-s")
    for key, result in f["targets"]["results"].items():
        r = runs[key]
        verdict = lambda ok: "met" if ok else "MISSED"  # noqa: E731
        print(
            f"{key}: peak RSS {r['peak_rss_mb']:.0f} MB < {TARGET_RSS_MB:.0f}: {verdict(result['rss_met'])}; "
            f"≥ {TARGET_RATIO:.0%} of COPY users+outbox+audit (fair): "
            f"{verdict(result['ratio_fair_met (users+outbox+audit)'])} ({r['ratio_to_copy_all']:.0%}); "
            f"of COPY users only (strict): {verdict(result['ratio_strict_met (users only)'])} "
            f"({r['ratio_to_copy_users']:.0%})"
        )
    profile = f.get("profile")
    if profile and profile.get("self_pct"):
        print(f"\npy-spy ({profile['samples']} samples, {profile['file']}), self time:")
        for name, pct in profile["self_pct"][:15]:
            print(f"  {pct:5.1f}%  {name}")
        print("inclusive:")
        for name, pct in profile["inclusive_pct"][:25]:
            print(f"  {pct:5.1f}%  {name}")


if __name__ == "__main__":
    main()
