"""OPA bundles: one tenant's users (with their effective attributes) and groups as ``bundle.tar.gz`` (``data.json`` + ``.manifest``).

Built streaming in bounded memory: users come from a server-side cursor in chunks, their attribute
maps are copied as JSON text, ``data.json`` and the gzip'd tar are spooled to disk past
``SPOOL_BYTES``. The revision (the bundle's ETag) is the tenant's change counter
(``tenants.TenantRevision``), bumped in the transaction of every change of the tenant, its users and
its schema: one primary-key read, so an unchanged bundle answers 304 without being built. (Not
``max(updated_at)``: that is the app's clock before commit, so a write committing after a
later-stamped one left the revision unchanged.) The revision is read before the data, so a bundle is
never older than its revision.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
import time
from dataclasses import dataclass
from typing import IO

import orjson

from access.release import FULL, Release, restrict
from core.db.replicas import read_connection
from resolver.bundle_groups import USERS, TenantGroups

SPOOL_BYTES = 8 * 1024 * 1024
CHUNK_ROWS = 2000
REVISION = "SELECT coalesce((SELECT value FROM tenants_tenantrevision WHERE tenant_id = %s), 0)"
TENANT = """
    SELECT slug, status, attributes::text, version,
           (SELECT array_agg(d.key) FROM attributes_attributedefinition d WHERE d.tenant_id = t.id AND d.pii)
    FROM tenants_tenant t WHERE id = %s
"""


@dataclass(frozen=True)
class Bundle:
    revision: str
    file: IO[bytes]
    size: int
    pii: int = 0  # users whose PII-flagged values are in it (access/pii_audit.py)


def bundle_revision(tenant_id: str, release: Release = FULL) -> str:
    """Opaque; changes with every committed change of the tenant, its users or its schema, and
    differs between release policies (a key never revalidates against another policy's bundle)."""
    with read_connection().cursor() as cursor:
        cursor.execute(REVISION, [tenant_id])
        (counter,) = cursor.fetchone()
    revision = hashlib.sha256(json.dumps(["tenant-revision", tenant_id, counter]).encode()).hexdigest()[:32]
    return f"{revision}-{release.fingerprint}" if release.fingerprint else revision


class _Cut:
    """An attribute map's JSON text cut to a release policy, counting the users it released PII of."""

    def __init__(self, pii_list: list[str] | None, release: Release) -> None:
        self.pii, self.release, self.count = frozenset(pii_list or ()), release, 0
        self.noop = release.full and not self.pii

    def __call__(self, text: str, subject: bool = False) -> str:
        if self.noop:
            return text
        values, released_pii = restrict(orjson.loads(text), self.pii, self.release)
        self.count += released_pii and subject
        return text if self.release.full else orjson.dumps(values).decode()


def bundle_root(slug: str) -> str:
    return f"iam/tenants/{slug}"


def _write_data(out: IO[bytes], tenant_id: str, release: Release = FULL) -> tuple[str, int, int]:
    with read_connection().cursor() as cursor:
        cursor.execute(TENANT, [tenant_id])
        slug, status, attributes, version, pii_list = cursor.fetchone()
    cut = _Cut(pii_list, release)
    groups = TenantGroups(tenant_id)
    out.write(
        f'{{"iam":{{"tenants":{{{json.dumps(slug)}:{{"id":"{tenant_id}","status":"{status}",'
        f'"attributes":{cut(attributes)},"version":{version},"groups":{{{groups.groups_json(cut)}}},"users":{{'.encode()
    )
    count = 0
    with read_connection().chunked_cursor() as cursor:
        cursor.execute(USERS, [tenant_id])
        while rows := cursor.fetchmany(CHUNK_ROWS):
            chunk = ",".join(
                f'{json.dumps(ext)}:{{"id":"{uid}","status":"{ustatus}",'
                f'"attributes":{cut(groups.attributes_text(attrs, direct), True)},"version":{uver}}}'
                for ext, uid, ustatus, attrs, uver, direct in rows
            )
            out.write((("," if count else "") + chunk).encode())
            count += len(rows)
    out.write(b"}}}}}")
    return slug, count, cut.count


def bundle_build(tenant_id: str, revision: str, release: Release = FULL) -> Bundle:
    """Build the bundle into a spooled temporary file (memory up to SPOOL_BYTES, then disk), with the
    attribute values ``release`` lets out (access/release.py)."""
    data = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - handed to tarfile
    slug, _, pii = _write_data(data, tenant_id, release)
    data_size = data.tell()
    data.seek(0)
    manifest = json.dumps({"revision": revision, "roots": [bundle_root(slug)]}).encode()
    output = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - returned to the caller
    with tarfile.open(fileobj=output, mode="w:gz", compresslevel=6) as tar:
        now = time.time()
        info = tarfile.TarInfo("data.json")
        info.size, info.mtime = data_size, now
        tar.addfile(info, data)
        info = tarfile.TarInfo(".manifest")
        info.size, info.mtime = len(manifest), now
        tar.addfile(info, io.BytesIO(manifest))
    data.close()
    size = output.tell()
    output.seek(0)
    return Bundle(revision, output, size, pii)
