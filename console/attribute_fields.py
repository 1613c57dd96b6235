"""The console's typed attribute fields: one form field per attribute definition of a tenant.

The fields only translate what a person typed into JSON values (``"5"`` → ``5``, a checkbox →
``true``/``false``, one list item per line); they never refuse anything themselves. Every value
goes through :func:`attributes.validation.validate_attributes`, the same function the API and the
services use, and each broken rule is shown on its field with the API's pointer, rule and detail.

Stored values without a definition (the definition was deleted) get a field of their own holding
the stored JSON, with the ``unknown`` error on it: clear the field to drop the value.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS

from attributes.models import AttributeDefinition
from attributes.validation import DATETIME_SHAPE, validate_attributes
from console.support import ModelAdminBase, ModelFormBase, add_field_errors
from core.errors import FieldError, ValidationFailed

Type = AttributeDefinition.Type
PREFIX = "attr__"
ATTRIBUTES_DESCRIPTION = (
    "One field per attribute definition of the tenant, validated by the same rules as the API. "
    "An empty field leaves the attribute unset."
)
POINTER = "/attributes"
_Form = TypeVar("_Form", bound=forms.ModelForm)


def field_name(key: str) -> str:
    return f"{PREFIX}{key}"


def _number(value: float | None) -> str:
    return "" if value is None else str(int(value)) if float(value).is_integer() else str(value)


class _Checkbox(forms.CheckboxInput):
    def use_required_attribute(self, initial: Any) -> bool:
        return False  # "required" on a checkbox would mean "must be ticked"


class AttributeValueField(forms.Field):
    """One attribute's value: converts the widget's text to JSON, leaves every rule to the validator.

    ``required`` marks the label (the admin's bold "required"); the "required" rule itself is checked
    by ``validate_attributes``, so its message is the API's.
    """

    def __init__(self, *, definition: AttributeDefinition | None, key: str, stored: Any, **kwargs: Any) -> None:
        self.definition, self.key, self.stored = definition, key, stored
        self.has_stored = stored is not None
        super().__init__(**kwargs)

    def validate(self, value: Any) -> None:
        """Nothing: the rules are ``validate_attributes``'s."""

    def to_python(self, value: Any) -> Any:
        """The JSON value for ``value`` as posted; ``None`` means "absent"."""
        definition = self.definition
        if definition is None:  # a stored value whose definition is gone: the field holds JSON
            return _json_or_text(value)
        kind = definition.type
        if kind == Type.BOOLEAN:
            # Unticked is false, except for a value that was never set (and is not required): an
            # unrelated save must not turn "absent" into false.
            if value:
                return True
            return False if self.has_stored or definition.required else None
        text = "" if value is None else str(value)
        if self.has_stored and text == self.prepare_value(self.stored):
            return self.stored  # unchanged: keep the stored form (e.g. a datetime's offset)
        if kind == Type.STRING_LIST:
            items = [line.strip() for line in text.splitlines()]
            items = [item for item in items if item]
            return items or None
        text = text.strip()
        if not text:
            return None
        if kind == Type.INTEGER:
            return _int_or_text(text)
        if kind == Type.NUMBER:
            return _number_or_text(text)
        if kind == Type.DATETIME and not DATETIME_SHAPE.match(text):
            text = f"{text}Z"  # datetime-local has no zone: the console's are UTC
            if self.has_stored and _instant(text) is not None and _instant(text) == _instant(self.stored):
                return self.stored  # the same instant (browsers drop ":00" seconds): keep the stored form
        return text

    def prepare_value(self, value: Any) -> Any:
        """The stored JSON value (or the posted text) as the widget shows it."""
        if self.definition is None or value is None:
            return "" if value is None else value  # an unknown key's initial is already JSON text
        kind = self.definition.type
        if kind == Type.BOOLEAN:
            return value
        if kind == Type.STRING_LIST:
            return "\n".join(map(str, value)) if isinstance(value, list) else value
        if kind == Type.DATETIME and isinstance(value, str):
            return _utc_local(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _number(value)
        return value

    def has_changed(self, initial: Any, data: Any) -> bool:
        return self.to_python(data) != self.stored


def _as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _json_or_text(value: Any) -> Any:
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _int_or_text(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return _number_or_text(text)  # "3.5" → 3.5, so the message is the API's "got number"


def _number_or_text(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text  # the validator says "must be a …, got string"


def _instant(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _utc_local(value: str) -> str:
    """A stored ISO date-time as ``datetime-local`` shows it: in UTC, without the zone."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed.isoformat(timespec="seconds")


def attribute_field(definition: AttributeDefinition, stored: Any) -> AttributeValueField:
    """The typed field of one definition: its widget, HTML constraints, label, help and required mark."""
    kind = definition.type
    attrs: dict[str, Any] = {}
    hints: list[str] = []
    widget: forms.Widget
    if kind in (Type.INTEGER, Type.NUMBER):
        attrs["step"] = "1" if kind == Type.INTEGER else "any"
        if definition.min_value is not None:
            attrs["min"] = _number(definition.min_value)
        if definition.max_value is not None:
            attrs["max"] = _number(definition.max_value)
        if "min" in attrs or "max" in attrs:
            hints.append(f"{attrs.get('min', '…')} to {attrs.get('max', '…')}")
        widget = forms.NumberInput(attrs=attrs)
        if stored is not None and (isinstance(stored, bool) or not isinstance(stored, int | float)):
            widget = forms.TextInput()  # a number input would show a stored non-number as empty
    elif kind == Type.BOOLEAN:
        widget = _Checkbox()
    elif kind == Type.DATE:
        widget = forms.DateInput(attrs={"type": "date"})
    elif kind == Type.DATETIME:
        widget = forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"})
        hints.append("UTC")
    elif kind == Type.ENUM:
        allowed = [str(value) for value in definition.allowed_values or []]
        extra = [str(stored)] if stored is not None and str(stored) not in allowed else []
        widget = forms.Select(choices=[("", "—"), *((value, value) for value in [*allowed, *extra])])
    elif kind == Type.STRING_LIST:
        widget = forms.Textarea(attrs={"rows": 3, "cols": 40})
        hints.append("one item per line")
        if definition.max_items is not None:
            hints.append(f"at most {definition.max_items} items")
        if definition.allowed_values:
            hints.append("from: " + ", ".join(map(str, definition.allowed_values[:20])))
    else:
        if definition.max_length is not None:
            attrs["maxlength"] = definition.max_length
        if definition.pattern:
            attrs["pattern"] = definition.pattern
            hints.append(f"pattern {definition.pattern}")
        widget = forms.TextInput(attrs={"size": 40, **attrs})
        if definition.allowed_values:
            hints.append("one of: " + ", ".join(map(str, definition.allowed_values[:20])))
    if definition.max_length is not None and kind == Type.STRING_LIST:
        hints.append(f"each at most {definition.max_length} characters")
    help_text = " · ".join(part for part in [definition.description, *hints] if part)
    return AttributeValueField(
        definition=definition,
        key=definition.key,
        stored=stored,
        required=definition.required,
        widget=widget,
        label=f"{definition.key} ({definition.get_type_display().lower()})",
        help_text=help_text,
        initial=stored,
    )


def unknown_field(key: str, stored: Any) -> AttributeValueField:
    return AttributeValueField(
        definition=None,
        key=key,
        stored=stored,
        required=False,
        widget=forms.TextInput(attrs={"size": 40}),
        label=f"{key} (no definition)",
        help_text="A stored value whose attribute definition no longer exists (JSON). Clear it to remove it.",
        initial=_as_json(stored),
    )


def attribute_fields(definitions: Iterable[AttributeDefinition], stored: Mapping[str, Any]) -> dict[str, forms.Field]:
    """The typed fields of ``definitions`` (by key), then one per stored key without a definition."""
    by_key = {definition.key: definition for definition in sorted(definitions, key=lambda d: d.key)}
    fields: dict[str, forms.Field] = {
        field_name(key): attribute_field(definition, stored.get(key)) for key, definition in by_key.items()
    }
    for key in sorted(set(stored) - set(by_key), key=str):
        fields[field_name(str(key))] = unknown_field(str(key), stored[key])
    return fields


def attribute_values(form: forms.BaseForm) -> dict[str, Any]:
    """The attribute map the form's typed fields hold (absent values left out)."""
    values = {}
    for name, field in form.fields.items():
        if isinstance(field, AttributeValueField) and name in form.cleaned_data:
            value = form.cleaned_data[name]
            if value is not None:
                values[field.key] = value
    return values


def show_attribute_errors(form: forms.BaseForm, errors: Iterable[FieldError], *, bound: bool = True) -> None:
    """Each broken rule on its attribute's field (``/attributes/groups/1`` → the ``groups`` field);
    rules about the whole map (``/attributes``: too many) on the form."""
    for item in errors:
        key = (
            item.pointer.removeprefix(f"{POINTER}/").split("/", 1)[0] if item.pointer.startswith(f"{POINTER}/") else ""
        )
        key = key.replace("~1", "/").replace("~0", "~")
        name = field_name(key) if key and field_name(key) in form.fields else None
        message = f"{item.pointer} [{item.rule}] {item.detail}"
        if bound:
            form.add_error(name, message)
        else:
            errors_of = form._errors  # type: ignore[attr-defined]  # an unbound form: add_error() needs cleaned_data; django-stubs omit BaseForm._errors
            if name is None:
                errors_of.setdefault(NON_FIELD_ERRORS, form.error_class(error_class="nonfield")).append(message)
            else:
                errors_of.setdefault(name, form.error_class()).append(message)


class AttributeFormMixin(ModelFormBase):
    """A ModelForm mixin: the attribute map from the typed fields, validated like the API.

    Subclasses are built per tenant by :func:`with_attribute_fields` (``attribute_definitions`` and
    the typed fields declared on the class). An unbound form (the page as first shown) already shows
    what is wrong with the stored values: unknown keys, values a changed definition no longer allows.
    """

    attribute_definitions: list[AttributeDefinition] = []

    def full_clean(self) -> None:
        super().full_clean()
        if not self.is_bound:
            stored = getattr(self.instance, "attributes", None) or {}
            if stored:
                try:
                    validate_attributes(self.attribute_definitions, stored)
                except ValidationFailed as error:
                    show_attribute_errors(self, error.errors, bound=False)

    def show_service_errors(self, error: ValidationFailed) -> None:
        """The service's refusal: each attribute's rules on its typed field, the others by ``add_field_errors``."""
        own = [item for item in error.errors if item.pointer == POINTER or item.pointer.startswith(f"{POINTER}/")]
        show_attribute_errors(self, own)
        others = [item for item in error.errors if item not in own]
        if others:
            add_field_errors(self, ValidationFailed(others))


def with_attribute_fields(
    form_class: type[_Form], definitions: list[AttributeDefinition], stored: Mapping[str, Any]
) -> type[_Form]:
    """``form_class`` with one typed field per definition (and per stored key without one)."""
    fields = attribute_fields(definitions, stored)
    attrs: dict[str, Any] = {"attribute_definitions": list(definitions), **fields}
    return type(form_class.__name__, (form_class,), attrs)


class AttributeFieldsetsAdmin(ModelAdminBase):
    """A ModelAdmin mixin for pages whose form comes from ``attribute_form(request, obj)`` (built by
    :func:`with_attribute_fields`): the record's own fields, then one typed field per attribute
    definition, then the record's version and timestamps. ``main_fields(obj)`` names the first group."""

    def main_fields(self, obj: Any) -> list[str]:
        raise NotImplementedError

    def attribute_form(self, request: Any, obj: Any) -> type[forms.ModelForm]:
        raise NotImplementedError

    def get_fieldsets(self, request: Any, obj: Any = None) -> Any:
        attributes = [name for name in self.attribute_form(request, obj).base_fields if name.startswith(PREFIX)]
        fieldsets: list = [(None, {"fields": self.main_fields(obj)})]
        if attributes:
            fieldsets.append(
                ("Attributes", {"fields": attributes, "description": ATTRIBUTES_DESCRIPTION, "classes": ["attributes"]})
            )
        if obj is not None:
            fieldsets.append(("Record", {"fields": ["version", "created_at", "updated_at"]}))
        return fieldsets

    def get_form(self, request: Any, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        kwargs["form"] = self.attribute_form(request, obj)
        return super().get_form(request, obj, change, **kwargs)
