"""The one decoding path for JSON that a client sends: API request bodies and import-file lines.

:func:`decode_json` returns the document or raises :class:`BadJSON` naming a JSON pointer and a rule:

- ``syntax``: not JSON (``NaN``/``Infinity`` included, which are not JSON);
- ``depth``: arrays/objects nested more than :data:`MAX_DEPTH` levels (the standard decoder recurses
  and a body nested ~1,000 deep would raise ``RecursionError``), checked *before* decoding;
- ``unicode``: a lone UTF-16 surrogate (``"\\ud800"``) in a string or an object key: valid JSON
  syntax, but not a Unicode character, so it can be neither encoded as UTF-8 nor stored by PostgreSQL;
- ``nul``: U+0000, which PostgreSQL cannot store in text.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 32
"""Levels of arrays/objects a document may nest: ``{"attributes": {"k": ["v"]}}`` is 3."""

_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)
_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED_SURROGATE_OR_NUL = re.compile(r"\\u(?:[dD][89a-fA-F]|0000)")


class BadJSON(ValueError):
    def __init__(self, pointer: str, rule: str, detail: str) -> None:
        super().__init__(f"{pointer}: {detail}")
        self.pointer, self.rule, self.detail = pointer, rule, detail


def decode_json(text: str) -> Any:
    """``text`` as a JSON document, refusing what :mod:`json` accepts but we cannot handle or store."""
    check_depth(text)
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:  # JSONDecodeError, and the constants refused above
        raise BadJSON("/", "syntax", f"malformed JSON: {exc}") from None
    except RecursionError:  # unreachable after check_depth; kept so that no body can ever 500 here
        raise BadJSON("/", "depth", f"nested deeper than {MAX_DEPTH} levels") from None
    if _ESCAPED_SURROGATE_OR_NUL.search(text):  # the only ways to spell NUL or a surrogate in JSON
        found = unstorable_text(data, "")
        if found is not None:
            raise BadJSON(*found)
    return data


def check_depth(text: str) -> None:
    """Raise :class:`BadJSON` (rule ``depth``) when ``text`` nests deeper than :data:`MAX_DEPTH`."""
    # Fast path: fewer opening brackets than the bound cannot nest deeper than it (brackets inside
    # strings are counted too, which only over-counts).
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    depth = 0
    for token in _STRING_OR_BRACKET.finditer(text):
        char = token.group()
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise BadJSON("/", "depth", f"JSON nested deeper than {MAX_DEPTH} levels")
        elif char in "]}":
            depth -= 1


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def escape_pointer_token(token: str) -> str:
    """RFC 6901 escaping of one reference token; a lone surrogate is spelled as its JSON escape, so
    that the pointer itself can be encoded in the problem body."""
    token = token.replace("~", "~0").replace("/", "~1")
    return _SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", token)


def _text_problem(text: str) -> tuple[str, str] | None:
    if "\x00" in text:
        return "nul", "NUL characters are not allowed"
    if _SURROGATE.search(text):
        return "unicode", "not valid Unicode: a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape)"
    return None


def unstorable_text(value: Any, pointer: str) -> tuple[str, str, str] | None:
    """(pointer, rule, detail) of the first string or key in ``value`` holding NUL or a lone surrogate."""
    if isinstance(value, str):
        found = _text_problem(value)
        return (pointer or "/", *found) if found else None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{pointer}/{escape_pointer_token(str(key))}"
            found = _text_problem(key) if isinstance(key, str) else None
            if found:
                return (here, *found)
            inner = unstorable_text(item, here)
            if inner is not None:
                return inner
    elif isinstance(value, list):
        for index, item in enumerate(value):
            inner = unstorable_text(item, f"{pointer}/{index}")
            if inner is not None:
                return inner
    return None
