"""``manage.py generate_demo_data --tenants N --users M --attributes K``: load-test data through the services.

Every user is created through the bulk upsert service (validated, with its event and audit
record), in batches, with a progress bar.
"""

from __future__ import annotations

import random

from django.core.management.base import BaseCommand, CommandParser
from tqdm import tqdm

from attributes.services import definition_create
from devtools.demo import generated_definitions, generated_value
from tenants.models import Tenant
from tenants.services import tenant_create
from users.services import UpsertReport, users_upsert


class Command(BaseCommand):
    help = "Generate tenants, attribute definitions and users with random typed attribute values."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenants", type=int, default=1)
        parser.add_argument("--users", type=int, default=1000, help="Users per tenant.")
        parser.add_argument("--attributes", type=int, default=10, help="Attributes per user.")
        parser.add_argument("--prefix", default="load", help="Tenant slugs are <prefix>-<n>.")
        parser.add_argument("--batch", type=int, default=1000)
        parser.add_argument("--seed", type=int, default=1)

    def handle(self, *args: object, **options: int | str) -> None:
        rng = random.Random(options["seed"])
        definitions = generated_definitions(int(options["attributes"]))
        total = UpsertReport()
        for number in range(int(options["tenants"])):
            slug = f"{options['prefix']}-{number}"
            tenant = Tenant.objects.filter(slug=slug).first() or tenant_create(slug=slug, name=f"Load tenant {number}")
            existing = set(tenant.attribute_definitions.values_list("key", flat=True))
            for definition in definitions:
                if definition["key"] not in existing:
                    definition_create(tenant=tenant, **definition)
            users = int(options["users"])
            batch = int(options["batch"])
            with tqdm(total=users, desc=slug, unit="users", disable=not self.stdout.isatty()) as progress:
                for start in range(0, users, batch):
                    rows = [
                        (
                            index,
                            {
                                "external_id": f"user-{index:07d}",
                                "email": f"user-{index}@{slug}.example",
                                "display_name": f"User {index}",
                                "attributes": {d["key"]: generated_value(d, rng) for d in definitions},
                            },
                        )
                        for index in range(start, min(start + batch, users))
                    ]
                    total.add(users_upsert(tenant=tenant, rows=rows))
                    progress.update(len(rows))
        self.stdout.write(
            f"created {total.created}, updated {total.updated}, unchanged {total.unchanged}, invalid {total.invalid}"
        )
