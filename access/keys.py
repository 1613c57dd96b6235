"""API keys: generated with 256 bits of randomness, shown once, stored as SHA-256.

A fast hash is right for high-entropy keys (a password hasher on the request path would cost tens
of milliseconds per request and buy nothing). A key's scopes and tenants are fixed at creation, so
with a shared cache (``REDIS_URL``) each process holds the keys it has seen for at most
``API_KEY_CACHE_SECONDS``, together with the **revocation generation** it read *before* reading the
key from the database. Every revocation replaces the generation in the shared cache; a request reads
it (in the same round trip as its throttle counter) and drops the process's keys when it changed, so
revocation is effective on the very next request, in every process. Without a shared cache the
generation is a PostgreSQL sequence (``access_apikey_generation``): the full stack reads the key from
PostgreSQL on every request (the generation in the same round trip), and the lean door (api/lean.py)
serves a held key with the generation read in front of the request's own query
(:mod:`core.db.piggyback`). ``last_used_at`` is written at most once a minute per key.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.core.cache import cache, caches
from django.db import connection, transaction
from django.utils import timezone

from access import scopes as S
from access.models import ApiKey
from access.principals import Principal, key_release
from access.release import attributes_clean
from core import near_cache
from core.db.base import prepared_cursor
from core.db.piggyback import Piggyback, fetch_all
from core.errors import FieldError, ValidationFailed
from tenants.models import Tenant

logger = logging.getLogger(__name__)

KEY_PREFIX = "iam"
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


GENERATION_KEY = "apikey:generation"
GENERATION_SQL = "SELECT last_value, is_called FROM access_apikey_generation"  # without a shared cache
# key hash → (key, its principal, the generation read before the key was, monotonic expiry)
_LOCAL: dict[str, tuple[ApiKey, Principal, str, float]] = {}
LOCAL_SIZE = 10_000


def api_key_create(
    *,
    name: str,
    scopes: list[str],
    tenants: list[Tenant] | None = None,
    expires_at: datetime | None = None,
    created_by: str = "",
    attributes: list[str] | str | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns it and the raw key, which is never stored nor shown again.

    ``attributes``: its release policy's attribute keys (``*`` for every key; ``None`` for every key).
    """
    listed = attributes_clean(attributes)
    unknown = sorted(set(scopes) - set(S.SCOPES))
    errors = [FieldError("/scopes", "enum", f"unknown scope {scope!r}") for scope in unknown]
    if not name.strip():
        errors.append(FieldError("/name", "required", "a key needs a name"))
    if not scopes:
        errors.append(FieldError("/scopes", "required", "a key needs at least one scope"))
    if S.TENANTS_WRITE in scopes and tenants:
        errors.append(FieldError("/scopes", "tenants_write", "tenants:write needs a key for all tenants"))
    if errors:
        raise ValidationFailed(errors)
    prefix = secrets.token_hex(4)
    raw = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(
        name=name.strip(),
        prefix=prefix,
        key_hash=hash_key(raw),
        scopes=sorted(set(scopes)),
        all_tenants=not tenants,
        tenant_ids=sorted(tenant.pk for tenant in tenants or []),
        expires_at=expires_at,
        created_by=created_by,
        attributes=listed,
    )
    return key, raw


def api_key_release_set(*, key: ApiKey, attributes: list[str] | str | None, pii: bool) -> ApiKey:
    """Change a key's release policy (its attribute list and ``pii:read``); every process drops the
    keys it holds, so the next request of the key is served under the new policy."""
    listed = attributes_clean(attributes)
    scopes = sorted((set(key.scopes) - {S.PII_READ}) | ({S.PII_READ} if pii else set()))
    ApiKey.objects.filter(pk=key.pk).update(attributes=listed, scopes=scopes)
    key.attributes, key.scopes = listed, scopes
    transaction.on_commit(_new_generation)
    _new_generation()
    return key


def api_key_revoke(*, key: ApiKey) -> None:
    if key.revoked_at is None:
        ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    transaction.on_commit(_new_generation)
    _new_generation()


def _new_generation() -> None:
    """Every process drops the keys it holds on its next request (and this one at once)."""
    _LOCAL.clear()
    if not settings.SHARED_CACHE:
        with connection.cursor() as cursor:  # not transactional: seen at once, never rolled back
            cursor.execute("SELECT nextval('access_apikey_generation')")
        return
    try:
        cache.set(GENERATION_KEY, secrets.token_hex(8), None)
        near_cache.publish(caches["default"], [GENERATION_KEY])
    except Exception as exc:  # noqa: BLE001 - processes drop their keys by themselves (API_KEY_CACHE_SECONDS)
        logger.error("revocation generation not replaced or not published", extra={"error": str(exc)})


def generation() -> str:
    """The current revocation generation (one round trip; created if the cache lost it)."""
    found = cache.get(GENERATION_KEY)
    if found is None:
        found = secrets.token_hex(8)
        if not cache.add(GENERATION_KEY, found, None):
            found = cache.get(GENERATION_KEY) or found
    return str(found)


def held(raw: str) -> tuple[ApiKey, Principal, str] | None:
    """The key, its principal and generation if this process holds it (no I/O); the caller must
    compare the generation with the shared one before trusting it."""
    entry = _LOCAL.get(hash_key(raw))
    if entry is None or entry[3] < time.monotonic() or not entry[0].active:
        return None
    return entry[0], entry[1], entry[2]


def drop_held() -> None:
    _LOCAL.clear()


def _principal(key: ApiKey) -> Principal:
    tenant_ids: frozenset[UUID] | None = None if key.all_tenants else frozenset(key.tenant_ids)
    release = key_release(key.scopes, key.attributes)
    return Principal("key", key.name, S.expand(frozenset(key.scopes)), tenant_ids, str(key.pk), release)


def _fetch(key_hash: str) -> ApiKey | None:
    """``ApiKey.objects.filter(key_hash=…).first()`` without compiling the query on every request:
    without a shared cache every API request reads its key (docs/performance.md)."""
    global _FETCH
    if _FETCH is None:
        fields = ApiKey._meta.concrete_fields
        columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)  # type: ignore[arg-type]  # django-stubs: Field.column is optional; a concrete field has one
        _FETCH = (f"SELECT {columns} FROM {ApiKey._meta.db_table} WHERE key_hash = %s", [f.attname for f in fields])
    with prepared_cursor(connection) as cursor:  # the generation's check, if any, in this one statement
        rows = fetch_all(connection, cursor, _FETCH[0], [key_hash])
    return ApiKey.from_db(connection.alias, _FETCH[1], rows[0]) if rows else None


_FETCH: tuple[str, list[str]] | None = None


def _load(key_hash: str) -> ApiKey | None:
    if not settings.SHARED_CACHE:
        with generation_check() as check:  # read before the key, in the same round trip
            key = _fetch(key_hash)
        _hold(key_hash, key, db_generation(check.row))
        return key
    try:
        current = generation()  # read before the database: a revocation after it replaces it
    except Exception:  # noqa: BLE001 - a cache outage: the database, and nothing held
        return _fetch(key_hash)
    entry = _LOCAL.get(key_hash)
    if entry is not None and entry[2] == current and entry[3] >= time.monotonic():
        return entry[0]
    key = _fetch(key_hash)
    _hold(key_hash, key, current)
    return key


def _hold(key_hash: str, key: ApiKey | None, current: str) -> None:
    if key is not None and key.active:
        if len(_LOCAL) >= LOCAL_SIZE:
            _LOCAL.clear()
        _LOCAL[key_hash] = (key, _principal(key), current, time.monotonic() + settings.API_KEY_CACHE_SECONDS)


def generation_check() -> Piggyback:
    """The database's generation, read with the next query (:mod:`core.db.piggyback`)."""
    return Piggyback(GENERATION_SQL, width=2)


def db_generation(row: tuple | None) -> str:
    """The generation of a :data:`GENERATION_SQL` row (``None``: none read, matching no held key)."""
    return "" if row is None else f"{row[0]}.{row[1]}"


_TOUCHED: dict[object, float] = {}  # key id → when this process last recorded a use (monotonic)


def recorded_recently(key: ApiKey) -> bool:
    """Whether this process recorded a use of ``key`` within ``LAST_USED_RESOLUTION`` (:func:`record_use`
    then has nothing to do)."""
    return _TOUCHED.get(key.pk, -1e9) > time.monotonic() - LAST_USED_RESOLUTION.total_seconds()


def record_use(key: ApiKey) -> None:
    now = timezone.now()
    if recorded_recently(key):
        return  # this process recorded a use less than a minute ago: no round trip at all
    if len(_TOUCHED) > 10_000:
        _TOUCHED.clear()
    _TOUCHED[key.pk] = time.monotonic()
    if settings.SHARED_CACHE:
        try:
            if not cache.add(f"apikey-used:{key.pk}", 1, int(LAST_USED_RESOLUTION.total_seconds())):
                return
        except Exception:  # noqa: BLE001
            pass
    elif key.last_used_at is not None and now - key.last_used_at < LAST_USED_RESOLUTION:
        return
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)


def principal_for_key(raw: str) -> tuple[ApiKey, Principal] | None:
    """The active key and its principal for a raw key, or ``None`` (unknown, revoked or expired)."""
    if not raw.startswith(f"{KEY_PREFIX}_") or len(raw) > 200:
        return None
    key = _load(hash_key(raw))
    if key is None or not key.active:
        return None
    record_use(key)
    entry = _LOCAL.get(key.key_hash)
    return key, entry[1] if entry is not None and entry[0] is key else _principal(key)
