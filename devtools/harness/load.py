"""Load and its cost: a ``wrk`` driver and a CPU meter by process tree (benchmarks on a shared host)."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path

from devtools.harness.children import die_with_parent


class Wrk:
    """Runs ``wrk`` with a Lua script whose ``done()`` prints one ``WRKJSON {...}`` line (see bench/lua/common.lua)."""

    def __init__(self, workdir: Path, threads: int, connections: int) -> None:
        if shutil.which("wrk") is None:
            raise FileNotFoundError("wrk is not on PATH (Debian/Ubuntu: apt-get install wrk; macOS: brew install wrk)")
        self.workdir = workdir
        self.threads = threads
        self.connections = connections
        self.version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0]

    def command(self, name: str, script: str, port: int, duration: float) -> list[str]:
        path = self.workdir / f"{name.replace(' ', '_').replace(',', '').replace('/', '-')}.lua"
        path.write_text(script)
        seconds = max(1, round(duration))  # wrk takes whole seconds only ("-d3.3s" is an error)
        cmd = ["wrk", f"-t{self.threads}", f"-c{self.connections}", f"-d{seconds}s", "--timeout", "10s"]
        return [*cmd, "--latency", "-s", str(path), f"http://127.0.0.1:{port}"]

    def start(self, name: str, script: str, port: int, duration: float) -> subprocess.Popen:
        """wrk in the background (stopped with SIGINT by the caller); dies with this process."""
        return subprocess.Popen(
            self.command(name, script, port, duration),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )

    def run(self, name: str, script: str, port: int, duration: float, cpu: CpuMeter | None = None) -> dict:
        cmd = self.command(name, script, port, duration)
        before = cpu.snapshot() if cpu else None
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=duration + 120, preexec_fn=die_with_parent(signal.SIGTERM)
        )
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
    """CPU used during a run, in cores: by each of the benchmark's servers, by wrk, and by everything else.

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
