"""Console pages of groups (typed attribute fields, a member picker) and the user page's groups panel.

Adding a group asks for its tenant and fields; the typed attribute fields (the tenant's group
definitions) and the member pickers appear on its page once it exists. The pickers are the admin's
autocomplete over users and groups; every change goes through ``groups.services`` in the admin's
transaction, so a cycle or a too-deep nesting refuses the whole save with the service's message.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import AutocompleteSelectMultiple
from django.db.models import Model
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from attributes.selectors import definitions_for
from console.attribute_fields import (
    AttributeFieldsetsAdmin,
    AttributeFormMixin,
    attribute_values,
    with_attribute_fields,
)
from console.support import ModelAdminBase, ServiceFormMixin, ServiceModelAdmin
from groups import services
from groups.models import Group, Membership
from groups.selectors import direct_groups_of_user
from resolver.selectors import subject_resolve
from users.models import User

GROUP_FIELDS = ("key", "display_name", "external_id", "priority")
MEMBER_FIELDS = ("add_users", "add_groups", "remove_users", "remove_groups")
MEMBERS_SHOWN = 50


class GroupForm(AttributeFormMixin, ServiceFormMixin, forms.ModelForm):
    class Meta:
        model = Group
        fields = ["tenant", *GROUP_FIELDS]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "external_id" in self.fields:
            external_id = self.fields["external_id"]
            assert isinstance(external_id, forms.CharField), "the model's CharField"
            external_id.strip = False
            external_id.empty_value = None
        tenant_id = None if self.instance._state.adding else self.instance.tenant_id
        for name in MEMBER_FIELDS:
            if name in self.fields:
                field = self.fields[name]
                assert isinstance(field, forms.ModelMultipleChoiceField) and field.queryset is not None, "the pickers"
                field.queryset = field.queryset.filter(tenant_id=tenant_id)  # only the group's tenant

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None, "ModelForm.clean returns cleaned_data"
        if not self.instance._state.adding:
            cleaned["attributes"] = attribute_values(self)  # checked by the service, with the other fields
        return cleaned


def _picker(label: str, field: str, model: type[Model], admin_site: admin.AdminSite) -> forms.ModelMultipleChoiceField:
    return forms.ModelMultipleChoiceField(
        queryset=model._default_manager.all(),
        required=False,
        label=label,
        widget=AutocompleteSelectMultiple(Membership._meta.get_field(field), admin_site),
    )


@admin.register(Group)
class GroupAdmin(AttributeFieldsetsAdmin, ServiceModelAdmin):
    form = GroupForm
    list_display = ["key", "tenant", "display_name", "priority", "external_id", "version", "updated_at"]
    list_filter = ["tenant"]
    list_select_related = ["tenant"]
    search_fields = ["key", "display_name", "external_id", "=id"]
    ordering = ["tenant_id", "key"]
    autocomplete_fields = ["tenant"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        record = ["id", "version", "created_at", "updated_at"]
        return record if obj is None else ["tenant", "members", *record]

    def main_fields(self, obj: Group | None) -> list[str]:
        if obj is None:
            return ["tenant", *GROUP_FIELDS]
        return ["id", "tenant", *GROUP_FIELDS, "members", *MEMBER_FIELDS]

    def attribute_form(self, request: HttpRequest, obj: Group | None) -> type[forms.ModelForm]:
        """``GroupForm`` with the typed fields of the tenant's group definitions and the member pickers."""
        cached = getattr(request, "_iam_group_form", None)
        key = obj.pk if obj is not None else None
        if cached is not None and cached[0] == key:
            return cached[1]
        if obj is None:
            form = with_attribute_fields(GroupForm, [], {})
        else:
            definitions = definitions_for(tenant_id=obj.tenant_id, target="group")
            form = with_attribute_fields(GroupForm, definitions, obj.attributes)
            pickers = {
                "add_users": _picker("Add users", "user", User, self.admin_site),
                "add_groups": _picker("Add groups", "child", Group, self.admin_site),
                "remove_users": _picker("Remove users", "user", User, self.admin_site),
                "remove_groups": _picker("Remove groups", "child", Group, self.admin_site),
            }
            form = type(form.__name__, (form,), pickers)
        request._iam_group_form = (key, form)  # type: ignore[attr-defined]  # a per-request memo of ours on Django's request
        return form

    @admin.display(description="members")
    def members(self, obj: Group) -> str:
        rows = list(Membership.objects.filter(group=obj).select_related("user", "child")[: MEMBERS_SHOWN + 1])
        if not rows:
            return "—"
        items = format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            (
                (reverse("admin:users_user_change", args=[m.user_id]), m.user.external_id)
                if m.user is not None
                else (
                    reverse("admin:groups_group_change", args=[m.child_id]),
                    f"group {m.child.key if m.child else ''}",
                )
                for m in rows[:MEMBERS_SHOWN]
            ),
        )
        more = format_html(" and more (the API lists them all)") if len(rows) > MEMBERS_SHOWN else ""
        return format_html("{}{}", items, more)

    def service_create(self, request: HttpRequest, data: dict[str, Any]) -> Group:
        fields = {name: data[name] for name in GROUP_FIELDS if name in data}
        return services.group_create(tenant=data["tenant"], **fields)

    def service_update(self, request: HttpRequest, obj: Group, data: dict[str, Any]) -> Group:
        fields = {name: data[name] for name in GROUP_FIELDS if name in data}
        added = [str(m.pk) for m in (*data.get("add_users", ()), *data.get("add_groups", ()))]
        removed = [str(m.pk) for m in (*data.get("remove_users", ()), *data.get("remove_groups", ()))]
        group = services.group_update(group=obj, attributes=data.get("attributes"), **fields)
        if added:
            group = services.group_members_add(group=group, ids=added).group
        if removed:
            group = services.group_members_remove(group=group, ids=removed).group
        return group

    def service_delete(self, request: HttpRequest, obj: Group) -> None:
        services.group_delete(group=obj)


def _sources(sources: list[dict[str, Any]]) -> str:
    return ", ".join(
        f"{s['source']} (via {' > '.join(s['path'])})" if len(s.get("path", ())) > 1 else s["source"] for s in sources
    )


#: Read-only fields of the user page's panel (the UserAdmin lists them among its read-only fields).
USER_PANEL_FIELDS = ("direct_groups", "effective_attributes")


class UserGroupsAdmin(ModelAdminBase):
    """A UserAdmin mixin: the user page lists the user's groups and its effective attributes with their
    sources (what the PIP answers with ``?explain=true``)."""

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        panel = ("Groups and effective attributes", {"fields": list(USER_PANEL_FIELDS)})
        return [*fieldsets, panel]

    @admin.display(description="groups")
    def direct_groups(self, obj: User) -> str:
        groups = direct_groups_of_user(obj.pk)
        if not groups:
            return "—"
        links = ((reverse("admin:groups_group_change", args=[g["id"]]), g["key"]) for g in groups)
        return format_html_join(", ", '<a href="{}">{}</a>', links)

    @admin.display(description="effective attributes")
    def effective_attributes(self, obj: User) -> str:
        resolved = subject_resolve(tenant_ref=str(obj.tenant_id), external_id=obj.external_id, explain=True)
        if resolved is None:
            return "—"
        body = json.loads(resolved.native)
        rows = (
            (key, json.dumps(value, ensure_ascii=False), _sources(body["sources"].get(key, [])))
            for key, value in sorted(body["attributes"].items())
        )
        table = format_html_join("", "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>", rows)
        return format_html(
            '<table class="effective-attributes"><tr><th>key</th><th>value</th><th>source</th></tr>{}</table>', table
        )
