"""`manage.py confirm_host_key ROUTER --fingerprint SHA256:...`: accept a router's changed SSH host key.

Without `--fingerprint` it shows the recorded and the offered fingerprints and changes nothing: compare the offered
one with what the router's console shows (`show system ssh-host-key` or the vendor's equivalent) before accepting.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.actors import Actor
from core.errors import ValidationProblem
from devices.drivers.hostkeys import fingerprint
from devices.models import Router
from devices.services import confirm_router_host_key


class Command(BaseCommand):
    help = "Accept the SSH host key a router now offers in place of its recorded one (after checking it)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("router", help="the router's name")
        parser.add_argument("--fingerprint", default="", help="the offered key's SHA256 fingerprint, as checked")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            router = Router.objects.get(name=options["router"])
        except Router.DoesNotExist as error:
            raise CommandError(f"no router named {options['router']!r}") from error
        if not router.ssh_host_key_offered:
            raise CommandError(f"router {router.name} has no changed host key to confirm")
        recorded = fingerprint(router.ssh_host_key) if router.ssh_host_key else "none"
        offered = fingerprint(router.ssh_host_key_offered)
        if not options["fingerprint"]:
            raise CommandError(f"router {router.name}: recorded key {recorded}, offered key {offered}. Check the "
                               f"offered one on the router, then run again with --fingerprint {offered}")
        try:
            confirmed = confirm_router_host_key(router, fingerprint_seen=options["fingerprint"],
                                                acting_user=Actor("system", "confirm_host_key"))
        except ValidationProblem as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"router {router.name}: host key {confirmed} confirmed (was {recorded})")
