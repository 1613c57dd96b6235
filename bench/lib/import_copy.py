"""bench/import.py's COPY baseline (a child process): the file's users into ``users_user`` with psycopg's
``cursor.copy()`` and, for ``all``, one ``UserCreated`` outbox row and one audit record per user, as the
import writes them. Columns come from the models' metadata, the envelope from ``outbox.events`` and the
audit changes from ``audit.services.diff``: the baseline follows the schema."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime

COPY_CHUNK = 10_000


def copy_child(argv: list[str]) -> None:
    """``--copy-child users|all DATABASE_URL FILE TENANT_ID SUBJECT_PREFIX SOURCE ACTOR``."""
    import django

    django.setup()  # the models' metadata (DJANGO_SETTINGS_MODULE of the child's environment)
    import psycopg

    from audit.models import AuditRecord
    from audit.services import diff
    from bench.lib.copy_rows import CopyRows
    from bench.lib.progress import progress
    from outbox.events import EVENT_TYPES, envelope, subject_for
    from outbox.models import OutboxEvent
    from users.models import User

    what, database_url, file, tenant_text, prefix, source, actor = argv
    tenant_id = uuid.UUID(tenant_text)
    event = EVENT_TYPES["UserCreated"]
    subject = subject_for(prefix, tenant_id, event)
    started = time.perf_counter()
    rows = 0
    with psycopg.connect(database_url) as conn, open(file, "rb") as handle:
        bar = progress(int(os.environ.get("BENCH_ROWS", "0")) or None, f"COPY {what}", unit="rows")

        def flush(chunk: list[dict]) -> None:
            now = datetime.now(UTC)
            fields = ("id", "external_id", "email", "display_name", "status", "attributes")
            users = CopyRows(User, fields, tenant_id=tenant_id, version=1, created_at=now, updated_at=now)
            data = [
                {
                    "id": str(uuid.uuid4()),
                    "tenant_id": str(tenant_id),
                    "external_id": row["external_id"],
                    "email": row.get("email", ""),
                    "display_name": row.get("display_name", ""),
                    "status": row.get("status") or "active",
                    "attributes": row.get("attributes") or {},
                    "version": 1,
                }
                for row in chunk
            ]
            with conn.cursor() as cursor:
                with cursor.copy(users.sql) as copy:
                    for values in data:
                        copy.write_row(users.row(*(values[name] for name in fields)))
                if what == "users":
                    return
                outbox = CopyRows(
                    OutboxEvent, ("event_id", "aggregate_id", "payload"), event_type="UserCreated",
                    aggregate_type="user", aggregate_version=1, tenant_id=tenant_id, subject=subject, created_at=now,
                )  # fmt: skip
                audit = CopyRows(
                    AuditRecord, ("object_id", "object_repr", "event_id", "changes"), at=now, actor_kind="system",
                    actor=actor, action="create", object_type="user", tenant_id=tenant_id,
                )  # fmt: skip
                events = [uuid.uuid4() for _ in data]
                with cursor.copy(outbox.sql) as copy:
                    for event_id, values in zip(events, data, strict=True):
                        payload = envelope(
                            event_id=event_id, event=event, source=source, time=now, tenant_id=tenant_id,
                            aggregate_id=uuid.UUID(values["id"]), aggregate_version=1, data=values,
                        )  # fmt: skip
                        copy.write_row(outbox.row(event_id, values["id"], json.dumps(payload)))
                with cursor.copy(audit.sql) as copy:
                    for event_id, values in zip(events, data, strict=True):
                        changes = diff(None, values, pii=set())
                        copy.write_row(audit.row(values["id"], values["external_id"][:300], event_id, changes))

        chunk: list[dict] = []
        for line in handle:
            if not line.strip():
                continue
            chunk.append(json.loads(line))
            if len(chunk) >= COPY_CHUNK:
                flush(chunk)
                rows += len(chunk)
                bar.update(len(chunk))
                chunk = []
        if chunk:
            flush(chunk)
            rows += len(chunk)
            bar.update(len(chunk))
        conn.commit()
        bar.close()
    print(json.dumps({"rows": rows, "seconds": time.perf_counter() - started}))
