"""Domain errors raised by services and selectors; the API and the console translate them.

Each maps to one HTTP status in :mod:`core.api.problems` (400, 404, 409, 412, 413).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One broken rule: ``pointer`` is a JSON pointer into the request body (``/attributes/level``)."""

    pointer: str
    rule: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"pointer": self.pointer, "rule": self.rule, "detail": self.detail}


class DomainError(Exception):
    status = 400
    title = "Bad request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ValidationFailed(DomainError):
    status = 400
    title = "Validation failed"

    def __init__(self, errors: list[FieldError], detail: str | None = None) -> None:
        self.errors = errors
        summary = detail or "; ".join(f"{e.pointer}: {e.detail}" for e in errors)
        super().__init__(summary)


class NotFound(DomainError):
    status = 404
    title = "Not found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class PreconditionFailed(DomainError):
    status = 412
    title = "Precondition failed"

    def __init__(self, current_version: int | None = None) -> None:
        if current_version is None:
            super().__init__("If-Match is not an ETag of this resource")
        else:
            super().__init__(f"If-Match does not match the current version {current_version}")
        self.current_version = current_version


class PayloadTooLarge(DomainError):
    status = 413
    title = "Payload too large"
