"""``manage.py create_api_key --name NAME --scopes a,b [--tenants slug,…] [--expires-days N] [--attributes k,…]``.

Prints the key once; only its hash is stored.
"""

from __future__ import annotations

from argparse import ArgumentTypeError
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from access import scopes as S
from access.keys import api_key_create
from core.errors import ValidationFailed
from tenants.models import Tenant


def positive_days(text: str) -> int:
    """``--expires-days``: a whole number of days, at least 1 (0 or less would mean never or already dead).

    argparse turns the refusal into a usage error: a ``CommandError`` under ``call_command``, exit code 2
    with the message on the command line.
    """
    try:
        days = int(text)
    except ValueError:
        raise ArgumentTypeError(f"must be a positive whole number of days, got {text!r}") from None
    if days < 1:
        raise ArgumentTypeError(
            f"must be a positive whole number of days, got {days}; leave it out for a key that never expires"
        )
    return days


class Command(BaseCommand):
    help = f"Create a service-account API key and print it once. Scopes: {', '.join(S.SCOPES)}."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--scopes", required=True, help="Comma-separated, e.g. pip:read,directory:read")
        parser.add_argument("--tenants", default="", help="Comma-separated tenant slugs; empty for every tenant.")
        parser.add_argument(
            "--attributes",
            default=None,
            help="Comma-separated attribute keys the key may read (* for every key; PII also needs pii:read). "
            "Omit for every key.",
        )
        parser.add_argument(
            "--expires-days",
            type=positive_days,
            default=None,
            help="Days until the key expires (at least 1); omit for never.",
        )

    def handle(
        self,
        *args: object,
        name: str,
        scopes: str,
        tenants: str,
        expires_days: int | None,
        attributes: str | None = None,
        **options: object,
    ) -> None:
        slugs = [slug.strip() for slug in tenants.split(",") if slug.strip()]
        found = list(Tenant.objects.filter(slug__in=slugs))
        missing = sorted(set(slugs) - {tenant.slug for tenant in found})
        if missing:
            raise CommandError(f"unknown tenants: {', '.join(missing)}")
        expires_at = timezone.now() + timedelta(days=expires_days) if expires_days is not None else None
        try:
            key, raw = api_key_create(
                name=name,
                scopes=[scope.strip() for scope in scopes.split(",") if scope.strip()],
                tenants=found,
                expires_at=expires_at,
                created_by="command:create_api_key",
                attributes=attributes,
            )
        except ValidationFailed as error:
            raise CommandError(error.detail) from None
        self.stderr.write(f"Created API key {key.name!r} (prefix {key.prefix}). It is shown once:")
        self.stdout.write(raw)
