"""bench/import.py's set-up (tenants, definitions, the JSONL file), its table counts and its settling."""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from devtools.harness import REPO, free_port
from devtools.harness.roles import inherited_env, manage_output


def child_env(tmp: Path, database_url: str) -> dict[str, str]:
    return inherited_env(
        drop_prefixes=("DJANGO_", "IAM_", "REDIS_", "CELERY_"),
        drop=("DATABASE_URL", "EVENT_BUS_URL", "DEBUG", "LOG_LEVEL"),
        IAM_ENV="development",
        IAM_DATA_DIR=str(tmp / "data"),  # not the repository's .data/
        DJANGO_SETTINGS_MODULE="iam_project.settings",
        DATABASE_URL=database_url,
        EVENT_BUS_URL=f"nats://127.0.0.1:{free_port()}",  # set, so manage.py starts no NATS; never used
        CELERY_BROKER_URL="memory://",
        LOG_LEVEL="WARNING",
        DEBUG="false",
        PYTHONPATH=str(REPO),
        XDG_RUNTIME_DIR=os.environ.get("XDG_RUNTIME_DIR", str(tmp / "run")),
    )


SETUP_SCRIPT = """
import json, random, sys
from django.conf import settings
from tqdm import tqdm
from attributes.services import definition_create
from devtools.demo import generated_definitions, generated_value
from tenants.services import tenant_create
definitions = generated_definitions(ATTRIBUTES)
out = {}
for slug in SLUGS:
    tenant = tenant_create(slug=slug, name=f"Import bench {slug}")
    for definition in definitions:
        definition_create(tenant=tenant, **definition)
    out[slug] = str(tenant.id)
rng = random.Random(SEED)
with open(FILE, "w", encoding="utf-8") as handle, tqdm(total=USERS, desc="writing JSONL", unit="rows", leave=False, disable=None) as bar:
    for index in range(USERS):
        row = {
            "external_id": f"user-{index:07d}",
            "email": f"user-{index}@import.example",
            "display_name": f"User {index}",
            "status": "active",
            "attributes": {d["key"]: generated_value(d, rng) for d in definitions},
        }
        handle.write(json.dumps(row, separators=(",", ":")) + "\\n")
        if index % 1000 == 999:
            bar.update(1000)
print(json.dumps({"tenants": out, "prefix": settings.NATS_SUBJECT_PREFIX, "source": settings.IAM_EVENT_SOURCE}))
"""


def set_up(env: dict[str, str], slugs: list[str], args: argparse.Namespace, file: Path) -> dict:
    """Tenants with the generated definitions (through the services) and the JSONL file, in a child
    process: this one stays small, so that the ``ru_maxrss`` its children inherit at fork stays below theirs."""
    head = f"SLUGS = {slugs!r}\nATTRIBUTES = {args.attributes}\nUSERS = {args.users}\nSEED = {args.seed}\n"
    out = manage_output(env, "shell", "-c", head + f"FILE = {str(file)!r}\n" + SETUP_SCRIPT)
    return json.loads(out.strip().splitlines()[-1])


def counts(database_url: str, tenant_id: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        return {
            "users": conn.execute("SELECT count(*) FROM users_user WHERE tenant_id = %s", [tenant_id]).fetchone()[0],
            "outbox": conn.execute(
                "SELECT count(*) FROM outbox_outboxevent WHERE tenant_id = %s AND aggregate_type = 'user'",
                [tenant_id],
            ).fetchone()[0],
            "audit": conn.execute(
                "SELECT count(*) FROM audit_auditrecord WHERE tenant_id = %s AND object_type = 'user'", [tenant_id]
            ).fetchone()[0],
        }


def settle(database_url: str) -> None:
    """Before a run: vacuum what the previous run wrote (so that autovacuum does not bill it to this run)
    and checkpoint (so that this run starts with no dirty buffers)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) users_user, outbox_outboxevent, audit_auditrecord")
        conn.execute("CHECKPOINT")


def database_facts(database_url: str) -> dict:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        facts = {"server_version": conn.execute("SHOW server_version").fetchone()[0]}
        for name in ("shared_buffers", "synchronous_commit", "fsync", "wal_level", "max_wal_size"):
            facts[name] = conn.execute(f"SHOW {name}").fetchone()[0]
        for table in ("users_user", "outbox_outboxevent", "audit_auditrecord"):
            facts[f"{table}_bytes"] = conn.execute("SELECT pg_total_relation_size(%s)", [table]).fetchone()[0]
        return facts


def versions() -> dict:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for package in ("Django", "psycopg", "pgserver"):
        try:
            out[package] = version(package)
        except Exception:  # noqa: BLE001 - informative only
            out[package] = None
    return out
