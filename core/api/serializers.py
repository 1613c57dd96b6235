"""Serializer bases shared by the apps' APIs."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


class StrictInputSerializer(serializers.Serializer[Any]):
    """An input serializer that refuses unknown and read-only fields (no mass assignment)."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                {"non_field_errors": [serializers.ErrorDetail("the body must be a JSON object", code="type")]}
            )
        writable = {name for name, field in self.fields.items() if not field.read_only}
        unknown = sorted(set(data) - writable)
        if unknown:
            raise serializers.ValidationError(
                {
                    name: [serializers.ErrorDetail("unknown or read-only field", code="unknown_field")]
                    for name in unknown
                }
            )
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A string field that refuses numbers and booleans, which DRF's ``CharField`` turns into text
    although the schema says ``string``."""

    default_error_messages = {"type": "must be a string"}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("type")
        return super().to_internal_value(data)


@extend_schema_field({"type": "object", "additionalProperties": True})
class AttributesField(serializers.Field[dict[str, Any], Any, Any, Any]):
    """A JSON object of attribute values; typed validation happens in the service layer."""

    default_error_messages = {"type": "attributes must be a JSON object"}

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.fail("type")
        return data

    def to_representation(self, value: Any) -> Any:
        return value
