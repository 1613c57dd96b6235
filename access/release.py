"""Least-privilege attribute release: which attribute values a principal may read.

A key's **release policy** is an optional list of attribute keys (``*``: every key) and the scope
``pii:read``; a value of an attribute the tenant flags as PII is released only with ``pii:read``,
whatever the list says (``*`` included). Every door that shows attribute values (the PIP's lookup,
batch, AuthZEN shape and bundle, the users API, an export made for a key) filters them with
:func:`restrict`: an omitted key is simply absent. ``fingerprint`` tells policies apart in the PIP's
cache keys and ETags; the unrestricted policy's is empty, so its ETags are the ones of before.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from core.errors import FieldError, ValidationFailed

ALL = "*"
MAX_KEYS = 200  # an attribute list longer than any tenant's schema is a mistake or an attack
_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")  # attributes.models.KEY_PATTERN: the only keys that exist


@dataclass(frozen=True)
class Release:
    """``attributes``: the keys released (``None``: every key); ``pii``: PII-flagged values too."""

    attributes: frozenset[str] | None = None
    pii: bool = True
    fingerprint: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if self.attributes is None and self.pii:
            fingerprint = ""
        else:
            listed = ",".join(sorted(self.attributes)) if self.attributes is not None else ALL
            digest = hashlib.blake2b(f"{listed}|{int(self.pii)}".encode(), digest_size=6).hexdigest()
            fingerprint = f"r{digest}"
        object.__setattr__(self, "fingerprint", fingerprint)

    @property
    def full(self) -> bool:
        return self.fingerprint == ""

    def allows(self, key: str, pii: frozenset[str] | set[str]) -> bool:
        if key in pii and not self.pii:
            return False
        return self.attributes is None or key in self.attributes


FULL = Release()


def release_of(attributes: Iterable[str] | None, *, pii: bool) -> Release:
    """The policy of a stored list (``None`` or one holding ``*``: every key)."""
    if attributes is None:
        return Release(None, pii)
    listed = frozenset(attributes)
    return Release(None if ALL in listed else listed, pii)


def attributes_clean(value: Any) -> list[str] | None:
    """A key's attribute list as given (a list, or a comma-separated text); ``None``/empty: no list.

    Refused (400 naming ``/attributes``): not a list of texts, more than ``MAX_KEYS`` entries, and
    any key that is not an attribute key (``^[a-z][a-z0-9_]{0,63}$``, ASCII only: a Unicode look-alike
    or a normalisation trick such as ``ｄepartment`` or ``department\\u200b`` can never name a key).
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise ValidationFailed([FieldError("/attributes", "type", "a list of attribute keys, or *")])
    if not value:
        return None
    if len(value) > MAX_KEYS:
        raise ValidationFailed([FieldError("/attributes", "max_items", f"at most {MAX_KEYS} attribute keys")])
    errors = [
        FieldError(
            f"/attributes/{index}", "pattern", f"{unicodedata.normalize('NFKC', item)[:64]!r} is not an attribute key"
        )
        for index, item in enumerate(value)
        if item != ALL and not _KEY.fullmatch(item)
    ]
    if errors:
        raise ValidationFailed(errors)
    return [ALL] if ALL in value else sorted(set(value))


def restrict(values: dict[str, Any], pii: frozenset[str] | set[str], release: Release) -> tuple[dict[str, Any], bool]:
    """(the released values, whether any PII-flagged value is among them)."""
    if release.full:
        return values, any(key in pii for key in values)
    kept = {key: value for key, value in values.items() if release.allows(key, pii)}
    return kept, release.pii and any(key in pii for key in kept)
