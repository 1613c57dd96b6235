from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from attributes import services
from attributes.models import AttributeDefinition, SearchIndex
from console.support import ServiceModelAdmin, add_field_errors
from core.errors import ValidationFailed

EDITABLE = [
    "required",
    "allowed_values",
    "pattern",
    "min_value",
    "max_value",
    "max_length",
    "max_items",
    "description",
    "pii",
    "searchable",
]


class AttributeDefinitionForm(forms.ModelForm):
    allowed_values = forms.JSONField(required=False, help_text='A JSON list of strings, e.g. ["eng", "sales"].')

    class Meta:
        model = AttributeDefinition
        fields = ["tenant", "key", "target", "type", *EDITABLE]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.instance._state.adding:
            for name in ("tenant", "key", "target", "type"):
                self.fields[name].disabled = True

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None, "ModelForm.clean returns cleaned_data"
        candidate = AttributeDefinition(**{name: cleaned.get(name) for name in ("key", "target", "type")})
        for name in EDITABLE:
            if name in cleaned:
                setattr(
                    candidate,
                    name,
                    cleaned[name] if cleaned[name] is not None or name not in ("pattern", "description") else "",
                )
        try:
            services.definition_check(candidate)
        except ValidationFailed as error:
            add_field_errors(self, error, default_field="key")
        return cleaned


@admin.register(AttributeDefinition)
class AttributeDefinitionAdmin(ServiceModelAdmin):
    form = AttributeDefinitionForm
    list_display = ["key", "tenant", "target", "type", "required", "pii", "searchable", "search_index", "version"]
    list_filter = ["target", "type", "required", "pii", "searchable", "tenant"]
    list_select_related = ["tenant", "search_index"]
    search_fields = ["key", "description"]
    autocomplete_fields = ["tenant"]
    readonly_fields = ["id", "search_index", "version", "created_at", "updated_at"]

    @admin.display(description="search index")
    def search_index(self, obj: AttributeDefinition) -> str:
        """Building, ready or failed (with the reason): the worker builds it after the flag is set."""
        index = getattr(obj, "search_index", None)  # the reverse one-to-one, selected with the list
        if index is None:
            return "building" if obj.searchable else "—"
        if index.state == SearchIndex.State.FAILED:
            return f"failed: {index.error[:200]}"
        return index.get_state_display()

    def service_create(self, request: HttpRequest, data: dict[str, Any]) -> AttributeDefinition:
        return services.definition_create(**data)

    def service_update(
        self, request: HttpRequest, obj: AttributeDefinition, data: dict[str, Any]
    ) -> AttributeDefinition:
        fields = {name: data[name] for name in EDITABLE if name in data}
        return services.definition_update(definition=obj, **fields)

    def service_delete(self, request: HttpRequest, obj: AttributeDefinition) -> None:
        services.definition_delete(definition=obj)
