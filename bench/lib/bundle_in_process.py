"""Run by bench/pip.py with ``manage.py shell -c`` (never imported): the bundle built in one process."""

import json
import time
import tracemalloc
from pathlib import Path

from resolver.bundle import bundle_build, bundle_revision
from tenants.models import Tenant


def kb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])


tenant_id = str(Tenant.objects.get(slug="__TENANT__").id)
started = time.perf_counter()
revision = bundle_revision(tenant_id)
revision_seconds = time.perf_counter() - started
bundle_build(tenant_id, revision).file.close()  # imports, connection, first chunked cursor
before = kb("VmRSS")
try:
    Path("/proc/self/clear_refs").write_text("5")
    reset = True
except OSError:
    reset = False
started = time.perf_counter()
bundle = bundle_build(tenant_id, revision)
build_seconds = time.perf_counter() - started
size = bundle.size
bundle.file.close()
peak = kb("VmHWM") if reset else None
tracemalloc.start()
bundle_build(tenant_id, revision).file.close()
current, traced_peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
print(
    json.dumps(
        {
            "revision_seconds": round(revision_seconds, 3),
            "build_seconds": round(build_seconds, 3),
            "bytes": size,
            "rss_before_mb": round(before / 1024, 1),
            "rss_growth_peak_mb": round((peak - before) / 1024, 1) if reset else None,
            "tracemalloc_peak_mb": round(traced_peak / 2**20, 1),
        }
    )
)
