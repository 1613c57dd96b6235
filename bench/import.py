"""Import benchmark: ``manage.py import_users`` against PostgreSQL ``COPY`` of the same rows (not a test).

    .venv/bin/python bench/import.py [--users 100000] [--attributes 10] [--debug-run] [--profile]

Starts its own PostgreSQL (the pgserver wheel's binaries, ``devtools.harness``: it dies with the
benchmark) in a temporary directory, migrates
(``manage.py migrate`` as a subprocess), creates one tenant per run with ``--attributes`` attribute
definitions (``devtools.demo.generated_definitions``), writes a JSON Lines file of ``--users`` users
with one value per definition (``generated_value``), then measures each run as a subprocess: wall
time, peak RSS (``VmHWM`` polled, and ``ru_maxrss`` from ``wait4``), its CPU time, the PostgreSQL
server's CPU time (postmaster and children, from /proc) and the CPU pressure of the machine (PSI):

* **COPY users only** — psycopg ``cursor.copy()`` of the file's rows into ``users_user`` (ids,
  timestamps and version 1 generated), chunks of 10,000 rows, one transaction, into an empty tenant;
* **COPY users+outbox+audit** — the same plus one ``UserCreated`` outbox row (the same CloudEvents
  envelope, built by ``outbox.events.envelope``) and one audit record per user (its changes from
  ``audit.services.diff``), as the import writes; columns from the models' metadata
  (bench/lib/import_copy.py);
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
import json
import os
import platform
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO))

from bench.lib.import_copy import COPY_CHUNK, copy_child  # noqa: E402 - after the repository is on the path
from bench.lib.import_report import TARGET_RATIO, TARGET_RSS_MB, print_table, profile_import  # noqa: E402
from bench.lib.import_setup import child_env, counts, database_facts, set_up, settle, versions  # noqa: E402
from bench.lib.measure import PostgresCpu, measured  # noqa: E402
from devtools.harness import Postgres  # noqa: E402
from devtools.harness.roles import manage_output  # noqa: E402


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


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
    if not args.keep:  # registered first, so it runs last: after the harness has stopped PostgreSQL
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    (tmp / "run").mkdir(mode=0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(tmp / "run"))
    os.environ["IAM_DATA_DIR"] = str(tmp / "data")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    server = None
    try:
        log(f"starting PostgreSQL in {tmp}")
        # As pgserver serves it: the unix socket only, the server's default settings (fsync on).
        server = Postgres(host="", settings={}).init().start()
        database_url = server.create_database("bench")
        env = child_env(tmp, database_url)
        env["BENCH_ROWS"] = str(args.users)
        log("migrating")
        manage_output(env, "migrate", "--noinput")
        slugs = ["copy-users-1", "copy-all-1", "ours-partial", "ours-atomic", "copy-users-2", "copy-all-2"]
        slugs += (["ours-debug"] if args.debug_run else []) + (["ours-profile"] if args.profile else [])
        file = tmp / "users.jsonl"
        log(f"creating {len(slugs)} tenants, writing {args.users:,} users × {args.attributes} attributes")
        created = set_up(env, slugs, args, file)
        tenants, prefix, source = created["tenants"], created["prefix"], created["source"]
        file_bytes = file.stat().st_size
        empty = tmp / "empty.jsonl"
        empty.write_text("")
        pg = PostgresCpu(server.data)

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


if __name__ == "__main__":
    main()
