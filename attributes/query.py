"""The attribute query language, parsed: ``q=`` expressions and ``attr.<key>__<op>=`` parameters.

This module only reads text into a tree (:class:`Condition`, :class:`AllOf`, :class:`AnyOf`,
:class:`Not`); :mod:`attributes.search` checks the tree against a tenant's definitions and turns it
into SQL. Grammar of ``q`` (keywords and operators are case-insensitive)::

    expr      := term ("OR" term)*
    term      := factor ("AND" factor)*
    factor    := "NOT" factor | "(" expr ")" | condition
    condition := KEY OP operand | KEY ("exists" | "missing")
    operand   := value | "(" value ("," value)* ")"
    value     := '"' text, with \\" and \\\\ escapes '"' | a bare word of A-Z a-z 0-9 _ . : + - @

Every input is bounded (length, conditions, nesting, list items, value length) and refused with a
:class:`QueryError` naming the rule, so that no input reaches the database unparsed or unbounded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OPERATORS = frozenset(
    {"eq", "ne", "in", "lt", "le", "gt", "ge", "between", "contains", "startswith", "has", "any", "all"}
)
UNARY = frozenset({"exists", "missing"})
LIST_OPERATORS = frozenset({"in", "any", "all", "between"})

MAX_QUERY_CHARS = 2000
MAX_CONDITIONS = 20
MAX_DEPTH = 8
MAX_LIST_ITEMS = 100
MAX_VALUE_CHARS = 500

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\["\\])*")
      | (?P<punct>[(),])
      | (?P<word>[A-Za-z0-9_.:+@-]+)
    )""",
    re.X,
)
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class QueryError(ValueError):
    """A query that cannot be read: ``rule`` is its name (syntax, too_long, too_deep…)."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule, self.detail = rule, detail


@dataclass(frozen=True)
class Condition:
    key: str
    op: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    part: Node


Node = Condition | AllOf | AnyOf | Not


def check_text(text: str, *, limit: int) -> None:
    if len(text) > limit:
        raise QueryError("too_long", f"at most {limit} characters")
    if _UNSTORABLE.search(text):
        raise QueryError("unicode", "contains U+0000 or a lone surrogate, which cannot be searched for")


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise QueryError("syntax", f"unexpected character at position {position + 1}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "string":
            value = re.sub(r"\\([\"\\])", r"\1", value[1:-1])
        tokens.append((kind, value))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.index = 0
        self.conditions = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise QueryError("syntax", "the expression ends too early")
        self.index += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token[0] == "word" and token[1].upper() == word:
            self.index += 1
            return True
        return False

    def expect(self, punct: str) -> None:
        token = self.take()
        if token != ("punct", punct):
            raise QueryError("syntax", f"expected {punct!r}, found {token[1]!r}")

    def parse(self) -> Node:
        node = self.expr(0)
        extra = self.peek()
        if extra is not None:
            raise QueryError("syntax", f"unexpected {extra[1]!r} after a complete expression")
        return node

    def expr(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise QueryError("too_deep", f"at most {MAX_DEPTH} levels of parentheses and NOT")
        parts = [self.term(depth)]
        while self.keyword("OR"):
            parts.append(self.term(depth))
        return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))

    def term(self, depth: int) -> Node:
        parts = [self.factor(depth)]
        while self.keyword("AND"):
            parts.append(self.factor(depth))
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def factor(self, depth: int) -> Node:
        if self.keyword("NOT"):
            if depth + 1 > MAX_DEPTH:
                raise QueryError("too_deep", f"at most {MAX_DEPTH} levels of parentheses and NOT")
            return Not(self.factor(depth + 1))
        if self.peek() == ("punct", "("):
            self.take()
            node = self.expr(depth + 1)
            self.expect(")")
            return node
        return self.condition()

    def condition(self) -> Condition:
        kind, key = self.take()
        if kind != "word" or not _KEY.match(key):
            raise QueryError("key", f"{key[:40]!r} is not an attribute key (a-z, 0-9 and '_', starting with a letter)")
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise QueryError("too_many", f"at most {MAX_CONDITIONS} conditions")
        kind, op = self.take()
        op = op.lower()
        if kind != "word" or op not in OPERATORS | UNARY:
            raise QueryError(
                "operator", f"{op[:40]!r} is not an operator; one of {', '.join(sorted(OPERATORS | UNARY))}"
            )
        if op in UNARY:
            return Condition(key, op)
        if self.peek() == ("punct", "("):
            self.take()
            values = [self.value()]
            while self.peek() == ("punct", ","):
                self.take()
                values.append(self.value())
                if len(values) > MAX_LIST_ITEMS:
                    raise QueryError("too_many", f"at most {MAX_LIST_ITEMS} values in a list")
            self.expect(")")
            return Condition(key, op, tuple(values))
        return Condition(key, op, (self.value(),))

    def value(self) -> str:
        kind, value = self.take()
        if kind == "punct":
            raise QueryError("syntax", f"expected a value, found {value!r}")
        if len(value) > MAX_VALUE_CHARS:
            raise QueryError("too_long", f"a value has at most {MAX_VALUE_CHARS} characters")
        return value


def parse_expression(text: str) -> Node:
    """The tree of a ``q=`` expression, or a :class:`QueryError`."""
    check_text(text, limit=MAX_QUERY_CHARS)
    if not text.strip():
        raise QueryError("syntax", "the expression is empty")
    return _Parser(text).parse()


def parse_parameter(name: str, raw: str, known_keys: set[str]) -> Condition:
    """``attr.<key>=v`` (equality) or ``attr.<key>__<op>=v``; lists (``in``, ``between``…) are comma-separated.

    A key that itself ends in ``__<op>`` and is defined wins over the operator reading.
    """
    check_text(raw, limit=MAX_QUERY_CHARS)
    key, op = name, "eq"
    if name not in known_keys and "__" in name:
        key, op = name.rsplit("__", 1)
        if op not in OPERATORS | UNARY:
            raise QueryError(
                "operator", f"{op[:40]!r} is not an operator; one of {', '.join(sorted(OPERATORS | UNARY))}"
            )
    if not _KEY.match(key):
        raise QueryError("key", "not an attribute key (a-z, 0-9 and '_', starting with a letter)")
    if op in UNARY:
        if raw not in ("", "true"):
            raise QueryError("value", f"{op} takes no value (or 'true')")
        return Condition(key, op)
    values = tuple(raw.split(",")) if op in LIST_OPERATORS else (raw,)
    if len(values) > MAX_LIST_ITEMS:
        raise QueryError("too_many", f"at most {MAX_LIST_ITEMS} values in a list")
    if any(len(value) > MAX_VALUE_CHARS for value in values):
        raise QueryError("too_long", f"a value has at most {MAX_VALUE_CHARS} characters")
    return Condition(key, op, values)
