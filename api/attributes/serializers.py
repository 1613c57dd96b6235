from __future__ import annotations

from rest_framework import serializers

from attributes.models import AttributeDefinition
from core.api.serializers import StrictCharField, StrictInputSerializer

FIELDS = [
    "id", "key", "target", "type", "required", "allowed_values", "pattern", "min_value", "max_value",
    "max_length", "max_items", "default", "merge", "description", "pii", "searchable", "version", "created_at", "updated_at",
]  # fmt: skip


class DefinitionOutputSerializer(serializers.ModelSerializer):
    allowed_values = serializers.ListField(child=serializers.CharField(), allow_null=True)
    default = serializers.JSONField(allow_null=True)

    class Meta:
        model = AttributeDefinition
        fields = FIELDS
        read_only_fields = FIELDS


class DefinitionInputSerializer(StrictInputSerializer):
    key = StrictCharField(max_length=64)
    target = serializers.ChoiceField(choices=AttributeDefinition.Target.choices, required=False)
    type = serializers.ChoiceField(choices=AttributeDefinition.Type.choices)
    required = serializers.BooleanField(required=False)  # type: ignore[assignment]  # djangorestframework-stubs see Field.required (bool); DRF's metaclass takes the declared field out of the class
    allowed_values = serializers.ListField(
        child=StrictCharField(max_length=255, trim_whitespace=False),
        required=False,
        allow_null=True,
        max_length=1000,
    )
    pattern = StrictCharField(max_length=500, required=False, allow_blank=True, trim_whitespace=False)
    min_value = serializers.FloatField(required=False, allow_null=True)
    max_value = serializers.FloatField(required=False, allow_null=True)
    max_length = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=100_000)
    max_items = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=10_000)
    default = serializers.JSONField(
        required=False, allow_null=True, help_text="A user's value when no source gives one."
    )
    merge = serializers.ChoiceField(choices=["replace", "union"], required=False)
    description = StrictCharField(required=False, allow_blank=True, max_length=2000)
    pii = serializers.BooleanField(required=False)
    searchable = serializers.BooleanField(required=False)
