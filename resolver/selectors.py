"""The PIP's read path: one SQL statement per lookup, rows rendered straight to JSON bytes.

The attribute maps are read as JSON text from PostgreSQL and spliced into the response, never
decoded into Python objects and encoded again: the read path is bound by Python, not by the
database (docs/performance.md).
"""

from __future__ import annotations

import json
import uuid
from typing import Any, NamedTuple

import orjson

from access.release import FULL, Release, restrict
from core.db.base import prepared_cursor
from core.db.piggyback import fetch_all
from core.db.replicas import read_connection
from core.db.tokens import lsn_value
from resolver.effective import GROUPS, RULES, effective_text, groups_etag_part, max_depth

# Where the WAL was while this statement ran (the replica's replay position, the primary's insert
# position): the state read is no newer, so a read at that position or later is at least as fresh —
# the response's consistency token (core/db/tokens.py), in the same statement, at no extra query.
WAL_POSITION = """(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
    ELSE pg_current_wal_insert_lsn() END)::text"""
#: The tenant ``t`` of a lookup, with what its users' answers share: the effective rules and the
#: PII-flagged keys (read once per tenant: the batch materialises its tenants).
TENANT = f"""t.id, t.slug, t.status, t.attributes, t.version, t.schema_version, {RULES} AS rules,
    (SELECT array_agg(d.key) FROM attributes_attributedefinition d WHERE d.tenant_id = t.id AND d.pii) AS pii"""
COLUMNS = f"""
    u.id::text, u.external_id, u.status, u.attributes::text, u.version,
    t.id::text, t.slug, t.status, t.attributes::text, t.version, t.schema_version, {GROUPS}, t.rules, t.pii,
    {WAL_POSITION}
"""
# Prepared once per connection (core.db.base.PreparingCursor): planning these statements cost as much
# as running them. Parameters: the depth bound, then the statement's own.
BY_TENANT_ID = f"""
    SELECT {COLUMNS} FROM (SELECT {TENANT} FROM tenants_tenant t WHERE t.id = %s AND t.deleted_at IS NULL) t
    JOIN users_user u ON u.tenant_id = t.id WHERE u.external_id = %s
"""
BY_TENANT_SLUG = f"""
    SELECT {COLUMNS} FROM (SELECT {TENANT} FROM tenants_tenant t WHERE t.slug = %s AND t.deleted_at IS NULL) t
    JOIN users_user u ON u.tenant_id = t.id WHERE u.external_id = %s
"""
# Parameters: the items as one JSON array of [tenant id or null, slug or null, external id] (one text
# parameter: three Python lists dumped as arrays cost the client more than the rest of the query),
# then the depth bound.
BATCH = f"""
    WITH r AS MATERIALIZED (
        SELECT (e->>0)::uuid AS tid, e->>1 AS tslug, e->>2 AS ext, idx
        FROM json_array_elements(%s::json) WITH ORDINALITY AS r(e, idx)
    ), t AS MATERIALIZED (
        SELECT {TENANT} FROM tenants_tenant t
        WHERE (t.id IN (SELECT tid FROM r) OR t.slug IN (SELECT tslug FROM r)) AND t.deleted_at IS NULL
    )
    SELECT r.idx, {COLUMNS}
    FROM r JOIN t ON t.id = r.tid OR t.slug = r.tslug
    JOIN users_user u ON u.tenant_id = t.id AND u.external_id = r.ext
"""


class Resolved(NamedTuple):
    """A subject with its tenant, rendered once in both formats (a tuple: the cheapest to unpickle
    from the PIP cache on every cached lookup)."""

    tenant_id: str
    tenant_slug: str
    etag: str
    native: bytes
    authzen: bytes
    pii: bool = False  # PII-flagged values are among the released ones (access/pii_audit.py counts them)
    lsn: int = 0  # the WAL position of the read (WAL_POSITION): the response's consistency token


def as_uuid(ref: str) -> uuid.UUID | None:
    if len(ref) < 32:  # a slug: no UUID has fewer than 32 hex digits (and raising costs every lookup)
        return None
    try:
        return uuid.UUID(ref)
    except ValueError:
        return None


def released(
    uattrs: str, tattrs: str, sources: str | None, pii_list: list[str] | None, release: Release
) -> tuple[str, str, str | None, bool]:
    """The attribute texts (subject's, tenant's, sources) cut to what ``release`` lets out, and whether
    PII values are among them; the texts as they are for the full policy on a tenant without PII."""
    pii = frozenset(pii_list or ())
    if release.full and not pii:
        return uattrs, tattrs, sources, False
    user_values, user_pii = restrict(orjson.loads(uattrs), pii, release)
    tenant_values, tenant_pii = restrict(orjson.loads(tattrs), pii, release)
    if release.full:
        return uattrs, tattrs, sources, user_pii or tenant_pii
    if sources is not None:
        sources = orjson.dumps({k: v for k, v in orjson.loads(sources).items() if k in user_values}).decode()
    return orjson.dumps(user_values).decode(), orjson.dumps(tenant_values).decode(), sources, user_pii or tenant_pii


def render(row: tuple[Any, ...], explain: bool = False, release: Release = FULL) -> Resolved:
    """A row as JSON bytes; ``attributes`` are the effective ones (resolver/effective.py), cut to
    what the caller's release policy lets out (access/release.py)."""
    uid, ext, ustatus, own, uver, tid, slug, tstatus, tattrs, tver, sver, groups, rules, pii_list, wal = row
    uattrs, sources = effective_text(own, groups, rules, explain=explain)
    uattrs, tattrs, sources, pii = released(uattrs, tattrs, sources, pii_list, release)
    etag = (
        f"{uid}.{uver}.{tver}.{sver}"
        + (f".{groups_etag_part(groups)}" if groups else "")
        + (".x" if explain else "")
        + (f".{release.fingerprint}" if release.fingerprint else "")
    )
    explained = f',"sources":{sources}' if sources is not None else ""
    ext_json = json.dumps(ext)
    tenant = f'{{"id":"{tid}","slug":"{slug}","status":"{tstatus}","attributes":{tattrs},"version":{tver}}}'
    native = (
        f'{{"id":"{uid}","external_id":{ext_json},"status":"{ustatus}","attributes":{uattrs},'
        f'"version":{uver},"tenant":{tenant}{explained}}}'
    )
    # AuthZEN subject: attribute keys never contain ':' so the "iam:" properties cannot collide.
    properties = uattrs[1:-1].strip()
    extra = f'"iam:id":"{uid}","iam:status":"{ustatus}","iam:version":{uver},"iam:tenant":{tenant}'
    extra += f',"iam:sources":{sources}' if sources is not None else ""
    authzen = f'{{"type":"user","id":{ext_json},"properties":{{{properties + "," if properties else ""}{extra}}}}}'
    # The subject's id is in the ETag: a subject deleted and created again under the same external id
    # starts again at version 1, and must not revalidate (304) against the old subject's ETag.
    return Resolved(tid, slug, f'"{etag}"', native.encode(), authzen.encode(), pii, lsn_value(wal))


def subject_resolve(
    *, tenant_ref: str, external_id: str, explain: bool = False, release: Release = FULL
) -> Resolved | None:
    tenant_id = as_uuid(tenant_ref)
    conn = read_connection()
    sql = BY_TENANT_ID if tenant_id is not None else BY_TENANT_SLUG
    with prepared_cursor(conn) as cursor:  # the door's check of a held key, if any, in this one statement
        rows = fetch_all(conn, cursor, sql, [max_depth(), tenant_id or tenant_ref, external_id])
    return render(rows[0], explain, release) if rows else None


def subjects_resolve(
    *, items: list[tuple[str, str]], explain: bool = False, release: Release = FULL
) -> dict[int, Resolved]:
    """Resolve many (tenant ref, external id) pairs in one statement; keys are the items' indexes."""
    if not items:
        return {}
    refs = []
    for ref, external_id in items:
        tenant_id = as_uuid(ref)
        refs.append((None, ref, external_id) if tenant_id is None else (str(tenant_id), None, external_id))
    conn = read_connection()
    with prepared_cursor(conn) as cursor:
        rows = fetch_all(conn, cursor, BATCH, [orjson.dumps(refs).decode(), max_depth()])
    return {int(row[0]) - 1: render(row[1:], explain, release) for row in rows}
