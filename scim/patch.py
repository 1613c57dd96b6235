"""PATCH operations (RFC 7644 §3.5.2) applied to one resource's SCIM representation.

The resource (a User, or a Group without its members) is small, so its operations run on the JSON
object; the result is then written whole, through the services, in one change with one event.
Operation names are case-insensitive (Microsoft Entra ID sends ``"Replace"``); a path may carry a
schema URN, a sub-attribute and a value filter (``emails[type eq "work"].value``). An ``add`` or
``replace`` through a value filter that matches nothing creates the element the filter describes,
as Entra expects for ``emails[type eq "work"].value``.
"""

from __future__ import annotations

import copy
from typing import Any

from scim.errors import ScimError, invalid_path
from scim.filter import And, AttrPath, BadFilter, Compare, Node, Not, Or, PatchPath, ValuePath, parse_path
from scim.schemas import PATCH_OP

OPS = ("add", "replace", "remove")


def operations(body: Any) -> list[tuple[str, str | None, Any]]:
    """The (op, path, value) of a PatchOp message, op lower-cased; 400 for anything else."""
    if not isinstance(body, dict) or not isinstance(body.get("Operations"), list) or not body["Operations"]:
        raise ScimError(400, "a PatchOp message has a non-empty Operations list", "invalidSyntax")
    schemas = body.get("schemas")
    if schemas is not None and PATCH_OP not in schemas:
        raise ScimError(400, f"a PatchOp message names the schema {PATCH_OP}", "invalidSyntax")
    found = []
    for operation in body["Operations"]:
        if not isinstance(operation, dict):
            raise ScimError(400, "each operation is an object", "invalidSyntax")
        lowered = {str(key).lower(): value for key, value in operation.items()}
        op = lowered.get("op")
        if not isinstance(op, str) or op.lower() not in OPS:
            raise ScimError(400, f"op is one of add, replace, remove, not {op!r}", "invalidSyntax")
        path = lowered.get("path")
        if path is not None and not isinstance(path, str):
            raise invalid_path("path is a string")
        if op.lower() != "remove" and "value" not in lowered:
            raise ScimError(400, f"{op} needs a value", "invalidValue")
        found.append((op.lower(), path, lowered.get("value")))
    return found


def matches(element: Any, node: Node) -> bool:
    """Whether one element of a multi-valued attribute (a JSON object) passes a value filter."""
    if isinstance(node, And):
        return matches(element, node.left) and matches(element, node.right)
    if isinstance(node, Or):
        return matches(element, node.left) or matches(element, node.right)
    if isinstance(node, Not):
        return not matches(element, node.inner)
    if isinstance(node, ValuePath):
        raise BadFilter("a value filter cannot hold another")
    if not isinstance(element, dict):
        element = {"value": element}
    found = _get(element, node.path.attr)
    assert isinstance(node, Compare), "the last kind of node"
    if node.op == "pr":
        return found not in (None, "", [], {})
    left, right = found, node.value
    if isinstance(left, str) and isinstance(right, str):
        left, right = left.lower(), right.lower()
    if node.op == "eq":
        return bool(left == right)
    if node.op == "ne":
        return bool(left != right)
    if not isinstance(left, str) or not isinstance(right, str):
        return False
    return {
        "co": right in left, "sw": left.startswith(right), "ew": left.endswith(right),
        "gt": left > right, "ge": left >= right, "lt": left < right, "le": left <= right,
    }[node.op]  # fmt: skip


def _key(container: dict[str, Any], name: str) -> str:
    """The key of ``container`` that is ``name`` case-insensitively (attribute names are), else ``name``."""
    lowered = name.lower()
    return next((key for key in container if key.lower() == lowered), name)


def _get(container: dict[str, Any], name: str) -> Any:
    return container.get(_key(container, name))


def _merge(current: Any, value: Any) -> Any:
    if isinstance(current, dict) and isinstance(value, dict):
        merged = dict(current)
        for key, item in value.items():
            merged[_key(merged, key)] = item
        return merged
    return value


def _seed(node: Node) -> dict[str, Any]:
    """The element a value filter of ``eq`` comparisons (``type eq "work"``) describes."""
    if isinstance(node, Compare) and node.op == "eq":
        return {node.path.attr: node.value}
    if isinstance(node, And):
        return {**_seed(node.left), **_seed(node.right)}
    raise ScimError(400, "the value filter matches no element", "noTarget")


class Patcher:
    """Applies operations to a resource: ``multi`` are its multi-valued attributes, ``read_only`` the
    attributes no operation may touch, ``extensions`` the URNs whose attributes live in an object of
    their own (keyed by the URN), ``core`` the resource's own schema URN."""

    def __init__(self, *, core: str, extensions: tuple[str, ...], multi: set[str], read_only: set[str]) -> None:
        self.core, self.extensions = core.lower(), {urn.lower(): urn for urn in extensions}
        self.multi, self.read_only = {n.lower() for n in multi}, {n.lower() for n in read_only}

    def apply(self, resource: dict[str, Any], ops: list[tuple[str, str | None, Any]]) -> dict[str, Any]:
        result = copy.deepcopy(resource)
        for op, path, value in ops:
            self.one(result, op, path, value)
        return result

    def one(self, resource: dict[str, Any], op: str, path: str | None, value: Any) -> None:
        if path is None:
            if op == "remove":
                raise ScimError(400, "remove needs a path", "noTarget")
            if not isinstance(value, dict):
                raise ScimError(400, f"{op} without a path takes an object", "invalidValue")
            for key, item in value.items():
                urn = self.extensions.get(str(key).lower())
                if urn is not None and isinstance(item, dict):
                    for sub_key, sub_item in item.items():
                        self.one(resource, op, f"{urn}:{sub_key}", sub_item)
                elif str(key).lower() not in ("schemas", "id", "meta"):  # Okta sends the id along
                    self.one(resource, op, str(key), item)
            return
        try:
            parsed = parse_path(path)
        except BadFilter as exc:
            raise invalid_path(f"{path!r}: {exc}") from None
        container, parsed = self._container(resource, parsed, create=op != "remove")
        if container is None:
            return  # removing from an extension the resource does not have
        self._at(container, parsed, op, value)

    def _container(self, resource: dict[str, Any], parsed: PatchPath, *, create: bool) -> tuple[Any, PatchPath]:
        path = parsed.path
        if path.uri is None or path.uri.lower() == self.core:
            return resource, parsed
        whole = f"{path.uri}:{path.attr}".lower()
        if whole in self.extensions and path.sub is None and parsed.filter is None:
            return resource, PatchPath(AttrPath(None, self.extensions[whole]))  # the whole extension object
        urn = self.extensions.get(path.uri.lower())
        if urn is None:
            raise invalid_path(f"unknown schema {path.uri!r}")
        key = _key(resource, urn)
        if key not in resource:
            if not create:
                return None, parsed
            resource[key] = {}
        if not isinstance(resource[key], dict):
            raise invalid_path(f"{urn} is not an object")
        return resource[key], PatchPath(AttrPath(None, path.attr, path.sub), parsed.filter, parsed.sub)

    def _at(self, container: dict[str, Any], parsed: PatchPath, op: str, value: Any) -> None:
        attr = parsed.path.attr
        if attr.lower() in self.read_only:
            raise ScimError(400, f"{attr} is read-only", "mutability")
        key = _key(container, attr)
        if parsed.filter is not None:
            self._filtered(container, key, parsed.filter, parsed.sub, op, value)
            return
        sub = parsed.path.sub
        if sub is not None:
            parent = container.get(key)
            if parent is None:
                if op == "remove":
                    return
                parent = container[key] = {}
            if not isinstance(parent, dict):
                raise invalid_path(f"{attr} has no sub-attribute {sub}")
            self._set(parent, _key(parent, sub), op, value, multi=False)
            return
        self._set(container, key, op, value, multi=attr.lower() in self.multi)

    @staticmethod
    def _set(container: dict[str, Any], key: str, op: str, value: Any, *, multi: bool) -> None:
        if op == "remove":
            container.pop(key, None)
        elif multi and op == "add":
            current = container.get(key) or []
            items = value if isinstance(value, list) else [value]
            container[key] = list(current) + [item for item in items if item not in current]
        elif multi:
            container[key] = value if isinstance(value, list) else [value]
        else:
            container[key] = _merge(container.get(key), value)

    @staticmethod
    def _filtered(container: dict[str, Any], key: str, node: Node, sub: str | None, op: str, value: Any) -> None:
        items = container.get(key)
        if items is None:
            items = []
        if not isinstance(items, list):
            raise invalid_path(f"{key} is not multi-valued")
        try:
            hits = [index for index, item in enumerate(items) if matches(item, node)]
        except BadFilter as exc:
            raise invalid_path(str(exc)) from None
        if op == "remove":
            if sub is None:
                items = [item for index, item in enumerate(items) if index not in hits]
            else:
                for index in hits:
                    items[index].pop(_key(items[index], sub), None)
        elif not hits:
            element = _seed(node)
            items = [*items, {**element, sub: value} if sub else _merge(element, value)]
        else:
            for index in hits:
                items[index] = {**items[index], _key(items[index], sub): value} if sub else _merge(items[index], value)
        if items:
            container[key] = items
        else:
            container.pop(key, None)
