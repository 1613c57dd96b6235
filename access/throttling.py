"""Per-principal throttling (429 with Retry-After): a fixed-window counter per API key or console user.

One atomic operation per request (``INCR`` + ``EXPIRE`` in one round trip, see
:func:`core.redis_cache.round_trip`) instead of DRF's list of request times read and written
back whole. The rate depends on the view's ``throttle_scope``: ``pip`` (``PIP_THROTTLE_RATE``, a rate
for machines) for the Policy Information Point, ``principal`` (``API_THROTTLE_RATE``) for the rest.
A fixed window lets a client send up to twice the rate across a window boundary; that is the price
of one counter, and the rates are set with it in mind.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from access.principals import Principal, principal_of

if TYPE_CHECKING:
    from core import near_cache


class PrincipalRateThrottle(SimpleRateThrottle):
    scope = "principal"

    def __init__(self) -> None:  # the rate depends on the view: read in allow_request
        self.wait_seconds: float | None = None

    def get_cache_key(self, request: Request, view: object) -> str | None:
        principal = principal_of(request.user) if request.user else None
        if principal is None:
            return None  # refused by authentication/permission anyway
        return self.cache_format % {"scope": self.scope, "ident": ident(principal)}

    def allow_request(self, request: Request, view: object) -> bool:
        principal = principal_of(request.user) if request.user else None
        if principal is None:
            return True
        try:
            allowed, self.wait_seconds = self.hit(getattr(view, "throttle_scope", self.scope), principal)
        except Exception:  # noqa: BLE001 - a cache outage must not fail requests: throttling fails open
            return True
        return allowed

    def wait(self) -> float | None:
        return self.wait_seconds

    @classmethod
    def counter(cls, scope: str, principal: Principal) -> tuple[str, int, int, float]:
        """(counter key, limit, window seconds, seconds until the window ends) for this request."""
        rate = cls.THROTTLE_RATES.get(scope) or cls.THROTTLE_RATES[cls.scope]
        limit, seconds = cls.parse_rate(cls, rate)  # type: ignore[arg-type]  # DRF's parse_rate is an instance method that reads no state; called on the class
        assert limit is not None and seconds is not None, "every scope has a rate"
        now = time.time()
        window = int(now // seconds)
        return f"throttle:{scope}:{ident(principal)}:{window}", limit, seconds, (window + 1) * seconds - now

    @classmethod
    def hit(cls, scope: str, principal: Principal) -> tuple[bool, float]:
        """Count one request; (allowed, seconds to wait if not)."""
        from core.redis_cache import round_trip

        key, limit, seconds, remaining = cls.counter(scope, principal)
        _, count = round_trip([], incr=(key, seconds + 1))
        return verdict(count, limit, remaining)


def verdict(count: int | None, limit: int, remaining: float) -> tuple[bool, float]:
    if count is None or count <= limit:
        return True, 0.0
    return False, max(1.0, math.ceil(remaining))


def ident(principal: Principal) -> str:
    return f"{principal.kind}:{principal.id}"


# With a near cache (core/near_cache.py), a worker takes the window in chunks and spends them in memory.
def chunk(limit: int) -> int:
    """How many requests of a window a worker takes from the shared counter at once: a fiftieth of
    the limit, so that the budgets parked in other workers can refuse a key early by at most
    (workers − 1) / 50 of its limit; 1 (a round trip per request) for limits under 100."""
    return max(1, limit // 50)


def counted_round_trip(
    near: near_cache.Near | None, get: list[str], counter: str, limit: int, seconds: int
) -> tuple[list[Any], int | None]:
    """The values of ``get`` and this request's place in the throttle window, in one round trip (none
    counted when the worker spends a budget it holds; a chunk counted with a near cache, else one).
    Raises what the cache raises, the budget spent given back."""
    from core.redis_cache import round_trip

    counted = to_count(near, counter, limit)
    try:
        values, count = round_trip(get, incr=(counter, seconds + 1) if counted else None, by=counted or 1)
    except Exception:
        if near is not None and not counted:
            near.give_back(counter)
        raise
    return values, place(near, counter, limit, count, counted)


def to_count(near: near_cache.Near | None, counter: str, limit: int) -> int:
    """What a round trip should add to the shared counter for this request: 0 when the worker spends a
    budget it holds, a :func:`chunk` with a near cache, else 1."""
    if near is None:
        return 1
    return 0 if near.take(counter) else chunk(limit)


def place(near: near_cache.Near | None, counter: str, limit: int, count: int | None, counted: int) -> int | None:
    """This request's place in the window after a round trip that added ``counted`` (``count``: the
    counter after it; None: not read, an outage). The spare part of a chunk within the limit becomes
    this worker's budget; a request paid from a budget is within the limit."""
    if counted == 0:
        return limit
    if count is None:
        return None
    position = count - counted + 1
    if near is not None and min(count, limit) > position:
        near.grant(counter, min(count, limit) - position)
    return position
