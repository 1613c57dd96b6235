"""The two fields of a definition that shape a user's *effective* value: ``default`` and ``merge``.

A user's effective value of a key is its own value, else the value of its highest-priority group,
else the definition's ``default``; with ``merge: union`` (``string_list`` only) it is the sorted
union of the user's and every group's list (the default when none has one). The read side
(``resolver/effective.py``) computes it; here the two fields are checked when a definition is written.
"""

from __future__ import annotations

from attributes.models import AttributeDefinition
from attributes.validation import validate_value
from core.errors import FieldError

MERGES = ("replace", "union")
EFFECTIVE_TARGETS = ("user", "group", "user_and_group")


def effective_rules_check(definition: AttributeDefinition) -> list[FieldError]:
    """The broken rules of ``default`` and ``merge`` (the rest of the definition is checked by the caller)."""
    errors: list[FieldError] = []
    if definition.merge not in MERGES:
        errors.append(FieldError("/merge", "enum", f"one of {', '.join(MERGES)}"))
    elif definition.merge == "union" and definition.type != AttributeDefinition.Type.STRING_LIST:
        errors.append(FieldError("/merge", "applies_to", "union applies only to string_list"))
    if definition.default is None:
        return errors
    if definition.target not in EFFECTIVE_TARGETS:
        errors.append(FieldError("/default", "applies_to", "only for definitions of users or groups"))
        return errors
    if definition.type not in AttributeDefinition.Type.values:
        return errors  # the type error is reported by the caller
    _, value_errors = validate_value(definition, definition.default, "/default")
    return errors + value_errors
