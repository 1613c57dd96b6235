"""What the console's model admins share: writes through the services, domain errors as messages.

Every add, change, delete and bulk delete of a domain object in the console goes through the
same service functions as the API, so it is validated the same way and writes its event.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from iam_project.errors import DomainError, ValidationFailed


def add_field_errors(form: forms.Form, error: ValidationFailed, default_field: str = "attributes") -> None:
    """Show each broken rule on its form field (``/attributes/level`` → the attributes field)."""
    for item in error.errors:
        name = item.pointer.strip("/").split("/", 1)[0]
        field = name if name in form.fields else default_field if default_field in form.fields else None
        form.add_error(field, f"{item.pointer} [{item.rule}] {item.detail}")


class ServiceModelAdmin(admin.ModelAdmin):
    """A ModelAdmin whose writes call services; subclasses implement the three hooks."""

    def service_create(self, request: HttpRequest, data: dict[str, Any]) -> Any:
        raise NotImplementedError

    def service_update(self, request: HttpRequest, obj: Any, data: dict[str, Any]) -> Any:
        raise NotImplementedError

    def service_delete(self, request: HttpRequest, obj: Any) -> None:
        raise NotImplementedError

    def save_model(self, request: HttpRequest, obj: Any, form: forms.ModelForm, change: bool) -> None:
        data = dict(form.cleaned_data)
        saved = self.service_update(request, obj, data) if change else self.service_create(request, data)
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
            return super().changeform_view(request, *args, **kwargs)
        except DomainError as error:  # a race the form's checks could not see (e.g. a duplicate)
            return self._refuse(request, error)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except DomainError as error:
            self.message_user(request, f"{error.title}: {error.detail}", level=messages.ERROR)
            return HttpResponseRedirect("../change/")

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        try:
            return super().changelist_view(request, extra_context)
        except DomainError as error:
            return self._refuse(request, error)
