"""Consistency tokens: a WAL position (LSN) that a client hands back to read at least that fresh.

A token is opaque to clients: ``<lsn in hex>.<16 hex digits of a MAC>`` (keyed BLAKE2b of the LSN
under a key derived from ``SECRET_KEY``), so a forged or mangled token is refused as a 400 before it
can steer a read, and a token issued by one process is accepted by every other one of the deployment.
PostgreSQL writes an LSN as ``16/B374D848`` (high/low 32 bits, in hex); :func:`lsn_value` reads it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from functools import cache

from django.conf import settings

HEADER = "Consistency-Token"
META_HEADER = "HTTP_CONSISTENCY_TOKEN"
QUERY_PARAMETER = "consistency"
FORCE_HEADER = "HTTP_CONSISTENCY"  # ``Consistency: full`` reads from the primary
COOKIE = "iam_consistency"  # the console's browser: its own writes, read back after the redirect
TOKEN = re.compile(r"^([0-9a-f]{1,16})\.([0-9a-f]{16})$")
LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


class BadToken(ValueError):
    """A token that this deployment did not issue (or a malformed one). ``source`` names where it came from."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__(f"{source} is not a consistency token this service issued")


@cache
def _key(secret: str) -> bytes:
    return hashlib.blake2b(secret.encode(), key=b"iam-consistency-token", digest_size=32).digest()


def _signature(hex_lsn: str, secret: str | None = None) -> str:
    # Keyed BLAKE2b is a MAC (RFC 7693), and a few times faster than HMAC-SHA256: one per PIP answer.
    key = _key(settings.SECRET_KEY if secret is None else secret)
    return hashlib.blake2b(hex_lsn.encode(), key=key, digest_size=8).hexdigest()


def lsn_value(text: str | None) -> int:
    """``16/B374D848`` → its integer (0 for None: no WAL position known)."""
    if not text:
        return 0
    found = LSN.match(text)
    if found is None:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(found.group(1), 16) << 32) | int(found.group(2), 16)


def lsn_text(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def issue(lsn: int) -> str:
    """The token of WAL position ``lsn``."""
    hex_lsn = f"{lsn:x}"
    return f"{hex_lsn}.{_signature(hex_lsn)}"


def read(token: str, source: str = HEADER) -> int:
    """The LSN inside ``token``; :class:`BadToken` if it is malformed or not signed by this deployment."""
    found = TOKEN.match(token.strip())
    if found is None:
        raise BadToken(source)
    hex_lsn, signature = found.groups()
    # A token signed before a SECRET_KEY rotation still reads (Django's SECRET_KEY_FALLBACKS).
    for secret in (settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ())):
        if hmac.compare_digest(signature, _signature(hex_lsn, secret)):
            return int(hex_lsn, 16)
    raise BadToken(source)
