"""OpenAPI post-processing: every operation documents the problem+json errors it can answer, and
request bodies do not allow members the API refuses.

drf-spectacular documents only the success responses a view declares; the refusals (401, 403, 404,
405, 412, 415, 429 and 400) come from shared code (authentication, scopes, tenant scoping, the parser, the
exception handler), so they are added here, once, by method.
"""

from __future__ import annotations

from typing import Any

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "pointer": {"type": "string"},
                    "rule": {"type": "string"},
                    "detail": {"type": "string"},
                },
                "required": ["pointer", "rule", "detail"],
            },
        },
        "current_version": {"type": "integer"},
        "canonical_url": {"type": "string"},
    },
    "required": ["type", "title", "status", "detail"],
}

ERRORS = {
    "400": "Invalid input: a body, query parameter or cursor (see `errors`)",
    "401": "No or bad credentials",
    "403": "The credentials lack the scope the operation needs",
    "404": "No such object within the principal's tenants",
    "406": "The Accept header asks for a representation the operation cannot give",
    "409": "Conflict: a duplicate, or a change that existing data contradicts",
    "412": "If-Match does not match the current version",
    "413": "The request body is too large",
    "415": "The request body's media type is not accepted",
    "429": "Too many requests",
}
READ_ERRORS = ("400", "401", "403", "404", "406", "429")
BY_METHOD = {
    "get": READ_ERRORS,
    "post": (*READ_ERRORS, "409", "413", "415"),
    "put": (*READ_ERRORS, "409", "412", "413", "415"),
    "patch": (*READ_ERRORS, "409", "412", "413", "415"),
    "delete": (*READ_ERRORS, "409", "412"),
}


def add_problem_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular ``POSTPROCESSING_HOOKS`` entry; also closes the request bodies' objects."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    for name, component in schemas.items():
        # Input serializers refuse unknown and read-only fields (StrictInputSerializer): say so.
        if name.endswith("Request") and component.get("type") == "object":
            component.setdefault("additionalProperties", False)
    schemas["Problem"] = PROBLEM_SCHEMA
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method in ("post", "put") and "requestBody" in operation:
                operation["requestBody"]["required"] = True  # no POST or PUT of ours works without a body
            responses = operation.setdefault("responses", {})
            for code in BY_METHOD.get(method, READ_ERRORS):
                responses.setdefault(code, {"description": ERRORS[code], "content": problem})
    return result
