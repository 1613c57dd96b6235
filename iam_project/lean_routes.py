"""Routes of other doors in the lean door (``api/lean.py``): wiring, so that neither door imports the
other (both are on layer 9)."""

from __future__ import annotations

from access import scopes as S
from api.lean import LeanRoute
from scim import lean as scim_lean

SCIM_ROUTES = [
    LeanRoute(
        scim_lean.USERS,
        frozenset({"GET", "HEAD"}),
        S.SCIM_PROVISION,
        scim_lean.SAMPLE,
        scim_lean.users_by_user_name,
        accepts=scim_lean.accepts,
        throttle_scope="principal",  # the SCIM views' rate (API_THROTTLE_RATE), not the PIP's
    )
]
