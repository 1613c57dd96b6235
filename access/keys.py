"""API keys: generated with 256 bits of randomness, shown once, stored as SHA-256.

A fast hash is right for high-entropy keys (a password hasher on the request path would cost tens
of milliseconds per request and buy nothing). A key's scopes and tenants are fixed at creation, so
with a shared cache (``REDIS_URL``) the resolved key is cached for ``API_KEY_CACHE_SECONDS`` and
dropped from the cache when the key is revoked, which makes revocation effective on the very next
request. ``last_used_at`` is written at most once a minute per key.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from access import scopes as S
from access.models import ApiKey
from access.principals import Principal
from iam_project.errors import FieldError, ValidationFailed
from tenants.models import Tenant

KEY_PREFIX = "iam"
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _cache_key(key_hash: str) -> str:
    return f"apikey:{key_hash}"


def api_key_create(
    *,
    name: str,
    scopes: list[str],
    tenants: list[Tenant] | None = None,
    expires_at: datetime | None = None,
    created_by: str = "",
) -> tuple[ApiKey, str]:
    """Create a key; returns it and the raw key, which is never stored nor shown again."""
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
    )
    return key, raw


def api_key_revoke(*, key: ApiKey) -> None:
    if key.revoked_at is None:
        ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    transaction.on_commit(lambda: _forget(key.key_hash))
    _forget(key.key_hash)


def _forget(key_hash: str) -> None:
    if settings.SHARED_CACHE:
        try:
            cache.delete(_cache_key(key_hash))
        except Exception:  # noqa: BLE001 - the cache entry expires by itself (API_KEY_CACHE_SECONDS)
            pass


def _principal(key: ApiKey) -> Principal:
    tenant_ids: frozenset[UUID] | None = None if key.all_tenants else frozenset(key.tenant_ids)
    return Principal("key", key.name, S.expand(frozenset(key.scopes)), tenant_ids, str(key.pk))


def _load(key_hash: str) -> ApiKey | None:
    if settings.SHARED_CACHE:
        try:
            cached = cache.get(_cache_key(key_hash))
        except Exception:  # noqa: BLE001 - a cache outage falls back to the database
            cached = None
        if cached is not None:
            return cached
    key = ApiKey.objects.filter(key_hash=key_hash).first()
    if key is not None and settings.SHARED_CACHE and key.active:
        try:
            cache.set(_cache_key(key_hash), key, settings.API_KEY_CACHE_SECONDS)
        except Exception:  # noqa: BLE001
            pass
    return key


_TOUCHED: dict[object, float] = {}  # key id → when this process last recorded a use (monotonic)


def _touch(key: ApiKey) -> None:
    now = timezone.now()
    if _TOUCHED.get(key.pk, -1e9) > time.monotonic() - LAST_USED_RESOLUTION.total_seconds():
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
    _touch(key)
    return key, _principal(key)
