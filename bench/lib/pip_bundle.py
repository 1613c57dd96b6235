"""bench/pip.py's OPA bundle measurement (RSS of the serving worker, and in-process) and py-spy profiles."""

from __future__ import annotations

import http.client
import io
import json
import shutil
import subprocess
import tarfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.lib.http import http_get, log
from bench.lib.measure import proc_kb
from bench.lib.pip_report import summarize_profile
from bench.lib.pip_runs import TENANT, lua_script
from devtools.harness import REPO
from devtools.harness.roles import BIN

if TYPE_CHECKING:
    from bench.lib.web import Gunicorn

RESULTS_DIR = REPO / "bench" / "results"
BUNDLE_IN_PROCESS = (Path(__file__).resolve().parent / "bundle_in_process.py").read_text()


def reset_peak_rss(pid: int) -> bool:
    """Writing 5 to clear_refs resets VmHWM (Linux >= 4.0), so VmHWM is the peak from now on."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class BundleAndProfile:
    """Mixed into bench/pip.py's ``Bench``."""

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
        extra = {"BATCH": str(self.args.batch)} if kind == "batch" else {}
        self.wrk.run(f"profile-{kind}", lua_script(kind, key, self.args.users, **extra), server.port, seconds)
        spy.wait(60)
        if not raw.exists():
            return {"skipped": f"py-spy failed: {spy.stderr.read().decode()[-500:] if spy.stderr else ''}"}
        summary = summarize_profile(raw)
        log(f"py-spy profile of {stack}/{kind} in {raw.relative_to(REPO)}:")
        for row in summary["inclusive"][:40]:
            log(f"  {row['percent']:5.1f}%  {row['frame']}")
        log("  self (leaf) time:")
        for row in summary["self"][:15]:
            log(f"  {row['percent']:5.1f}%  {row['frame']}")
        return {"file": str(raw.relative_to(REPO)), **summary}
