"""What format an import file is in: the one place that tells CSV from JSON Lines."""

from __future__ import annotations

from pathlib import PurePath
from typing import overload

FORMATS = ("csv", "jsonl")
# How a file says what it is: its media type (an API upload) or its name (a console upload, a path).
MEDIA_TYPES = {"text/csv": "csv", "application/x-ndjson": "jsonl", "application/jsonl": "jsonl"}
SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


@overload
def file_format(*, declared: str | None = None, name: str = "", media_type: str = "", fallback: str) -> str: ...
@overload
def file_format(
    *, declared: str | None = None, name: str = "", media_type: str = "", fallback: None = None
) -> str | None: ...
def file_format(
    *, declared: str | None = None, name: str = "", media_type: str = "", fallback: str | None = None
) -> str | None:
    """``csv`` or ``jsonl``: as declared, else by the media type, else by the name's suffix, else ``fallback``."""
    return (
        declared
        or MEDIA_TYPES.get(media_type.split(";")[0].strip().lower())
        or SUFFIXES.get(PurePath(name).suffix.lower())
        or fallback
    )
