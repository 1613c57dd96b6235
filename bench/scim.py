"""SCIM benchmark (not a test): the two figures of issue 18, each against its same-run reference.

    .venv/bin/python bench/scim.py [--creates 10000] [--tenant-users 100000] [--lookups 2000]

Starts its own PostgreSQL (the pgserver wheel) in a temporary directory, migrates, and measures in
this one process, through Django's test client (the whole middleware stack), as bench/groups.py does:

1. **create** — ``--creates`` users created over SCIM (``POST /scim/v2/tenants/{t}/Users``, one
   request at a time, with name, emails and a typed attribute) and as many over the REST API
   (``POST /api/v1/tenants/{t}/users/``), one of each in turn so that load from elsewhere on the
   machine hits both alike; target: SCIM's rate ≥ 60% of the REST API's.
2. **filter** — ``GET …/Users?filter=userName eq "…"`` on a tenant of ``--tenant-users`` users
   against a single PIP lookup (``GET /api/v1/pip/tenants/{t}/subjects/{id}``, the cache of this
   configuration: the development default), random users, one of each in turn; target: SCIM's p99
   ≤ 1.5 × the PIP's p99. Also the plans of the store's statement and of the lean door's.

Prints a JSON report (and writes it to ``bench/results/scim-<timestamp>.json``, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.lib.in_process import django_run  # noqa: E402 - after the repository is on the path

EXT = "urn:citadel:iam:scim:schemas:extension:tenant:2.0:User"


def p(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3


def client(tenant, scope: str):  # type: ignore[no-untyped-def]
    from django.test import Client

    from access.keys import api_key_create

    _, key = api_key_create(name=f"bench-{scope}", scopes=[scope], tenants=[tenant])
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}")


def create_scenario(tenant, creates: int) -> dict:  # type: ignore[no-untyped-def]
    scim, rest = client(tenant, "scim:provision"), client(tenant, "directory:write")
    times: dict[str, list[float]] = {"scim": [], "rest": []}
    for n in range(creates):
        body = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", EXT],
            "userName": f"scim-{n:06d}",
            "name": {"givenName": "Bench", "familyName": f"User {n}"},
            "displayName": f"Bench User {n}",
            "emails": [{"value": f"scim-{n:06d}@example.com", "type": "work", "primary": True}],
            EXT: {"level": n % 5},
        }
        start = time.perf_counter()
        response = scim.post(f"/scim/v2/tenants/{tenant.slug}/Users", json.dumps(body), "application/scim+json")
        times["scim"].append(time.perf_counter() - start)
        assert response.status_code == 201, response.content[:300]
        rest_body = {"external_id": f"rest-{n:06d}", "email": f"rest-{n:06d}@example.com",
                     "display_name": f"Bench User {n}", "attributes": {"level": n % 5}}  # fmt: skip
        start = time.perf_counter()
        response = rest.post(f"/api/v1/tenants/{tenant.slug}/users/", rest_body, content_type="application/json")
        times["rest"].append(time.perf_counter() - start)
        assert response.status_code == 201, response.content[:300]
    rate = {kind: len(t) / sum(t) for kind, t in times.items()}
    ratio = rate["scim"] / rate["rest"]
    return {
        "creates_each": creates,
        "scim_per_s": round(rate["scim"], 1),
        "rest_per_s": round(rate["rest"], 1),
        "scim_p50_ms": round(p(times["scim"], 0.5), 2),
        "rest_p50_ms": round(p(times["rest"], 0.5), 2),
        "ratio": round(ratio, 3),
        "target": "scim_per_s >= 0.6 * rest_per_s",
        "met": ratio >= 0.6,
    }


def filter_scenario(tenant, users: int, lookups: int) -> dict:  # type: ignore[no-untyped-def]
    from django.db import connection

    from users.models import User
    from users.services import users_upsert

    rows = [(n, {"external_id": f"u{n:06d}", "attributes": {"level": n % 5}}) for n in range(users)]
    for start in range(0, len(rows), 5000):
        users_upsert(tenant=tenant, rows=rows[start : start + 5000])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE users_user")  # statistics, as autovacuum keeps them on a live database
    scim, pip = client(tenant, "scim:provision"), client(tenant, "pip:read")
    picks = [f"u{random.randrange(users):06d}" for _ in range(lookups)]
    times: dict[str, list[float]] = {"scim": [], "pip": []}
    for name in picks[:50]:  # warm both paths (key memo, slug memo, connection)
        scim.get(f"/scim/v2/tenants/{tenant.slug}/Users", {"filter": f'userName eq "{name}"'})
        pip.get(f"/api/v1/pip/tenants/{tenant.slug}/subjects/{quote(name)}")
    for name in picks:
        start = time.perf_counter()
        response = scim.get(f"/scim/v2/tenants/{tenant.slug}/Users", {"filter": f'userName eq "{name}"'})
        times["scim"].append(time.perf_counter() - start)
        assert response.status_code == 200 and json.loads(response.content)["totalResults"] == 1
        start = time.perf_counter()
        response = pip.get(f"/api/v1/pip/tenants/{tenant.slug}/subjects/{quote(name)}")
        times["pip"].append(time.perf_counter() - start)
        assert response.status_code == 200
    from scim.listing import list_query, page
    from scim.user_store import UserStore
    from scim.users import user_resolver

    store = UserStore(tenant, "")
    queryset = store.queryset()
    query = list_query({"filter": 'userName eq "u000001"'})
    from scim.query import filter_condition

    resolve = user_resolver(lambda: store.definitions)
    filtered = queryset.filter(filter_condition(query.filter or "", resolve)).order_by("created_at", "id")[:200]
    plan = filtered.explain()
    from scim.lean import LOOKUP

    with connection.cursor() as cursor:  # the lean door's one statement (scim/lean.py)
        cursor.execute("EXPLAIN " + LOOKUP.format(column="slug"), ["u000001", 200, tenant.slug, True, []])
        lean_plan = [row[0] for row in cursor.fetchall()]
    assert page(queryset, query, resolve)[0] == 1
    ratio = p(times["scim"], 0.99) / p(times["pip"], 0.99)
    return {
        "tenant_users": User.objects.filter(tenant=tenant).count(),
        "lookups_each": lookups,
        "scim_filter_p50_ms": round(p(times["scim"], 0.5), 3),
        "scim_filter_p99_ms": round(p(times["scim"], 0.99), 3),
        "pip_p50_ms": round(p(times["pip"], 0.5), 3),
        "pip_p99_ms": round(p(times["pip"], 0.99), 3),
        "p99_ratio": round(ratio, 3),
        "median_ratio": round(statistics.median(times["scim"]) / statistics.median(times["pip"]), 3),
        "plan": plan.splitlines(),
        "lean_plan": lean_plan,
        "target": "scim p99 <= 1.5 * pip p99",
        "met": ratio <= 1.5,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--creates", type=int, default=10_000)
    parser.add_argument("--tenant-users", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--filter-only", action="store_true", help="Only the filter figure (no creates).")
    with django_run("scim", parser) as (args, report):
        from attributes.services import definition_create
        from tenants.services import tenant_create

        for slug in ("bench", "big"):
            tenant = tenant_create(slug=slug, name=slug)
            definition_create(tenant=tenant, key="level", type="integer")
            if slug == "bench":
                if not args.filter_only:
                    report["create"] = create_scenario(tenant, args.creates)
                    print(json.dumps(report["create"]), flush=True)
            else:
                report["filter"] = filter_scenario(tenant, args.tenant_users, args.lookups)
                shown = {k: v for k, v in report["filter"].items() if not k.endswith("plan")}
                print(json.dumps(shown), flush=True)


if __name__ == "__main__":
    main()
