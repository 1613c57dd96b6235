"""Groups benchmark (not a test): the three figures of issue 17, each against its same-run reference.

    .venv/bin/python bench/groups.py [--users 100000] [--groups 1000] [--lookups 2000] [--rounds 5]

Starts its own PostgreSQL (the pgserver wheel) in a temporary directory, migrates, and measures in
this one process, through Django's test client (the whole middleware stack and the PIP's lean door):

1. **lookup** — uncached single lookups of a user in 20 groups over 3 levels against a user in no
   group, one of each in turn (``--rounds`` × ``--lookups`` each); target: ratio of the median
   times ≤ 1.25. Also the SQL statement alone, and the number of statements per lookup.
2. **bulk add** — ``--users`` users added to one group with ``POST …/groups/{id}/members/`` in
   requests of 1,000 ids; target ≥ 5,000 members/s. Reference: the same rows inserted by a bare
   ``INSERT … SELECT unnest`` per 1,000 (no HTTP, no validation, no event).
3. **bundle** — the OPA bundle of the ``--users`` users in ``--groups`` groups (a tenth of them
   containing the others; each user in two groups); peak RSS growth of this process while it builds
   it (sampled from /proc) and tracemalloc's peak; target < 100 MB. Reference: the same tenant's
   bundle before it had any group.

Prints a JSON report (and writes it to ``bench/results/groups-<timestamp>.json``, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.lib.in_process import django_run  # noqa: E402 - after the repository is on the path


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def clients(tenant):  # type: ignore[no-untyped-def]
    from django.test import Client

    from access.keys import api_key_create

    _, pip_key = api_key_create(name="bench-pip", scopes=["pip:read"], tenants=[tenant])
    _, write_key = api_key_create(name="bench-write", scopes=["directory:write"], tenants=[tenant])
    return Client(HTTP_AUTHORIZATION=f"Bearer {pip_key}"), Client(HTTP_AUTHORIZATION=f"Bearer {write_key}")


def lookup_scenario(tenant, pip, lookups: int, rounds: int) -> dict:  # type: ignore[no-untyped-def]
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from groups import services
    from resolver.effective import max_depth
    from resolver.selectors import BY_TENANT_SLUG
    from tests.factories import GroupFactory, UserFactory

    lonely, member = UserFactory(tenant=tenant, external_id="lonely"), UserFactory(tenant=tenant, external_id="member")
    top = [GroupFactory(tenant=tenant, key=f"top-{i}", attributes={"department": f"d{i}"}) for i in range(2)]
    middle = [GroupFactory(tenant=tenant, key=f"mid-{i}", priority=i) for i in range(6)]
    leaves = [GroupFactory(tenant=tenant, key=f"leaf-{i}", attributes={"roles": [f"r{i}"]}) for i in range(12)]
    for i, group in enumerate(middle):
        services.group_members_add(group=top[i % 2], ids=[str(group.id)])
    for i, group in enumerate(leaves):
        services.group_members_add(group=middle[i % 6], ids=[str(group.id)])
        services.group_members_add(group=group, ids=[str(member.id)])
    paths = {ext: f"/api/v1/pip/tenants/{tenant.slug}/subjects/{ext}" for ext in ("lonely", "member")}
    body = json.loads(pip.get(paths["member"]).content)
    assert len(body["attributes"]["groups"]) == 20, body
    statements = {}
    for ext, path in paths.items():
        with CaptureQueriesContext(connection) as queries:
            assert pip.get(path).status_code == 200
        statements[ext] = len(queries)
    # One request of each in turn, each timed alone: a burst of load from elsewhere on the machine
    # hits both sides alike, and the medians ignore it.
    http: dict[str, list[float]] = {"lonely": [], "member": []}
    sql: dict[str, list[float]] = {"lonely": [], "member": []}
    with connection.cursor() as cursor:
        for _ in range(rounds * lookups):
            for ext, path in paths.items():
                start = time.perf_counter()
                pip.get(path)
                http[ext].append(time.perf_counter() - start)
                start = time.perf_counter()
                cursor.execute(BY_TENANT_SLUG, [max_depth(), tenant.slug, ext])
                cursor.fetchone()
                sql[ext].append(time.perf_counter() - start)
    median = {kind: {ext: statistics.median(times) * 1e6 for ext, times in d.items()} for kind, d in
              (("http", http), ("sql", sql))}  # fmt: skip
    ratio = median["http"]["member"] / median["http"]["lonely"]
    del lonely
    return {
        "statements_per_lookup": statements,
        "requests_each": rounds * lookups,
        "http_median_us_no_groups": round(median["http"]["lonely"], 1),
        "http_median_us_20_groups": round(median["http"]["member"], 1),
        "ratio": round(ratio, 3),
        "sql_median_us_no_groups": round(median["sql"]["lonely"], 1),
        "sql_median_us_20_groups": round(median["sql"]["member"], 1),
        "target": "ratio <= 1.25",
        "met": ratio <= 1.25,
    }


def bulk_scenario(tenant, writer, user_ids: list[str]) -> dict:  # type: ignore[no-untyped-def]
    from django.db import connection, transaction

    from core.guards import domain_write
    from groups import services

    group, reference = (
        services.group_create(tenant=tenant, key="everyone"),
        services.group_create(tenant=tenant, key="ref"),
    )
    url = f"/api/v1/tenants/{tenant.slug}/groups/{group.id}/members/"
    chunks = [user_ids[i : i + 1000] for i in range(0, len(user_ids), 1000)]
    start = time.perf_counter()
    for chunk in chunks:
        response = writer.post(url, {"ids": chunk}, content_type="application/json")
        assert response.status_code == 200, response.content[:500]
    ours = time.perf_counter() - start
    start = time.perf_counter()
    for chunk in chunks:
        with transaction.atomic(), domain_write(), connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO groups_membership (group_id, user_id, child_id, created_at) "
                "SELECT %s, u, NULL, now() FROM unnest(%s::uuid[]) AS u",
                [reference.id, chunk],
            )
    bare = time.perf_counter() - start
    for each in (group, reference):
        services.group_delete(group=each)
    return {
        "members": len(user_ids),
        "members_per_s": round(len(user_ids) / ours),
        "reference_bare_insert_rows_per_s": round(len(user_ids) / bare),
        "ratio_to_reference": round(bare / ours, 3),
        "target": "members_per_s >= 5000",
        "met": len(user_ids) / ours >= 5000,
    }


def measure_bundle(tenant) -> dict:  # type: ignore[no-untyped-def]
    from django.db import connection

    from resolver.bundle import bundle_build, bundle_revision

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE groups_membership")  # statistics, as a live database has them
    base, peak, done = rss_mb(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    tracemalloc.start()
    start = time.perf_counter()
    bundle = bundle_build(str(tenant.id), bundle_revision(str(tenant.id)))
    seconds = time.perf_counter() - start
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    done.set()
    sampler.join()
    bundle.file.close()
    return {"seconds": round(seconds, 2), "rss_growth_mb": round(max(peak[0], rss_mb()) - base, 1),
            "tracemalloc_peak_mb": round(traced, 1), "bundle_bytes": bundle.size}  # fmt: skip


def nest_groups(tenant, user_ids: list[str], count: int) -> None:  # type: ignore[no-untyped-def]
    """``count`` groups: the first tenth contain nine others each; every user in two of the others."""
    from groups import services

    groups = [
        services.group_create(tenant=tenant, key=f"g-{i:04d}", priority=i % 7, attributes={"department": f"d{i % 13}"})
        for i in range(count)
    ]
    outer, inner = groups[: count // 10], groups[count // 10 :]
    for index, group in enumerate(outer):
        services.group_members_add(group=group, ids=[str(g.id) for g in inner[index * 9 : index * 9 + 9]])
    for index, group in enumerate(inner):
        members = user_ids[index :: len(inner)] + user_ids[(index + 1) % len(inner) :: len(inner)]
        for start in range(0, len(members), 1000):
            services.group_members_add(group=group, ids=members[start : start + 1000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lookup-only", action="store_true", help="Only the lookup figure (no 100,000 users).")
    with django_run("groups", parser) as (args, report):
        from attributes.services import definition_create
        from tenants.services import tenant_create
        from users.models import User
        from users.services import users_upsert

        tenant = tenant_create(slug="bench", name="Bench")
        definition_create(tenant=tenant, key="department", type="string", target="user_and_group")
        definition_create(tenant=tenant, key="roles", type="string_list", target="user_and_group", merge="union")
        pip, writer = clients(tenant)
        report["lookup"] = lookup_scenario(tenant, pip, args.lookups, args.rounds)
        print(json.dumps(report["lookup"]), flush=True)
        if not args.lookup_only:
            big = tenant_create(slug="big", name="Big")
            definition_create(tenant=big, key="department", type="string", target="user_and_group")
            rows = [(n, {"external_id": f"u{n:06d}"}) for n in range(args.users)]
            for start in range(0, len(rows), 5000):
                users_upsert(tenant=big, rows=rows[start : start + 5000])
            user_ids = [
                str(pk) for pk in User.objects.filter(tenant=big).order_by("external_id").values_list("id", flat=True)
            ]
            _, writer = clients(big)
            report["bundle_reference_no_groups"] = measure_bundle(big)
            report["bulk_add"] = bulk_scenario(big, writer, user_ids)
            print(json.dumps(report["bulk_add"]), flush=True)
            nest_groups(big, user_ids, args.groups)
            report["bundle"] = {**measure_bundle(big), "target": "rss_growth_mb < 100"}
            report["bundle"]["met"] = report["bundle"]["rss_growth_mb"] < 100


if __name__ == "__main__":
    main()
