"""A small HTML tree for tests, on the standard library's parser (no extra dependency).

``page(html).select_one(".field-level input[name=attr__level]")``: a CSS subset of tag, ``#id``,
``.class``, ``[attr]``, ``[attr=value]``, ``[attr^=value]``, the descendant combinator and ``,``.
``text`` is an element's text; ``[...]`` reads an attribute.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

_SIMPLE = re.compile(r"([a-zA-Z0-9]*)((?:[#.][\w-]+|\[[^\]]+\])*)$")
_PART = re.compile(r"#([\w-]+)|\.([\w-]+)|\[([\w-]+)(?:(\^?=)([^\]]*))?\]")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Element:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Element | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Element | str] = []

    def __getitem__(self, name: str) -> str:
        return self.attrs[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    def has_attr(self, name: str) -> bool:
        return name in self.attrs

    @property
    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()

    @property
    def text(self) -> str:
        return "".join(child if isinstance(child, str) else child.text for child in self.children)

    def _matches(self, tag: str | None, cls: str | None, attrs: dict[str, str]) -> bool:
        if tag is not None and self.tag not in tag.split("|"):
            return False
        if cls is not None and cls not in self.classes:
            return False
        return all(self.attrs.get(name) == value for name, value in attrs.items())

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Element]:
        found = []
        for child in self.children:
            if isinstance(child, Element):
                if child._matches(tag, cls, attrs):
                    found.append(child)
                found.extend(child.find_all(tag, cls, **attrs))
        return found

    def _is(self, simple: str) -> bool:
        match = _SIMPLE.match(simple)
        if match is None or "".join(m.group(0) for m in _PART.finditer(match.group(2))) != match.group(2):
            raise ValueError(f"unsupported selector {simple!r}")
        tag, rest = match.groups()
        if tag and self.tag != tag:
            return False
        for id_, cls, name, op, value in _PART.findall(rest):
            value = value.strip("\"'")
            if id_ and self.attrs.get("id") != id_:
                return False
            if cls and cls not in self.classes:
                return False
            if name and (
                name not in self.attrs
                or (op == "=" and self.attrs[name] != value)
                or (op == "^=" and not self.attrs[name].startswith(value))
            ):
                return False
        return True

    def _descendants(self) -> list[Element]:
        found = []
        for child in self.children:
            if isinstance(child, Element):
                found.append(child)
                found.extend(child._descendants())
        return found

    def select(self, selector: str) -> list[Element]:
        found: list[Element] = []
        for alternative in selector.split(","):
            scope: list[Element] = [self]
            for simple in alternative.split():
                scope = [e for s in scope for e in s._descendants() if e._is(simple)]
                scope = list(dict.fromkeys(scope))
            found.extend(e for e in scope if e not in found)
        return found

    def select_one(self, selector: str) -> Element | None:
        found = self.select(selector)
        return found[0] if found else None

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Element | None:
        found = self.find_all(tag, cls, **attrs)
        return found[0] if found else None


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = self.current = Element("#document", {}, None)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs}, self.current)
        self.current.children.append(element)
        if tag not in VOID:
            self.current = element

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.current.children.append(Element(tag, {name: value or "" for name, value in attrs}, self.current))

    def handle_endtag(self, tag: str) -> None:
        node: Element | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.children.append(data)


def page(html: str) -> Element:
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root
