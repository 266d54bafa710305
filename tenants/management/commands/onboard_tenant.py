"""Onboard a customer from the command line: the interface scripts and our own checks use."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.actors import Actor
from core.errors import ValidationProblem
from tenants.customer.choices import ApplicationProfileChoices, AutomationModeChoices, MitigationActionChoices
from tenants.services import ProfileInput, onboard_tenant


class Command(BaseCommand):
    help = "Create a tenant with its schema, domain, first admin, protected prefixes and service profile."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--domain", required=True, help="host name of the tenant's portal, e.g. acme.localhost")
        parser.add_argument("--admin-email", required=True)
        parser.add_argument("--prefix", action="append", required=True, dest="prefixes", help="CIDR; repeatable")
        parser.add_argument("--latency-ms", type=int, required=True)
        parser.add_argument("--profile", required=True, choices=ApplicationProfileChoices.values)
        parser.add_argument("--automation", default=AutomationModeChoices.AUTOMATIC, choices=AutomationModeChoices.values)
        parser.add_argument(
            "--allow-action", action="append", dest="actions", choices=MitigationActionChoices.values,
            help="allowed mitigation action; repeatable (default: flowspec and diversion)",
        )
        parser.add_argument("--hold-down-minutes", type=int, default=10)
        parser.add_argument("--verify", action="store_true", help="verify the prefixes now (operator onboarding)")
        parser.add_argument("--allow-bogons", action="store_true", help="accept private/special space (labs only)")

    def handle(self, *args: Any, **options: Any) -> None:
        profile = ProfileInput(
            latency_threshold_ms=options["latency_ms"],
            application_profile=options["profile"],
            automation_mode=options["automation"],
            allowed_actions=tuple(options["actions"] or ProfileInput.allowed_actions),
            hold_down_minutes=options["hold_down_minutes"],
        )
        try:
            result = onboard_tenant(
                slug=options["slug"],
                name=options["name"],
                domain=options["domain"],
                admin_email=options["admin_email"],
                prefixes=options["prefixes"],
                profile=profile,
                verify=options["verify"],
                allow_bogons=options["allow_bogons"],
                acting_user=Actor("system", "onboard_tenant command"),
            )
        except ValidationProblem as problem:
            raise CommandError(f"refused, nothing was created: {problem}") from None
        self.stdout.write(f"Onboarded {result.tenant.name} ({result.tenant.slug}) at {options['domain']}")
        self.stdout.write(f"Prefixes: {', '.join(result.prefixes)} ({'verified' if options['verify'] else 'pending'})")
        self.stdout.write(f"Admin login: {result.admin_username}")
        self.stdout.write(f"One-time password: {result.admin_password}")
