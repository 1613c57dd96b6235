"""Who is acting in this context: set by the doors (API, console, commands, jobs), read by the audit log.

The doors know their callers as :class:`access.principals.Principal`; what the layers below need of
one is only what an audit record names (kind, name, id), so they read it through :class:`Actor`.
"""

from __future__ import annotations

import contextvars
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from core.context import holding


class Actor(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def id(self) -> str: ...

    @property
    def label(self) -> str: ...


@dataclass(frozen=True)
class SystemActor:
    kind: str = "system"
    name: str = "system"
    id: str = ""

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"


SYSTEM = SystemActor()
acting: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("acting_principal", default=None)


def acting_as(actor: Actor | None) -> AbstractContextManager[None]:
    return holding(acting, actor)


def current_actor() -> Actor:
    return acting.get() or SYSTEM
