"""The PIP cache: resolved subjects in the shared cache, keyed so that a stale entry is never used.

An entry for (tenant, external id) records the two generation tokens it was built under: the
tenant's (bumped by any change of the tenant or its attribute schema) and the subject's (bumped by
any change of that user). A reader fetches the two tokens and the entry in one round trip and uses
the entry only if both tokens still match; tokens are read *before* the database, so an entry built
from a state older than a committed change carries a token that change has already replaced.
Tokens are bumped in ``transaction.on_commit`` by every write path (``outbox.changes``), so
once a write request has returned no reader is served the state before it.

With no shared cache configured (``REDIS_URL`` unset) nothing is cached: a per-process cache could
not be invalidated by the other processes. Cache errors fall back to the database.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.cache import cache, caches
from django.db import transaction

from core import near_cache
from core.db import replicas

logger = logging.getLogger(__name__)


def enabled() -> bool:
    return bool(settings.SHARED_CACHE)


def _h(external_id: str) -> str:
    return hashlib.blake2b(external_id.encode(), digest_size=12).hexdigest()


def tenant_token_key(tenant_id: UUID | str) -> str:
    return f"pip:tg:{tenant_id}"


def subject_token_key(tenant_id: UUID | str, external_id: str) -> str:
    return f"pip:sg:{tenant_id}:{_h(external_id)}"


def entry_key(tenant_id: UUID | str, external_id: str, fingerprint: str = "") -> str:
    """Per release policy (``fingerprint``, access/release.py): no key is served an entry built for another."""
    # e3: (tokens…, Resolved tuple); an entry from before Resolved.lsn unpickles with lsn 0 (no token read uses it)
    return f"pip:e3:{tenant_id}:{_h(external_id)}:{fingerprint}"


def slug_key(slug: str) -> str:
    return f"pip:slug:{slug}"


# slug → tenant id, per process. A stale mapping (a slug renamed or deleted) is harmless: the
# tenant's token changes with the rename or deletion, and an entry is used only if its own slug is
# the one asked for (``lookup``'s ``slug``); otherwise the database answers.
_SLUG_MEMO: dict[str, tuple[str, float]] = {}
SLUG_MEMO_SECONDS = 60.0
SLUG_MEMO_SIZE = 10_000


def memoised_tenant_id(slug: str) -> str | None:
    """The tenant id this process memoised for ``slug`` (no I/O)."""
    memo = _SLUG_MEMO.get(slug)
    if memo is not None and memo[1] > time.monotonic():
        return memo[0]
    return None


def tenant_id_for_slug(slug: str) -> str | None:
    memo = memoised_tenant_id(slug)
    if memo is not None:
        return memo
    try:
        found = cache.get(slug_key(slug))
    except Exception:  # noqa: BLE001
        return None
    if found is not None:
        _memo_slug(slug, found)
    return found


def remember_slug(slug: str, tenant_id: UUID | str) -> None:
    _memo_slug(slug, str(tenant_id))
    try:
        cache.set(slug_key(slug), str(tenant_id), settings.PIP_CACHE_SECONDS)
    except Exception:  # noqa: BLE001
        pass


def _memo_slug(slug: str, tenant_id: str) -> None:
    if len(_SLUG_MEMO) >= SLUG_MEMO_SIZE:
        _SLUG_MEMO.clear()
    _SLUG_MEMO[slug] = (tenant_id, time.monotonic() + SLUG_MEMO_SECONDS)


def lookup_keys(tenant_id: str, external_id: str, fingerprint: str = "") -> list[str]:
    """What :func:`lookup` reads: the tenant's token, the subject's token and the entry of the policy."""
    return [
        tenant_token_key(tenant_id),
        subject_token_key(tenant_id, external_id),
        entry_key(tenant_id, external_id, fingerprint),
    ]


def lookup(
    tenant_id: str,
    external_id: str,
    slug: str | None = None,
    prefetched: list[Any] | None = None,
    fingerprint: str = "",
    min_lsn: int = 0,
) -> tuple[Any, tuple[str, str] | None]:
    """(entry or None, the tokens to store a fresh entry under — None if the cache is unavailable).

    ``prefetched``: the values of :func:`lookup_keys`, already read in the request's round trip.
    ``min_lsn``: a consistency token's WAL position; an entry read at an older one is not used.
    """
    keys = lookup_keys(tenant_id, external_id, fingerprint)
    try:
        if prefetched is not None:
            found = {key: value for key, value in zip(keys, prefetched, strict=True) if value is not None}
        else:
            found = cache.get_many(keys)
        tenant_token, subject_token = found.get(keys[0]), found.get(keys[1])
        if tenant_token is None:
            tenant_token = _new_token()
            if not cache.add(keys[0], tenant_token, None):
                tenant_token = cache.get(keys[0]) or tenant_token
        if subject_token is None:
            subject_token = _new_token()
            if not cache.add(keys[1], subject_token, settings.PIP_CACHE_SECONDS * 4):
                subject_token = cache.get(keys[1]) or subject_token
    except Exception as exc:  # noqa: BLE001 - a cache outage means: read the database
        logger.warning("PIP cache unavailable", extra={"error": str(exc)})
        return None, None
    cached = fresh(tenant_token, subject_token, found.get(keys[2]), slug, min_lsn)
    if cached is not None:
        return cached, None
    return None, (tenant_token, subject_token)


def fresh(tenant_token: Any, subject_token: Any, entry: Any, slug: str | None = None, min_lsn: int = 0) -> Any:
    """The entry's value if it was built under the current tokens (and, looked up by ``slug``, for
    that slug; at least as new as ``min_lsn``), else None: the three values :func:`lookup_keys` names."""
    if (
        entry is not None
        and tenant_token is not None
        and entry[0] == tenant_token
        and entry[1] == subject_token
        and (slug is None or entry[2].tenant_slug == slug)
        and entry[2].lsn >= min_lsn
    ):
        return entry[2]
    return None


def store(
    tenant_id: str,
    external_id: str,
    tokens: tuple[str, str],
    value: Any,
    fingerprint: str = "",
    floor: int | None = None,
) -> None:
    """Store ``value`` under ``tokens``. ``floor``: for a value read on a replica, a WAL position its
    state is at least as new as; it is stored only if that covers the writes that set the tokens
    (with replicas, a token carries its commit's WAL position), so a lagging replica's answer is
    never cached as the state after a write."""
    if floor is not None and floor < max(_token_lsn(tokens[0]), _token_lsn(tokens[1])):
        return
    try:
        cache.set(
            entry_key(tenant_id, external_id, fingerprint), (tokens[0], tokens[1], value), settings.PIP_CACHE_SECONDS
        )
    except Exception:  # noqa: BLE001
        pass


def _new_token(lsn: int = 0) -> str:
    return f"{secrets.token_hex(8)}.{lsn:x}" if lsn else secrets.token_hex(8)


def _token_lsn(token: str) -> int:
    """The WAL position a generation token was set at (0: none, no replicas)."""
    _, _, lsn = token.partition(".")
    return int(lsn, 16) if lsn else 0


def _commit_token() -> str:
    """A token for a committed change: with replicas, it carries the commit's WAL position."""
    if not replicas.configured():
        return _new_token()
    try:
        return _new_token(replicas.commit_lsn())
    except Exception as exc:  # noqa: BLE001 - without the position no replica-read entry is stored under it
        logger.warning("WAL position unavailable for the PIP cache", extra={"error": str(exc)})
        return _new_token(2**63)


def invalidate_tenant(tenant_id: UUID | str, slugs: Sequence[str] = ()) -> None:
    if not enabled():
        return
    try:
        cache.set(tenant_token_key(tenant_id), _commit_token(), None)
        if slugs:
            cache.delete_many([slug_key(slug) for slug in slugs])
        near_cache.publish(caches["default"], [tenant_token_key(tenant_id)])
    except Exception as exc:  # noqa: BLE001 - entries expire by PIP_CACHE_SECONDS
        logger.error("PIP cache invalidation failed", extra={"error": str(exc), "tenant_id": str(tenant_id)})


def invalidate_subjects(tenant_id: UUID | str, external_ids: list[str]) -> None:
    if not enabled():
        return
    try:
        changed = [subject_token_key(tenant_id, ext) for ext in external_ids]
        cache.set_many(dict.fromkeys(changed, _commit_token()), settings.PIP_CACHE_SECONDS * 4)
        near_cache.publish(caches["default"], changed if len(changed) <= 1_000 else [near_cache.ALL])
    except Exception as exc:  # noqa: BLE001
        logger.error("PIP cache invalidation failed", extra={"error": str(exc), "tenant_id": str(tenant_id)})


def invalidate_on_commit(
    aggregate_type: str, tenant_id: UUID, data: dict[str, Any], before: dict[str, Any] | None
) -> None:
    """Drop what the cache holds about a change once it commits (registered with ``outbox.changes.on_change``)."""
    if not enabled():
        return
    if aggregate_type == "user":
        external_ids = sorted(_present(data.get("external_id"), (before or {}).get("external_id")))
        transaction.on_commit(lambda: invalidate_subjects(tenant_id, external_ids))
    else:
        slugs = sorted(_present(data.get("slug"), (before or {}).get("slug"))) if aggregate_type == "tenant" else []
        transaction.on_commit(lambda: invalidate_tenant(tenant_id, slugs))


def _present(*values: str | None) -> set[str]:
    """The distinct values that are set (a change's new and former key)."""
    return {value for value in values if value is not None}
