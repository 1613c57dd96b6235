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

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from access.principals import Principal, principal_of


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
