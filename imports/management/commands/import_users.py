"""``manage.py import_users --tenant SLUG FILE [--format csv|jsonl] [--mode atomic|partial] [--dry-run]``.

Idempotent upsert by external id, validated like the API, one event per changed user and none for
unchanged rows. A malformed file (encoding, columns, delimiter, truncated JSON) is refused before
anything is written. Invalid rows go to an error report (``--report``, default ``FILE.errors.csv``).
Exit code: 0 all rows valid, 1 some rows invalid (atomic mode: nothing written), 2 malformed file.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from access.principals import Principal
from core.actors import acting_as
from core.errors import NotFound
from imports.formats import file_format
from imports.transfer import FileFormatError, users_import, write_error_report
from tenants.models import Tenant
from tenants.selectors import tenant_get


class Command(BaseCommand):
    help = "Import users (CSV or JSON Lines) into a tenant: idempotent upsert by external id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--tenant", required=True, help="Tenant slug or id.")
        parser.add_argument("--format", choices=["csv", "jsonl"], default=None, help="Default: from the file name.")
        parser.add_argument("--mode", choices=["atomic", "partial"], default="atomic")
        parser.add_argument("--dry-run", action="store_true", help="Validate and count; write nothing.")
        parser.add_argument("--report", type=Path, default=None, help="Error report (CSV); default FILE.errors.csv.")
        parser.add_argument("--json", action="store_true", help="Print the summary as JSON.")

    def handle(self, *args: object, **options: Any) -> None:
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        try:
            tenant = tenant_get(ref=str(options["tenant"]), queryset=Tenant.objects.filter(deleted_at__isnull=True))
        except NotFound:
            raise CommandError(f"no tenant {options['tenant']!r}") from None
        fmt = file_format(declared=options["format"], name=path.name, fallback="jsonl")
        started = time.monotonic()
        try:
            actor = Principal("system", f"import_users:{path.name}", frozenset(), None)
            with (
                path.open("rb") as stream,
                tqdm(unit="rows", desc="import", file=sys.stderr, disable=None) as progress,
                acting_as(actor),
            ):
                result = users_import(
                    tenant=tenant,
                    stream=stream,
                    fmt=fmt,
                    mode=str(options["mode"]),
                    dry_run=bool(options["dry_run"]),
                    progress=progress,
                )
        except FileFormatError as error:
            self.stderr.write(f"{path}: {error} — nothing was imported")
            raise SystemExit(2) from None
        report = result.report
        seconds = max(time.monotonic() - started, 1e-6)
        if report.errors:
            report_path = options["report"] or path.with_name(path.name + ".errors.csv")
            with open(report_path, "w", newline="", encoding="utf-8") as handle:
                write_error_report(handle, report)
        summary = {
            "created": report.created,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "invalid": report.invalid,
            "rows": result.rows,
            "written": result.written,
            "rows_per_second": round(result.rows / seconds, 1),
        }
        if options["json"]:
            self.stdout.write(json.dumps(summary))
        else:
            state = "written" if result.written else "NOT written (dry run or atomic import with invalid rows)"
            self.stdout.write(
                f"created {report.created}, updated {report.updated}, unchanged {report.unchanged}, "
                f"invalid {report.invalid} — {result.rows} rows at {summary['rows_per_second']}/s, {state}"
            )
        if report.invalid:
            raise SystemExit(1)
