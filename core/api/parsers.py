"""The JSON parser of every API view: the body size limit (DRF's own reads the stream unbounded) and
:func:`core.client_json.decode_json` (nesting bound, valid Unicode, no NUL) before any view or
service sees the data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from core.client_json import BadJSON, decode_json
from core.errors import FieldError, PayloadTooLarge, ValidationFailed


class LimitedJSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"the request body exceeds {limit} bytes")
        try:
            return decode_json(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ParseError(f"malformed JSON: {exc}") from None
        except BadJSON as exc:
            if exc.rule == "syntax":
                raise ParseError(exc.detail) from None
            raise ValidationFailed([FieldError(exc.pointer, exc.rule, exc.detail)]) from None
