"""Bulk import and export of a tenant's users (CSV and JSON Lines), streamed in bounded memory.

An import reads a binary stream once: its rows are upserted in batches through
:func:`users.services.users_upsert` (the same validation as the API) inside one transaction, so a
file found malformed on any line (encoding, columns, delimiter, JSON) is refused with nothing written.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson
from django.db import connection, reset_queries, transaction

from access.release import FULL, Release, restrict
from attributes.selectors import pii_keys
from core.client_json import BadJSON, decode_json
from core.csv_cells import cell_unescape, csv_writer
from tenants.models import Tenant
from users.services import UpsertReport, users_upsert
from users.validation import USER_FIELDS

BATCH_ROWS = 1000
CSV_COLUMNS = ["external_id", "email", "display_name", "status", "attributes"]


class FileFormatError(Exception):
    """The file cannot be read as the format it claims: nothing is imported."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line


def read_rows(stream: IO[bytes], fmt: str) -> Iterator[tuple[int, Any]]:
    """(line number, row) pairs; raises :class:`FileFormatError` on a malformed file."""
    if fmt == "jsonl":
        yield from _jsonl_rows(stream)
    elif fmt == "csv":
        yield from _csv_rows(stream)
    else:
        raise FileFormatError(0, f"unknown format {fmt!r} (csv or jsonl)")


def _jsonl_rows(stream: IO[bytes]) -> Iterator[tuple[int, Any]]:
    for number, raw in enumerate(stream, start=1):
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise FileFormatError(number, f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
        if not text.strip():
            continue
        try:
            row = decode_json(text)
        except BadJSON as exc:
            raise FileFormatError(number, _bad_json_message(exc)) from None
        if not isinstance(row, dict):
            raise FileFormatError(number, "each line must be a JSON object")
        yield number, row


def _bad_json_message(exc: BadJSON, prefix: str = "") -> str:
    if exc.rule == "syntax":
        return f"not valid JSON ({exc.detail.removeprefix('malformed JSON: ')}); a truncated file?"
    pointer = prefix + ("" if exc.pointer == "/" else exc.pointer)
    return f"{pointer or '/'}: {exc.detail}"


def _csv_rows(stream: IO[bytes]) -> Iterator[tuple[int, Any]]:
    wrapper = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="strict", newline="")
    try:
        reader = csv.reader(wrapper)
        try:
            header = next(reader, None)
            if header is None:
                raise FileFormatError(1, "empty file: a header row is needed")
            if len(header) == 1 and any(sep in header[0] for sep in (";", "\t", "|")):
                raise FileFormatError(1, "wrong delimiter: columns must be separated by commas")
            unknown = sorted(set(header) - set(USER_FIELDS))
            if unknown:
                raise FileFormatError(1, f"unknown columns: {', '.join(unknown)} (allowed: {', '.join(CSV_COLUMNS)})")
            if "external_id" not in header:
                raise FileFormatError(1, "missing column: external_id")
            for record in reader:
                number = reader.line_num
                if not record:
                    continue
                if len(record) != len(header):
                    raise FileFormatError(number, f"{len(record)} fields where the header has {len(header)}")
                row: dict[str, Any] = dict(zip(header, map(cell_unescape, record), strict=True))
                if row.get("attributes"):
                    try:
                        row["attributes"] = decode_json(row["attributes"])
                    except BadJSON as exc:
                        if exc.rule != "syntax":
                            raise FileFormatError(number, _bad_json_message(exc, "/attributes")) from None
                        # else left as text: the row is reported invalid ("attributes must be an object")
                else:
                    row.pop("attributes", None)
                yield number, row
        except UnicodeDecodeError as exc:
            raise FileFormatError(reader.line_num + 1, f"not UTF-8 ({exc.reason})") from None
        except csv.Error as exc:
            raise FileFormatError(reader.line_num, f"malformed CSV ({exc})") from None
    finally:
        wrapper.detach()  # the caller's stream stays open


@dataclass
class ImportResult:
    report: UpsertReport = field(default_factory=UpsertReport)
    rows: int = 0
    written: bool = False


class AbortImport(Exception):
    """Raised inside the import's transaction to roll it back (atomic mode with invalid rows, dry run)."""


def users_import(
    *, tenant: Tenant, stream: IO[bytes], fmt: str, mode: str = "partial", dry_run: bool = False, progress: Any = None
) -> ImportResult:
    """Import a file into ``tenant``. ``atomic``: all or nothing; ``partial``: valid rows, invalid ones reported.

    The file is read once, in batches, inside one transaction: a malformed line anywhere raises
    :class:`FileFormatError` and rolls back every batch before it.
    """
    result = ImportResult()

    def batches() -> Iterator[list[tuple[int, Any]]]:
        batch: list[tuple[int, Any]] = []
        for item in read_rows(stream, fmt):
            batch.append(item)
            if len(batch) >= BATCH_ROWS:
                yield batch
                batch = []
        if batch:
            yield batch

    try:
        with transaction.atomic():
            for batch in batches():
                result.report.add(users_upsert(tenant=tenant, rows=batch))
                reset_queries()  # with DEBUG on, Django would keep every statement of the import in memory
                result.rows += len(batch)
                if progress is not None:
                    progress.update(len(batch))
            if dry_run or (mode == "atomic" and result.report.invalid):
                raise AbortImport
    except AbortImport:
        return result
    result.written = True
    return result


def write_error_report(handle: IO[str], report: UpsertReport) -> None:
    writer = csv_writer(handle)
    writer.writerow(["line", "external_id", "pointer", "rule", "detail"])
    for line, external_id, errors in report.errors:
        for error in errors:
            writer.writerow([line, external_id, error.pointer, error.rule, error.detail])


EXPORT = (
    "SELECT external_id, email, display_name, status, attributes::text FROM users_user "
    "WHERE tenant_id = %s ORDER BY external_id"
)


def users_export(*, tenant: Tenant, fmt: str, out: IO[str], release: Release = FULL) -> int:
    """Stream the tenant's users to ``out`` (server-side cursor, chunks): it imports back unchanged.

    CSV cells that a spreadsheet would run as a formula are escaped (``core/csv_cells.py``);
    the CSV import undoes that escaping. ``release``: the attribute values a key's release policy
    lets out (access/release.py; an operator's export is whole, docs/pip.md "Release policies").
    """
    pii = pii_keys(tenant.id) if not release.full else set()
    count = 0
    writer = None
    if fmt == "csv":
        writer = csv_writer(out)
        writer.writerow(CSV_COLUMNS)
    with transaction.atomic(), connection.chunked_cursor() as cursor:
        cursor.execute(EXPORT, [tenant.id])
        while rows := cursor.fetchmany(2000):
            for external_id, email, display_name, status, attributes in rows:
                if not release.full:
                    attributes = orjson.dumps(restrict(orjson.loads(attributes), pii, release)[0]).decode()
                if writer is not None:
                    writer.writerow([external_id, email, display_name, status, attributes])
                else:
                    out.write(
                        f'{{"external_id":{json.dumps(external_id)},"email":{json.dumps(email)},'
                        f'"display_name":{json.dumps(display_name)},"status":"{status}","attributes":{attributes}}}\n'
                    )
            count += len(rows)
    return count
