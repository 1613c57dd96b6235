from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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


#: What ``QuerySet.values`` fetches for :func:`user_rows`: the output fields, in the serializer's order.
USER_OUTPUT_FIELDS = tuple(UserOutputSerializer.Meta.fields)


def user_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``UserOutputSerializer(users, many=True).data`` from ``.values(*USER_OUTPUT_FIELDS)`` rows, for lists.

    The serializer builds a model instance per row and walks its fields through ``get_attribute``;
    for a page of 50 that is most of the list's time in Python (docs/performance.md, "Attribute
    search"). The field representations are the serializer's own (``UUIDField``: ``str``,
    ``CharField``: ``str``, ``IntegerField``: ``int``, ``AttributesField``: as stored, and DRF's
    ``DateTimeField``, its time zone read once per page); ``None`` stays ``None`` as in
    ``Serializer.to_representation``. Keys other than the output fields (an ordering annotation)
    are left out. ``tests/test_user_list_lean.py`` proves the rendered bytes equal.
    """
    stamp = serializers.DateTimeField()
    stamp.timezone = stamp.default_timezone()  # type: ignore[assignment]  # read once per page, as enforce_timezone reads it; stubs say tzinfo, DRF allows None (naive)
    moment = stamp.to_representation
    return [
        {
            "id": None if (value := row["id"]) is None else str(value),
            "external_id": None if (value := row["external_id"]) is None else str(value),
            "email": None if (value := row["email"]) is None else str(value),
            "display_name": None if (value := row["display_name"]) is None else str(value),
            "status": None if (value := row["status"]) is None else str(value),
            "attributes": row["attributes"],
            "version": None if (value := row["version"]) is None else int(value),
            "created_at": None if (value := row["created_at"]) is None else moment(value),
            "updated_at": None if (value := row["updated_at"]) is None else moment(value),
        }
        for row in rows
    ]


class UserInputSerializer(StrictInputSerializer):
    external_id = StrictCharField(
        max_length=255, trim_whitespace=False, help_text="1-255 printable characters, unique in the tenant."
    )
    email = serializers.EmailField(required=False, allow_blank=True)
    display_name = StrictCharField(max_length=200, required=False, allow_blank=True)
    status = serializers.ChoiceField(choices=User.Status.choices, required=False)
    attributes = AttributesField(required=False, help_text="PUT replaces the map; PATCH merges, null removes a key.")
