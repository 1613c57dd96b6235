from __future__ import annotations

from rest_framework import serializers

from core.api.serializers import AttributesField, StrictCharField, StrictInputSerializer
from tenants.models import Tenant


class TenantOutputSerializer(serializers.ModelSerializer):
    attributes = AttributesField(help_text="Typed attribute values of the tenant, key → value.")

    class Meta:
        model = Tenant
        fields = [
            "id",
            "slug",
            "name",
            "status",
            "events_include_pii",
            "attributes",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class TenantInputSerializer(StrictInputSerializer):
    slug = StrictCharField(max_length=63, help_text="DNS label, unique, never UUID-shaped.")
    name = StrictCharField(max_length=200)
    status = serializers.ChoiceField(choices=Tenant.Status.choices, required=False)
    events_include_pii = serializers.BooleanField(
        required=False, help_text='Events carry PII-flagged values (default false: {"redacted": true}).'
    )
    attributes = AttributesField(required=False, help_text="PUT replaces the map; PATCH merges, null removes a key.")
