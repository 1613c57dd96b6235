"""A context variable that holds a value for one block and then reverts to what it held before."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


@contextmanager
def holding(var: contextvars.ContextVar[T], value: T) -> Iterator[None]:
    """``with holding(var, value):`` — ``var`` is ``value`` inside the block, whatever leaves it."""
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)
