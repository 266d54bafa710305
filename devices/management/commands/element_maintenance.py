"""`manage.py element_maintenance ELEMENT --on|--off --reason TEXT`: take a router or speaker out of service."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.actors import Actor
from core.errors import ValidationProblem
from devices.health import set_maintenance
from devices.models import BgpSpeaker, Router


class Command(BaseCommand):
    help = "Put an element (router:NAME or speaker:NAME) into maintenance or back in service, with a reason."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("element", help="router:NAME or speaker:NAME")
        state = parser.add_mutually_exclusive_group(required=True)
        state.add_argument("--on", action="store_true", help="take it out of service")
        state.add_argument("--off", action="store_true", help="put it back in service")
        parser.add_argument("--reason", required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        kind, _, name = options["element"].partition(":")
        known = (kind == "router" and Router.objects.filter(name=name).exists()) or (
            kind == "speaker" and BgpSpeaker.objects.filter(name=name).exists())
        if not known:
            raise CommandError(f"no element {options['element']!r} (write router:NAME or speaker:NAME)")
        actor = Actor("user", f"{getpass.getuser()} (element_maintenance)")
        try:
            set_maintenance(options["element"], on=options["on"], reason=options["reason"], acting_user=actor)
        except ValidationProblem as problem:
            raise CommandError(problem.message) from problem
        self.stdout.write(f"{options['element']}: {'in maintenance' if options['on'] else 'back in service'}")
