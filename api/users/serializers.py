from __future__ import annotations

from rest_framework import serializers

from core.api.serializers import AttributesField, StrictCharField, StrictInputSerializer
from users.models import User


class UserOutputSerializer(serializers.ModelSerializer):
    attributes = AttributesField(help_text="Typed attribute values, key → value.")
    email = serializers.CharField(help_text="An email address, or empty.")

    class Meta:
        model = User
        fields = [
            "id",
            "external_id",
            "email",
            "display_name",
            "status",
            "attributes",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class UserInputSerializer(StrictInputSerializer):
    external_id = StrictCharField(
        max_length=255, trim_whitespace=False, help_text="1-255 printable characters, unique in the tenant."
    )
    email = serializers.EmailField(required=False, allow_blank=True)
    display_name = StrictCharField(max_length=200, required=False, allow_blank=True)
    status = serializers.ChoiceField(choices=User.Status.choices, required=False)
    attributes = AttributesField(required=False, help_text="PUT replaces the map; PATCH merges, null removes a key.")
