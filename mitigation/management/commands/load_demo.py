"""Load the demo: tenants acme and globex with known demo passwords, the demo network, a never-block entry."""

from __future__ import annotations

from typing import Any, TypedDict

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django_tenants.utils import schema_context

from core.accounts.models import User
from core.actors import Actor
from mitigation.models import NeverBlockPrefix
from tenants.models import Tenant
from tenants.services import ProfileInput, onboard_tenant


class DemoTenant(TypedDict):
    slug: str
    name: str
    prefixes: list[str]
    profile: ProfileInput


DEMO_TENANTS: list[DemoTenant] = [
    {"slug": "acme", "name": "Acme Corp", "prefixes": ["203.0.113.0/24", "2001:db8:100::/48"],
     "profile": ProfileInput(latency_threshold_ms=40, application_profile="web", hold_down_minutes=1)},
    {"slug": "globex", "name": "Globex", "prefixes": ["198.51.100.0/25", "2001:db8:200::/48"],
     "profile": ProfileInput(latency_threshold_ms=25, application_profile="gaming", automation_mode="manual",
                             hold_down_minutes=1)},
]


class Command(BaseCommand):
    help = "Onboard the demo tenants (idempotent) and load netsim/demo-network.yaml."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--network", default="netsim/demo-network.yaml")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = Actor("system", "load_demo")
        for spec in DEMO_TENANTS:
            slug = spec["slug"]
            if not Tenant.objects.filter(slug=slug).exists():
                onboard_tenant(slug=slug, name=spec["name"], domain=f"{slug}.localhost",
                               admin_email=f"admin@{slug}.example", prefixes=spec["prefixes"],
                               profile=spec["profile"], verify=True, acting_user=actor)
                self.stdout.write(f"onboarded {slug}")
            with schema_context(slug):
                admin = User.objects.get(username="admin")
                admin.set_password(f"{slug}-demo-admin")
                admin.save(update_fields=["password"])
        NeverBlockPrefix.objects.get_or_create(prefix="203.0.113.53/32", defaults={"reason": "Acme's resolver (demo)"})
        call_command("load_network", options["network"], stdout=self.stdout)
