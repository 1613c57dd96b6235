"""The SCIM filter language (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2), parsed into a small tree.

Written by hand rather than taken from ``scim2-filter-parser``: that library turns a filter into SQL
text of its own over an attribute map of table columns, while ours must reach JSON keys, typed
attribute values and membership rows (:mod:`scim.query`); the grammar itself is a page.

Grammar (precedence: ``not`` over ``and`` over ``or``; keywords and operators case-insensitive)::

    filter    = or
    or        = and *("or" and)
    and       = unary *("and" unary)
    unary     = "not" "(" filter ")" / "(" filter ")" / valuePath / attrExp
    valuePath = attrPath "[" filter "]"
    attrExp   = attrPath "pr" / attrPath compareOp compValue
    compValue = false / null / true / number / string (JSON)

Any error is a :class:`BadFilter` (400 ``invalidFilter``), raised before any query is built.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from core.client_json import unstorable_text

MAX_LENGTH = 2000
MAX_DEPTH = 16
OPERATORS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*")
      | (?P<punct>[()\[\]])
      | (?P<number>-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w.:$-]))
      | (?P<word>[A-Za-z][\w.:$-]*)
    )""",
    re.X,
)
_ATTR = re.compile(r"^[A-Za-z][\w$-]*(?:\.[A-Za-z][\w$-]*)?$")


class BadFilter(ValueError):
    """A filter or path that does not parse, or names what the resource does not have."""


@dataclass(frozen=True)
class AttrPath:
    """``[uri:]attr[.sub]``; ``uri`` is a schema URN (``urn:…:User``) or ``None``."""

    uri: str | None
    attr: str
    sub: str | None = None

    def __str__(self) -> str:
        text = f"{self.attr}.{self.sub}" if self.sub else self.attr
        return f"{self.uri}:{text}" if self.uri else text


@dataclass(frozen=True)
class Not:
    inner: Node


@dataclass(frozen=True)
class Compare:
    """RFC 7644's ``attrExp``: ``path op value``, or ``path pr`` (present; ``value`` is ``None``)."""

    path: AttrPath
    op: str
    value: Any = None


@dataclass(frozen=True)
class _Junction:
    """Two filters joined by a logical operator (its subclass)."""

    left: Node
    right: Node


class And(_Junction):
    """``left and right``."""


class Or(_Junction):
    """``left or right``."""


@dataclass(frozen=True)
class ValuePath:
    """``attr[filter]``: some element of the multi-valued ``attr`` matches ``filter``."""

    path: AttrPath
    filter: Node


Node = Compare | And | Or | Not | ValuePath


def attr_path(text: str) -> AttrPath:
    """``urn:…:User:employeeNumber`` → (``urn:…:User``, ``employeeNumber``); ``name.givenName`` → (None, name, givenName)."""
    uri = None
    if ":" in text:
        uri, _, text = text.rpartition(":")
        if not uri.lower().startswith("urn:"):
            raise BadFilter(f"{uri}:{text!s} is not an attribute path")
    if not _ATTR.match(text):
        raise BadFilter(f"{text!r} is not an attribute path")
    attr, _, sub = text.partition(".")
    return AttrPath(uri, attr, sub or None)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise BadFilter(f"unexpected character at position {position}: {text[position : position + 10]!r}")
        kind = match.lastgroup
        assert kind is not None, "every alternative is a named group"
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise BadFilter("the filter is empty")
        if len(text) > MAX_LENGTH:
            raise BadFilter(f"a filter has at most {MAX_LENGTH} characters")
        self.tokens = _tokens(text)
        self.position = 0
        self.depth = 0

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        index = self.position + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise BadFilter("the filter ends too early")
        self.position += 1
        return token

    def expect(self, value: str) -> None:
        token = self.take()
        if token[1] != value:
            raise BadFilter(f"expected {value!r}, found {token[1]!r}")

    def keyword(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token[0] == "word" and token[1].lower() in words

    def parse(self) -> Node:
        node = self.disjunction()
        if self.peek() is not None:
            raise BadFilter(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]  # peek() is not None here
        return node

    def disjunction(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise BadFilter(f"a filter nests at most {MAX_DEPTH} levels")
        node = self.conjunction()
        while self.keyword("or"):
            self.take()
            node = Or(node, self.conjunction())
        self.depth -= 1
        return node

    def conjunction(self) -> Node:
        node = self.unary()
        while self.keyword("and"):
            self.take()
            node = And(node, self.unary())
        return node

    def unary(self) -> Node:
        if self.keyword("not") and self.peek(1) == ("punct", "("):
            self.take()
            self.take()
            inner = self.disjunction()
            self.expect(")")
            return Not(inner)
        token = self.take()
        if token == ("punct", "("):
            inner = self.disjunction()
            self.expect(")")
            return inner
        if token[0] != "word":
            raise BadFilter(f"expected an attribute, found {token[1]!r}")
        path = attr_path(token[1])
        if self.peek() == ("punct", "["):
            if path.sub is not None:
                raise BadFilter(f"{path} cannot hold a value filter")
            self.take()
            inner = self.disjunction()
            self.expect("]")
            return ValuePath(path, inner)
        op_token = self.take()
        op = op_token[1].lower()
        if op_token[0] == "word" and op == "pr":
            return Compare(path, "pr")
        if op_token[0] != "word" or op not in OPERATORS:
            raise BadFilter(f"{op_token[1]!r} is not a comparison operator")
        return Compare(path, op, self.value())

    def value(self) -> Any:
        kind, text = self.take()
        if kind == "string":
            value = json.loads(text)
            if unstorable_text(value, "") is not None:
                raise BadFilter("a string with NUL or a lone surrogate is not a value")
            return value
        if kind == "number":
            number = json.loads(text)
            if isinstance(number, float) and not math.isfinite(number):
                raise BadFilter(f"{text} is not a finite number")
            return number
        if kind == "word" and text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text]
        raise BadFilter(f"{text!r} is not a value (a JSON string, number, true, false or null)")


def parse_filter(text: str) -> Node:
    return _Parser(text).parse()


@dataclass(frozen=True)
class PatchPath:
    """A PATCH ``path``: ``attr[.sub]``, or ``attr[filter][.sub]`` (``members[value eq "…"]``)."""

    path: AttrPath
    filter: Node | None = None
    sub: str | None = None


_VALUE_PATH = re.compile(r"^(?P<attr>[^\[\]]+)\[(?P<filter>.*)\](?:\.(?P<sub>[A-Za-z][\w$-]*))?$", re.S)


def parse_path(text: Any) -> PatchPath:
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_LENGTH:
        raise BadFilter("a path is a non-empty string")
    match = _VALUE_PATH.match(text.strip())
    if match is None:
        return PatchPath(attr_path(text.strip()))
    path = attr_path(match["attr"])
    if path.sub is not None:
        raise BadFilter(f"{path} cannot hold a value filter")
    return PatchPath(path, parse_filter(match["filter"]), match["sub"])
