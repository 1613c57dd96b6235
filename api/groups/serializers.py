from __future__ import annotations

from rest_framework import serializers

from core.api.serializers import AttributesField, StrictCharField, StrictInputSerializer
from groups.models import Group


class GroupOutputSerializer(serializers.ModelSerializer):
    attributes = AttributesField(help_text="Typed attribute values, key → value; the members inherit them.")

    class Meta:
        model = Group
        fields = [
            "id", "key", "display_name", "external_id", "priority", "attributes", "version", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields


class GroupInputSerializer(StrictInputSerializer):
    key = StrictCharField(max_length=64, help_text="A slug (a-z, 0-9, '-'), unique in the tenant.")
    display_name = StrictCharField(max_length=200, required=False, allow_blank=True, trim_whitespace=False)
    external_id = StrictCharField(max_length=255, required=False, allow_null=True, trim_whitespace=False)
    priority = serializers.IntegerField(required=False, min_value=-(2**31), max_value=2**31 - 1)
    attributes = AttributesField(required=False, help_text="PUT replaces the map; PATCH merges, null removes a key.")

    def validate_priority(self, value: object) -> object:
        if isinstance(self.initial_data.get("priority"), bool | str | float):
            raise serializers.ValidationError("must be an integer", code="type")
        return value


class MemberIdsSerializer(serializers.Serializer):  # the schema of the body; the service checks it
    ids = serializers.ListField(
        child=serializers.UUIDField(), min_length=1, max_length=1000, help_text="User and/or group ids of the tenant."
    )


class MemberSerializer(serializers.Serializer):  # the schema of a member row
    type = serializers.CharField(help_text="user or group")  # not a ChoiceField: its enum name collides
    id = serializers.UUIDField()
    external_id = serializers.CharField(required=False, help_text="A user's external id.")
    key = serializers.CharField(required=False, help_text="A group's key.")


class MembersChangeSerializer(serializers.Serializer):  # the schema of a bulk change's answer
    users = serializers.ListField(child=serializers.UUIDField(), help_text="User ids added (or removed).")
    groups = serializers.ListField(child=serializers.UUIDField(), help_text="Group ids added (or removed).")
    version = serializers.IntegerField(help_text="The group's version after the change.")
