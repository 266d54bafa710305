"""Create the provider's own (public) tenant and its domains, and optionally the first operator. Idempotent."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from core.accounts.choices import UserRoleChoices
from core.accounts.models import User
from tenants.models import Domain, Tenant


class Command(BaseCommand):
    help = "Create the public tenant (the provider's operators' domain) and, if asked, an operator admin."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--domain", action="append", dest="domains", help="public host names; repeatable")
        parser.add_argument("--operator", help="username of an operator admin to create if missing")
        parser.add_argument("--operator-password", help="its password (only used when the user is created)")

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        tenant, created = Tenant.objects.get_or_create(
            schema_name="public", defaults={"name": "Provider", "slug": "provider"}
        )
        domains = options["domains"] or [settings.SLUICE_PUBLIC_DOMAIN, "127.0.0.1"]
        for index, domain in enumerate(domains):
            Domain.objects.get_or_create(domain=domain, defaults={"tenant": tenant, "is_primary": index == 0})
        self.stdout.write(f"public tenant {'created' if created else 'present'}; domains: {', '.join(domains)}")
        username = options["operator"]
        if username and not User.objects.filter(username=username).exists():
            User.objects.create_user(
                username=username,
                password=options["operator_password"],
                role=UserRoleChoices.ADMIN,
                is_staff=True,
                is_superuser=True,
            )
            self.stdout.write(f"operator {username} created")
