"""API keys: generated with 256 bits of randomness, shown once, stored as SHA-256.

A fast hash is right for high-entropy keys (a password hasher on the request path would cost tens
of milliseconds per request and buy nothing). ``last_used_at`` is written at most once a minute.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from uuid import UUID

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
    if S.TENANTS_WRITE in scopes and tenants:
        errors.append(FieldError("/scopes", "tenants_write", "tenants:write needs a key for all tenants"))
    if errors:
        raise ValidationFailed(errors)
    prefix = secrets.token_hex(4)
    raw = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        key = ApiKey.objects.create(
            name=name.strip(),
            prefix=prefix,
            key_hash=hash_key(raw),
            scopes=sorted(set(scopes)),
            all_tenants=not tenants,
            expires_at=expires_at,
            created_by=created_by,
        )
        if tenants:
            key.tenants.set(tenants)
    return key, raw


def api_key_revoke(*, key: ApiKey) -> None:
    if key.revoked_at is None:
        ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())


def principal_for_key(raw: str) -> tuple[ApiKey, Principal] | None:
    """The active key and its principal for a raw key, or ``None`` (unknown, revoked or expired)."""
    if not raw.startswith(f"{KEY_PREFIX}_") or len(raw) > 200:
        return None
    key = ApiKey.objects.filter(key_hash=hash_key(raw)).first()
    if key is None or not key.active:
        return None
    tenant_ids: frozenset[UUID] | None = None
    if not key.all_tenants:
        tenant_ids = frozenset(key.tenants.values_list("pk", flat=True))
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    principal = Principal("key", key.name, S.expand(frozenset(key.scopes)), tenant_ids, str(key.pk))
    return key, principal
