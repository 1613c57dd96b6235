"""bench/pip.py's figures: ratios to the same round's baseline, medians, targets, the environment, the table."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from devtools.harness import REPO

if TYPE_CHECKING:
    from devtools.harness import RedisServer as Redis

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


class Evaluate:
    """Mixed into bench/pip.py's ``Bench``."""

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
        for stack, plain in (("db", "single, uncached"), ("redis", "single, cached")):
            # Issue 19: a key with a release policy, reported beside the same lookup without one.
            found, base = (
                by_name.get((stack, f"{plain}, {self.args.policy_keys}-key policy")),
                by_name.get((stack, plain)),
            )
            if found is not None and base is not None:
                found["rps_vs_no_policy"] = round(found["rps"] / base["rps"], 3)
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


def target(name: str, value: float, op: str, limit: float) -> dict:
    met = {">=": value >= limit, "<=": value <= limit, "<": value < limit}[op]
    return {"target": f"{name} {op} {limit:g}", "value": value, "met": met}


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
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
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
