"""Shared by suspend_tenant, resume_tenant, delete_tenant, restore_tenant and purge_tenant."""

from __future__ import annotations

from collections.abc import Callable

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import DomainError
from tenants.models import Tenant
from tenants.selectors import tenant_get


class LifecycleCommand(BaseCommand):
    verb = ""
    include_deleted = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant", help="Tenant slug or id.")

    def step(self, tenant: Tenant, **options: object) -> str:
        raise NotImplementedError

    def handle(self, *args: object, tenant: str, **options: object) -> None:
        queryset = Tenant.objects.all() if self.include_deleted else Tenant.objects.filter(deleted_at__isnull=True)
        try:
            found = tenant_get(ref=tenant, queryset=queryset)
            self.stdout.write(self.step(found, **options))
        except DomainError as error:
            raise CommandError(error.detail) from None


def command(verb: str, step: Callable[..., str], *, include_deleted: bool = False, help: str = "") -> type[BaseCommand]:
    return type(
        "Command",
        (LifecycleCommand,),
        {"verb": verb, "include_deleted": include_deleted, "help": help, "step": lambda self, t, **o: step(t, **o)},
    )
