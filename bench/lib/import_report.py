"""bench/import.py's figures: the py-spy profile (optional) and the table."""

from __future__ import annotations

import collections
import re
import subprocess
import sys
from pathlib import Path

from devtools.harness import REPO

TARGET_RSS_MB = 300.0
TARGET_RATIO = 0.25


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
