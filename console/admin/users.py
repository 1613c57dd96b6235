from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from attributes.models import AttributeDefinition
from attributes.selectors import definitions_for
from console.admin.groups import USER_PANEL_FIELDS, UserGroupsAdmin
from console.attribute_fields import (
    AttributeFieldsetsAdmin,
    AttributeFormMixin,
    attribute_values,
    with_attribute_fields,
)
from console.support import (
    ServiceFormMixin,
    ServiceModelAdmin,
    administered_tenant_ids,
)
from console.user_search import PLAIN_HELP, expression_results, search_help
from tenants.models import Tenant
from users import services
from users.models import User


class ChosenTenantWidget(forms.Widget):
    """Step two of adding a user: the tenant chosen in step one, shown (no picker, no icons) and posted."""

    def __init__(self, tenant: Tenant, change_url: str) -> None:
        super().__init__()
        self.tenant, self.change_url = tenant, change_url

    def render(self, name: str, value: Any, attrs: Any = None, renderer: Any = None) -> SafeString:
        return format_html(
            '<input type="hidden" name="{}" value="{}" id="id_{}"><strong id="chosen-tenant">{}</strong>'
            ' &nbsp;<a href="{}">choose another tenant</a>',
            name,
            self.tenant.pk,
            name,
            self.tenant.slug,
            self.change_url,
        )


class UserForm(AttributeFormMixin, ServiceFormMixin, forms.ModelForm):
    """The user's fields, then one typed field per attribute definition of the user's tenant."""

    chosen_tenant: Tenant | None = None

    class Meta:
        model = User
        fields = ["tenant", "external_id", "email", "display_name", "status"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        external_id = self.fields["external_id"]
        assert isinstance(external_id, forms.CharField), "the model's CharField"
        external_id.strip = False
        if "tenant" in self.fields and self.chosen_tenant is not None:
            self.fields["tenant"].widget = ChosenTenantWidget(self.chosen_tenant, "?")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None, "ModelForm.clean returns cleaned_data"
        cleaned["attributes"] = attribute_values(self)  # checked by the service, with the other fields
        return cleaned


class ChooseTenantForm(forms.Form):
    """Step one of adding a user: the tenant, picked with select2 over the admin's autocomplete view."""

    def __init__(self, *, tenants: Any, admin_site: admin.AdminSite) -> None:
        super().__init__()
        self.fields["tenant"] = forms.ModelChoiceField(
            queryset=tenants,
            widget=AutocompleteSelect(User._meta.get_field("tenant"), admin_site),
            help_text="The tenant of the new user.",
        )


USER_FIELDS = ("external_id", "email", "display_name", "status")


@admin.register(User)
class UserAdmin(UserGroupsAdmin, AttributeFieldsetsAdmin, ServiceModelAdmin):
    """Adding a user takes two steps: choose the tenant, then the form with that tenant's attribute fields."""

    form = UserForm
    list_display = ["external_id", "tenant", "email", "display_name", "status", "version", "updated_at"]
    list_filter = ["status", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["external_id", "email", "display_name", "=id"]
    search_help_text = PLAIN_HELP
    ordering = ["-created_at"]
    show_full_result_count = False

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> tuple[Any, bool]:
        """An attribute expression (docs/search.md) when the term reads as one; else the text search."""
        found = expression_results(request, queryset, search_term)
        if found is not None:
            return found, False
        return super().get_search_results(request, queryset, search_term)

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        changelist.search_help_text = search_help(request)
        return changelist

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        record = ["id", "version", "created_at", "updated_at"]
        return record if obj is None else ["tenant", *record, *USER_PANEL_FIELDS]  # a user never moves tenant

    def chosen_tenant(self, request: HttpRequest) -> Tenant | None:
        """The tenant an add form is for (``?tenant=`` in step two, the posted field on save), if visible."""
        raw = (request.POST if request.method == "POST" else request.GET).get("tenant", "")
        try:
            tenant_id = uuid.UUID(str(raw))
        except ValueError:
            return None
        tenant_ids = administered_tenant_ids(request)
        if tenant_ids is not None and tenant_id not in tenant_ids:
            return None
        return Tenant.objects.filter(pk=tenant_id, deleted_at__isnull=True).first()

    def attribute_form(self, request: HttpRequest, obj: User | None) -> type[forms.ModelForm]:
        """``UserForm`` with the typed fields of the tenant's user attribute definitions (once per request)."""
        tenant = obj.tenant if obj is not None else self.chosen_tenant(request)
        cache_key = (obj.pk if obj is not None else None, tenant.pk if tenant is not None else None)
        cached = getattr(request, "_iam_user_form", None)
        if cached is not None and cached[0] == cache_key:
            return cached[1]
        definitions = (
            definitions_for(tenant_id=tenant.pk, target=AttributeDefinition.Target.USER) if tenant is not None else []
        )
        form = with_attribute_fields(UserForm, definitions, obj.attributes if obj is not None else {})
        form.chosen_tenant = tenant if obj is None else None
        request._iam_user_form = (cache_key, form)  # type: ignore[attr-defined]  # a per-request memo of ours on Django's request
        return form

    def main_fields(self, obj: User | None) -> list[str]:
        return ["tenant", *USER_FIELDS] if obj is None else ["id", "tenant", *USER_FIELDS]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        if request.method == "POST" or self.chosen_tenant(request) is not None:
            return super().add_view(request, form_url, extra_context)
        if not self.has_add_permission(request):
            raise PermissionDenied
        return self.choose_tenant_view(request)

    def choose_tenant_view(self, request: HttpRequest) -> HttpResponse:
        """Step one of adding a user: pick the tenant (select2 over the admin's autocomplete view)."""
        tenant_ids = administered_tenant_ids(request)
        tenants = Tenant.objects.filter(deleted_at__isnull=True)
        form = ChooseTenantForm(
            tenants=tenants if tenant_ids is None else tenants.filter(pk__in=tenant_ids), admin_site=self.admin_site
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Add {self.opts.verbose_name}: choose the tenant",
            "form": form,
            "media": self.media + form.media,
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/users/user/choose_tenant.html", context)

    def response_add(self, request: HttpRequest, obj: User, post_url_continue: Any = None) -> HttpResponse:
        return self._add_another_in_the_same_tenant(request, obj, super().response_add(request, obj, post_url_continue))

    def response_change(self, request: HttpRequest, obj: User) -> HttpResponse:
        return self._add_another_in_the_same_tenant(request, obj, super().response_change(request, obj))

    def _add_another_in_the_same_tenant(self, request: HttpRequest, obj: User, response: HttpResponse) -> HttpResponse:
        """ "Save and add another" goes to step two for the same tenant, not back to choosing one."""
        if "_addanother" in request.POST and response.status_code == 302:
            response["Location"] = f"{reverse('admin:users_user_add')}?tenant={obj.tenant_id}"
        return response

    def service_create(self, request: HttpRequest, data: dict[str, Any]) -> User:
        fields = {name: data[name] for name in USER_FIELDS if name in data}
        return services.user_create(tenant=data["tenant"], attributes=data.get("attributes", {}), **fields)

    def service_update(self, request: HttpRequest, obj: User, data: dict[str, Any]) -> User:
        fields = {name: data[name] for name in USER_FIELDS if name in data}
        return services.user_update(user=obj, attributes=data.get("attributes"), **fields)

    def service_delete(self, request: HttpRequest, obj: User) -> None:
        services.user_delete(user=obj)
