"""A parsed SCIM filter (:mod:`scim.filter`) compiled to one SQL condition with bound parameters.

Nothing from the request reaches the SQL text: column expressions come from the resource's
attribute map (:class:`Target`), and every value and JSON key is a parameter. A value of the wrong
type for its attribute, an operator the attribute's type does not have, or an unknown attribute is
a :class:`~scim.filter.BadFilter` (400 ``invalidFilter``) before PostgreSQL sees anything.

Case rules per attribute (RFC 7643 ``caseExact``): a case-insensitive attribute compares
``upper(column)`` with ``upper(value)`` (``userName eq`` is then one probe of the
``user_tenant_username_ci`` index).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import BooleanField
from django.db.models.expressions import RawSQL

from scim.filter import And, AttrPath, BadFilter, Compare, Node, Not, Or, ValuePath, parse_filter

TEXT, BOOL, TIME, NUMBER, JSONBOOL = "text", "bool", "time", "number", "jsonbool"


@dataclass(frozen=True)
class Target:
    """Where an attribute lives: an SQL expression of ``kind`` (``sql`` with ``params``), or, for a
    multi-valued attribute, a set of rows (``rows``: ``FROM … WHERE …`` naming its row ``e``) whose
    sub-attributes ``element`` resolves, ``default`` being the one a bare ``emails eq "…"`` means."""

    kind: str = TEXT
    sql: str = ""
    params: tuple[Any, ...] = ()
    case_exact: bool = False
    rows: str = ""
    element: Callable[[str], Target] | None = None
    default: str = "value"
    sortable: bool = field(default=True)


Resolver = Callable[[AttrPath], Target]


def _value(target: Target, op: str, value: Any) -> Any:
    """The parameter for ``value`` compared with an attribute of the target's kind."""
    if value is None:
        raise BadFilter("null is compared with eq or ne only")
    if target.kind == TEXT:
        if not isinstance(value, str):
            raise BadFilter(f"{value!r} is not a string")
        return value
    if target.kind == NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadFilter(f"{value!r} is not a number")
        return Decimal(str(value))
    if target.kind == TIME:
        try:
            return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise BadFilter(f"{value!r} is not a dateTime") from None
    if isinstance(value, str) and value.lower() in ("true", "false"):  # as Entra sends booleans
        value = value.lower() == "true"
    if not isinstance(value, bool):
        raise BadFilter(f"{value!r} is not a boolean")
    if op not in ("eq", "ne"):
        raise BadFilter(f"a boolean is compared with eq or ne, not {op}")
    return value


def _compare(target: Target, op: str, value: Any) -> tuple[str, list[Any]]:
    column, params = f"({target.sql})", list(target.params)
    if value is None and op in ("eq", "ne"):
        return f"{column} IS {'NOT ' if op == 'ne' else ''}NULL", params
    param = _value(target, op, value)
    if target.kind == JSONBOOL:  # a JSON true/false: compared as jsonb
        column, param = f"({column})::jsonb", "true" if param else "false"
        placeholder = "%s::jsonb"
    else:
        placeholder = "%s"
    if target.kind == TEXT and not target.case_exact:
        column, placeholder = f"upper({column})", "upper(%s)"
    if target.kind in (BOOL, JSONBOOL) and op not in ("eq", "ne"):
        raise BadFilter(f"a boolean is compared with eq or ne, not {op}")
    if op in ("co", "sw", "ew"):
        if target.kind != TEXT:
            raise BadFilter(f"{op} compares strings")
        condition = {
            "co": f"strpos({column}, {placeholder}) > 0",
            "sw": f"starts_with({column}, {placeholder})",
            "ew": f"right({column}, char_length(%s)) = {placeholder}",
        }[op]
        return condition, params + ([param, param] if op == "ew" else [param])
    sql_op = {"eq": "=", "ne": "IS DISTINCT FROM", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}[op]
    return f"{column} {sql_op} {placeholder}", [*params, param]


def _present(target: Target) -> tuple[str, list[Any]]:
    column = f"({target.sql})"
    if target.kind == TEXT:
        return f"coalesce({column}, '') <> ''", list(target.params)
    return f"{column} IS NOT NULL", list(target.params)


class Compiler:
    def __init__(self, resolve: Resolver) -> None:
        self.resolve = resolve

    def compile(self, node: Node, element: Callable[[str], Target] | None = None) -> tuple[str, list[Any]]:
        if isinstance(node, And | Or):
            left, left_params = self.compile(node.left, element)
            right, right_params = self.compile(node.right, element)
            joiner = "AND" if isinstance(node, And) else "OR"
            return f"({left} {joiner} {right})", left_params + right_params
        if isinstance(node, Not):
            inner, params = self.compile(node.inner, element)
            return f"NOT coalesce(({inner}), false)", params
        if isinstance(node, ValuePath):
            if element is not None:
                raise BadFilter("a value filter cannot hold another")
            target = self._target(node.path, None)
            if target.element is None:
                raise BadFilter(f"{node.path} is not multi-valued")
            inner, params = self.compile(node.filter, target.element)
            return f"EXISTS (SELECT 1 FROM {target.rows} AND {inner})", list(target.params) + params
        target = self._target(node.path, element)
        if target.element is not None:  # emails.value co "x", or emails eq "x" (its default sub-attribute)
            sub = node.path.sub or target.default
            if node.op == "pr" and node.path.sub is None:
                return f"EXISTS (SELECT 1 FROM {target.rows})", list(target.params)
            inner, params = self.compile(Compare(AttrPath(None, sub), node.op, node.value), target.element)
            return f"EXISTS (SELECT 1 FROM {target.rows} AND {inner})", list(target.params) + params
        if node.op == "pr":
            return _present(target)
        return _compare(target, node.op, node.value)

    def _target(self, path: AttrPath, element: Callable[[str], Target] | None) -> Target:
        if element is None:
            return self.resolve(path)
        if path.uri is not None or path.sub is not None:
            raise BadFilter(f"{path} is not a sub-attribute")
        return element(path.attr)


def filter_condition(text: str, resolve: Resolver) -> RawSQL:
    """``text`` as a boolean expression for ``QuerySet.filter``; :class:`BadFilter` if it is not one."""
    sql, params = Compiler(resolve).compile(parse_filter(text))
    return RawSQL(sql, params, output_field=BooleanField())


def sort_expression(path: AttrPath, resolve: Resolver) -> RawSQL:
    target = resolve(path)
    if target.element is not None or not target.sortable:
        raise BadFilter(f"cannot sort by {path}")
    sql = target.sql if target.case_exact or target.kind != TEXT else f"upper({target.sql})"
    return RawSQL(sql, list(target.params))
