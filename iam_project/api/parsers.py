"""A JSON parser that enforces the body size limit (DRF's own reads the stream unbounded)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from attributes.validation import nul_pointer
from iam_project.errors import FieldError, PayloadTooLarge, ValidationFailed


class LimitedJSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"the request body exceeds {limit} bytes")
        try:
            data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"malformed JSON: {exc}") from None
        nul = nul_pointer(data, "")
        if nul is not None:
            raise ValidationFailed([FieldError(nul or "/", "nul", "NUL characters are not allowed")])
        return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
