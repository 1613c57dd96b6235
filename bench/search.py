"""Benchmark of attribute search beside the PIP single lookup, in the same run (not a test).

    .venv/bin/python bench/search.py [--users 1000000] [--others 100000] [--tenants 9]
                                     [--clients 8] [--duration 20] [--workers 3]

Starts its own PostgreSQL (pgserver) in a temporary directory; migrates; creates the tenant ``big``
with 10 attribute definitions (5 of them searchable) and ``--tenants`` other tenants with the same
keys; loads ``--users`` users into ``big`` and ``--others`` into each other tenant with
``INSERT … SELECT generate_series`` (the GIN index is dropped during the load and rebuilt, as a bulk
load would); builds the searchable keys' indexes through ``search_index_sync`` (the worker's code);
prints the PostgreSQL plan of each operator class; serves the app with gunicorn (production
gunicorn config, ``--workers`` sync workers); and has ``--clients`` threads, each with a kept-alive
connection, ask for first pages of 50 (and, as the yardstick, PIP single lookups) for
``--duration`` seconds per scenario. Prints p50/p99 per scenario and each p99's ratio to the PIP's.
Self-contained on purpose, so that it can move onto devtools/harness.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"
SCENARIOS = {  # name → (class, a function of a random int giving the path's query)
    "pip single lookup": ("yardstick", lambda r: None),
    "eq (enum)": ("equality", lambda r: {"q": f"department eq d{r % 100}"}),
    "in (enum, 2 values)": ("equality", lambda r: {"q": f"department in (d{r % 100}, d{(r + 1) % 100})"}),
    "eq (integer, searchable)": ("equality", lambda r: {"q": f"clearance eq {r % 200}"}),
    "has (string_list)": ("list membership", lambda r: {"q": f"groups has g{r % 300}"}),
    "between (integer)": ("range", lambda r: {"q": f"clearance between ({r % 200}, {r % 200})"}),
    "ge (number)": ("range", lambda r: {"q": "score ge 99.5"}),
    "between (date)": ("range", lambda r: {"q": f"hired between (2000-{1 + r % 12:02d}-01, 2000-{1 + r % 12:02d}-07)"}),
    "startswith (string)": ("prefix", lambda r: {"q": f"name startswith name{r % 9000 + 1000}"}),
    "three conditions": (
        "3 conditions",
        lambda r: {"q": f"clearance ge 100 AND department eq d{r % 100} AND contractor eq false"},
    ),
}
LOAD = """
import json, time
from django.db import connection
from attributes.models import AttributeDefinition
from attributes.services import definition_create, definition_update
from attributes.search_indexes import search_index_sync
from tenants.services import tenant_create
KEYS = {"clearance": ("integer", True), "score": ("number", True), "department": ("string", False),
        "name": ("string", True), "hired": ("date", True), "seen": ("datetime", True),
        "contractor": ("boolean", False), "groups": ("string_list", False), "region": ("string", False),
        "level": ("integer", False)}
SEED = '''INSERT INTO users_user (id, tenant_id, external_id, email, display_name, status, attributes,
  version, created_at, updated_at)
SELECT gen_random_uuid(), %s, 'u' || i, '', '', 'active', jsonb_build_object(
  'clearance', i %% 200, 'score', (i %% 1000) / 10.0, 'department', 'd' || (i %% 100), 'name', 'name' || i,
  'hired', to_char(date '2000-01-01' + (i %% 5000), 'YYYY-MM-DD'),
  'seen', to_char(timestamp '2020-01-01' + i * interval '1 minute', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
  'contractor', i %% 50 = 0, 'groups', jsonb_build_array('g' || (i %% 300), 'all'),
  'region', 'r' || (i %% 7), 'level', i %% 10), 1, now() - i * interval '1 second', now()
FROM generate_series(1, %s) AS i'''
out = {}
tenants = [tenant_create(slug="big", name="Big")] + [tenant_create(slug=f"t{n}", name=f"T{n}") for n in range(TENANTS)]
for tenant in tenants:
    for key, (kind, _) in KEYS.items():
        definition_create(tenant=tenant, key=key, type=kind)
started = time.perf_counter()
with connection.cursor() as cursor:
    cursor.execute("SET statement_timeout = 0")
    cursor.execute("DROP INDEX user_attributes_gin")
    for tenant in tenants:
        cursor.execute(SEED, [str(tenant.id), USERS if tenant.slug == "big" else OTHERS])
    out["load_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    cursor.execute("CREATE INDEX user_attributes_gin ON users_user USING gin (attributes jsonb_path_ops)")
    out["gin_seconds"] = time.perf_counter() - started
    cursor.execute("VACUUM ANALYZE users_user")
builds = {}
for key, (_, searchable) in KEYS.items():
    if searchable:
        definition = definition_update(definition=AttributeDefinition.objects.get(tenant=tenants[0], key=key), searchable=True)
        started = time.perf_counter()
        index = search_index_sync(definition_id=definition.id)
        builds[key] = [round(time.perf_counter() - started, 2), index.state, index.error]
out["index_builds"] = builds
print("RESULT " + json.dumps(out))
"""
PLANS = """
import json
from django.http import QueryDict
from attributes.selectors import definitions_for
from tenants.models import Tenant
from users.filters import attribute_search
from users.selectors import users_of
tenant = Tenant.objects.get(slug="big")
definitions = definitions_for(tenant_id=tenant.id, target="user")
plans = {}
for name, q in QUERIES.items():
    queryset = users_of(tenant=tenant).filter(attribute_search(QueryDict(q), definitions)).order_by("-created_at")
    plans[name] = queryset[:51].explain()
print("RESULT " + json.dumps(plans))
"""


def manage(env: dict, *args: str, code: str | None = None) -> str:
    command = [sys.executable, str(ROOT / "manage.py"), *args] + (["shell", "-c", code] if code else [])
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=7200)
    if done.returncode:
        raise SystemExit(f"{args or 'shell'} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def result(output: str) -> dict:
    return json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[7:])


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_clients(port: int, key: str, scenario, clients: int, duration: float) -> list[float]:  # type: ignore[no-untyped-def]
    latencies: list[float] = []
    failures: list[str] = []
    deadline = time.monotonic() + duration

    def client(seed: int) -> None:
        rng = random.Random(seed)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < deadline:
            r = rng.randrange(1, 10**6)
            params = scenario(r)
            if params is None:
                path = f"/api/v1/pip/tenants/big/subjects/u{r % ARGS.users + 1}"
            else:
                path = "/api/v1/tenants/big/users/?" + urlencode({**params, "page_size": 50})
            started = time.perf_counter()
            connection.request("GET", path, headers={"Authorization": f"Bearer {key}"})
            response = connection.getresponse()
            response.read()
            latencies.append(time.perf_counter() - started)
            if response.status != 200:
                failures.append(f"{response.status} {path}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"{len(failures)} failed requests, e.g. {failures[:3]}")
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


def main() -> None:
    import pgserver

    workdir = Path(tempfile.mkdtemp(prefix="iam-bench-search-"))
    server = pgserver.get_server(workdir / "pg", cleanup_mode="stop")
    gunicorn = None
    try:
        env = {**os.environ, "IAM_ENV": "development", "IAM_EMBEDDED": "off", "IAM_DATA_DIR": str(workdir),
               "DATABASE_URL": server.get_uri("postgres"), "EVENT_BUS_URL": "nats://127.0.0.1:9",
               "DB_STATEMENT_TIMEOUT_MS": "60000", "API_THROTTLE_RATE": "1000000/s", "PIP_THROTTLE_RATE": "1000000/s",
               "DEBUG": "false", "LOG_LEVEL": "WARNING"}  # fmt: skip
        manage(env, "migrate", "--no-input")
        code = LOAD.replace("TENANTS", str(ARGS.tenants)).replace("USERS", str(ARGS.users))
        loaded = result(manage(env, code=code.replace("OTHERS", str(ARGS.others))))
        print(json.dumps(loaded, indent=1))
        queries = {name: urlencode(make(7)) for name, (_, make) in SCENARIOS.items() if make(7)}
        plans = result(manage(env, code=PLANS.replace("QUERIES", repr(queries))))
        for name, plan in plans.items():
            print(f"--- plan: {name} ({queries[name]})\n{plan}")
        key = manage(env, "create_api_key", "--name", "bench", "--scopes", "directory:read,pip:read").strip()
        port = free_port()
        gunicorn = subprocess.Popen(
            [str(GUNICORN), "iam_project.wsgi", "-c", "iam_project/gunicorn.conf.py", "--no-control-socket",
             "--workers", str(ARGS.workers), "--bind", f"127.0.0.1:{port}"],
            env={**env, "DB_CONN_MAX_AGE": "600"}, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=ARGS.log.open("w"),
        )  # fmt: skip
        for _ in range(100):
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/healthz")
                break
            except OSError:
                time.sleep(0.2)
        rows = []
        for name, (kind, make) in SCENARIOS.items():
            run_clients(port, key, make, ARGS.clients, 2)  # warm-up
            latencies = run_clients(port, key, make, ARGS.clients, ARGS.duration)
            rows.append((name, kind, len(latencies), percentile(latencies, 0.5), percentile(latencies, 0.99)))
        yardstick = rows[0][4]
        print(f"\nusers: {ARGS.users} in big + {ARGS.tenants} x {ARGS.others}; {ARGS.clients} clients, "
              f"{ARGS.workers} gunicorn workers, {ARGS.duration}s per scenario")  # fmt: skip
        print("| scenario | class | requests | p50 ms | p99 ms | p99 / PIP p99 |\n|---|---|---|---|---|---|")
        for name, kind, count, p50, p99 in rows:
            print(f"| {name} | {kind} | {count} | {p50:.1f} | {p99:.1f} | {p99 / yardstick:.2f} |")
        print(f"median p50 over searches: {statistics.median(r[3] for r in rows[1:]):.1f} ms")
    finally:
        if gunicorn is not None:
            gunicorn.terminate()
            gunicorn.wait(30)
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--others", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=9)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--log", type=Path, default=Path(tempfile.gettempdir()) / "bench-search-web.log")
    ARGS = parser.parse_args()
    main()
