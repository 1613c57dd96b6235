"""Measuring a child process: wall time, peak RSS, its CPU and PostgreSQL's, the machine's CPU pressure."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from devtools.harness import REPO, die_with_parent


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
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=None, preexec_fn=die_with_parent(signal.SIGTERM)
        )
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


def save_report(kind: str, report: dict) -> Path:
    """Print ``report`` and write it to ``bench/results/<kind>-<UTC time>.json`` (git-ignored)."""
    from datetime import UTC, datetime

    print(json.dumps(report, indent=2))
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    path = results / f"{kind}-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(report, indent=2))
    return path
