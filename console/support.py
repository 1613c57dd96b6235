"""What the console's model admins share: writes through the services, domain errors as messages.

Every add, change, delete and bulk delete of a domain object in the console goes through the
same service functions as the API, so it is validated the same way and writes its event.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import AnonymousUser
from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils import timezone
from django.utils.html import format_html

from access.principals import console_principal
from core.actors import acting_as
from core.errors import DomainError, ValidationFailed

if TYPE_CHECKING:  # the mixins' bases for the type checker; at run time a mixin is a plain class
    ModelFormBase = forms.ModelForm
    ModelAdminBase = admin.ModelAdmin
else:
    ModelFormBase = ModelAdminBase = object


def short_id(value: Any) -> str:
    """A UUID as a person reads it in a list: its first 8 hex digits (the full id in the tooltip)."""
    text = str(value)
    return format_html('<span title="{}" class="short-id">{}</span>', text, text[:8]) if value else "—"


def with_tenant_slug(queryset: QuerySet, field: str = "tenant_id") -> QuerySet:
    """Annotate ``tenant_slug`` for tables that hold a tenant id without a foreign key (outbox, audit):
    one indexed lookup per row of the page."""
    from tenants.models import Tenant

    return queryset.annotate(tenant_slug=Subquery(Tenant.objects.filter(pk=OuterRef(field)).values("slug")[:1]))


def tenant_slug_or_id(obj: Any) -> str:
    """The tenant's slug; a purged tenant's short id."""
    slug = getattr(obj, "tenant_slug", None)
    return slug if slug else short_id(obj.tenant_id)


def age(moment: datetime | None, now: datetime | None = None) -> str:
    """``42s``, ``7m``, ``3h``, ``2d``: how long ago, in one short token."""
    if moment is None:
        return "—"
    seconds = max(0, int(((now or timezone.now()) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def add_field_errors(form: forms.BaseForm, error: ValidationFailed, default_field: str = "attributes") -> None:
    """Show each broken rule on its form field (``/attributes/level`` → the attributes field)."""
    for item in error.errors:
        name = item.pointer.strip("/").split("/", 1)[0]
        field = name if name in form.fields else default_field if default_field in form.fields else None
        form.add_error(field, f"{item.pointer} [{item.rule}] {item.detail}")


def administered_tenant_ids(request: HttpRequest) -> set | None:
    """The tenants a console user administers; ``None`` for a superuser (every tenant)."""
    user = request.user
    if user.is_superuser:
        return None
    assert not isinstance(user, AnonymousUser), "the console admits signed-in staff only"
    cached = getattr(request, "_iam_tenant_ids", None)
    if cached is None:
        from access.models import TenantAdministrator

        cached = set(
            TenantAdministrator.objects.filter(user=user, tenant__deleted_at__isnull=True).values_list(
                "tenant_id", flat=True
            )
        )
        request._iam_tenant_ids = cached  # type: ignore[attr-defined]  # a per-request memo of ours on Django's request
    return cached


class TenantScopedAdmin(admin.ModelAdmin):
    """A ModelAdmin that shows a tenant administrator only their tenants' objects.

    Changelists, forms, autocomplete, actions and URLs all go through ``get_queryset``; an object
    outside the user's tenants answers 404 (not Django's "does not exist" redirect, which would tell
    it apart from an object that does not exist at all).
    """

    tenant_lookup = "tenant_id"
    tenant_admin_can_add = True
    tenant_admin_can_delete = True

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        tenant_ids = administered_tenant_ids(request)
        if tenant_ids is None:
            return queryset
        return queryset.filter(**{f"{self.tenant_lookup}__in": tenant_ids})

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        tenant_ids = administered_tenant_ids(request)
        if db_field.name == "tenant" and tenant_ids is not None:
            from tenants.models import Tenant

            kwargs["queryset"] = Tenant.objects.filter(pk__in=tenant_ids)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_list_filter(self, request: HttpRequest) -> Any:
        """A tenant filter lists only the user's tenants (Django's default lists every tenant)."""
        filters = super().get_list_filter(request)
        if administered_tenant_ids(request) is None:
            return filters
        return [(name, admin.RelatedOnlyFieldListFilter) if name == "tenant" else name for name in filters]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        """The add form shows no id, version or timestamps: they do not exist before the service runs."""
        fields = super().get_fields(request, obj)
        if obj is None:
            return [name for name in fields if name not in ("id", "version", "created_at", "updated_at")]
        return fields

    def _tenant_admin(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff and administered_tenant_ids(request))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser or self._tenant_admin(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser or self._tenant_admin(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser or self._tenant_admin(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser or (self.tenant_admin_can_add and self._tenant_admin(request))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser or (self.tenant_admin_can_delete and self._tenant_admin(request))

    def _get_obj_does_not_exist_redirect(self, request: HttpRequest, opts: Any, object_id: str) -> HttpResponse:
        raise Http404("no such object")


class ReadOnlyAdminMixin(ModelAdminBase):
    """A ModelAdmin mixin: rows are shown, never added, changed or deleted here (superusers included);
    they are written by the services only. Put it before the admin base class."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ServiceFormMixin(ModelFormBase):
    """A model form whose last check is the write itself, through the service :class:`ServiceModelAdmin`
    hands it as ``service``: each rule runs once, in the service, instead of again in the form (Django's
    ``instance.full_clean`` and uniqueness queries are skipped). The service's ``ValidationFailed`` lands
    on the form's fields, any other refusal (a duplicate's ``Conflict``) on the form. The write runs in
    the transaction the admin opens around the view, so nothing stays written if the page fails later."""

    service: Callable[[dict[str, Any]], Any] | None = None
    saved: Any = None

    def _post_clean(self) -> None:
        if self.service is None:
            super()._post_clean()  # type: ignore[misc]  # ModelForm's hook that runs instance.full_clean; django-stubs omit it
            return
        if self.errors:
            return
        try:
            with transaction.atomic():  # a savepoint: a refusal midway (a cycle after the fields) writes nothing
                self.saved = self.service(dict(self.cleaned_data))
        except ValidationFailed as error:
            self.show_service_errors(error)
        except DomainError as error:
            self.add_error(None, f"{error.title}: {error.detail}")

    def show_service_errors(self, error: ValidationFailed) -> None:
        add_field_errors(self, error)


class ServiceModelAdmin(TenantScopedAdmin):
    """A ModelAdmin whose writes call services; subclasses implement the three hooks.

    The form calls ``service_create``/``service_update`` as its last check (:class:`ServiceFormMixin`),
    so the service's errors show on the form's fields; ``save_model`` takes what the form saved.
    """

    def service_create(self, request: HttpRequest, data: dict[str, Any]) -> Any:
        raise NotImplementedError

    def service_update(self, request: HttpRequest, obj: Any, data: dict[str, Any]) -> Any:
        raise NotImplementedError

    def service_delete(self, request: HttpRequest, obj: Any) -> None:
        raise NotImplementedError

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)

        def service(data: dict[str, Any]) -> Any:
            return self.service_update(request, obj, data) if obj is not None else self.service_create(request, data)

        bases = (form,) if issubclass(form, ServiceFormMixin) else (ServiceFormMixin, form)
        return type(form.__name__, bases, {"service": staticmethod(service)})

    def save_model(self, request: HttpRequest, obj: Any, form: forms.ModelForm, change: bool) -> None:
        assert isinstance(form, ServiceFormMixin), "get_form() mixes it in"
        saved = form.saved  # written by the form's last check
        obj.pk = saved.pk
        obj.__dict__.update({k: v for k, v in saved.__dict__.items() if not k.startswith("_")})

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        """Domain objects have no many-to-many fields or inlines: nothing else to save."""

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.service_delete(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for obj in queryset:
            self.service_delete(request, obj)

    def _refuse(self, request: HttpRequest, error: DomainError) -> HttpResponse:
        self.message_user(request, f"{error.title}: {error.detail}", level=messages.ERROR)
        return HttpResponseRedirect(request.get_full_path())

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            with acting_as(console_principal(request.user)):
                return super().changeform_view(request, *args, **kwargs)
        except DomainError as error:  # a refusal from outside the form (e.g. an action)
            return self._refuse(request, error)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        try:
            with acting_as(console_principal(request.user)):
                return super().delete_view(request, object_id, extra_context)
        except DomainError as error:
            self.message_user(request, f"{error.title}: {error.detail}", level=messages.ERROR)
            return HttpResponseRedirect("../change/")

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        try:
            with acting_as(console_principal(request.user)):
                return super().changelist_view(request, extra_context)
        except DomainError as error:
            return self._refuse(request, error)
