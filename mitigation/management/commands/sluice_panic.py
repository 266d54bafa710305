"""The kill switch from a shell: works when Celery or Redis is down."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.actors import Actor
from devices import health
from mitigation.models import ControlSwitch
from mitigation.services.panic import clear_panic, elements_still_carrying, panic


class Command(BaseCommand):
    help = "Withdraw everything Sluice announced (and keep it withdrawn until --clear), audited."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--reason", default="kill switch from the command line")
        parser.add_argument("--clear", action="store_true", help="allow announcements again")
        parser.add_argument("--status", action="store_true",
                            help="list every element still carrying Sluice routes, and its health")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = Actor("user", f"{getpass.getuser()} (sluice_panic)")
        if options["status"]:
            self._status()
            return
        if options["clear"]:
            clear_panic(acting_user=actor, reason=options["reason"])
            self.stdout.write("Kill switch cleared: Sluice may announce again.")
            return
        report = panic(acting_user=actor, reason=options["reason"])
        self.stdout.write(f"Kill switch on: {report.mitigations} mitigation(s) withdrawing.")
        if report.error:
            raise CommandError(
                f"some elements could not be reached: {report.error}. The switch stays on; the reconcile loop and "
                "the routers' commit-confirmed timers will finish the withdrawal. Run again to retry."
            )
        changed = ", ".join(report.converge.changed_elements) if report.converge else ""
        self.stdout.write(f"Network converged to nothing announced{': ' + changed if changed else ''}.")

    def _status(self) -> None:
        switch = ControlSwitch.current()
        self.stdout.write(f"Kill switch: {'ON' if switch.panic else 'off'}"
                          + (f" ({switch.reason}, by {switch.changed_by})" if switch.panic else ""))
        carrying = elements_still_carrying()
        rows = health.health_of(carrying)
        if not carrying:
            self.stdout.write("No element carries Sluice routes.")
            return
        for element, count in carrying.items():
            row = rows.get(element)
            state = f"{row.state} since {row.since:%Y-%m-%d %H:%M}" if row else "ok"
            error = f": {row.last_error}" if row and row.last_error else ""
            self.stdout.write(f"{element}: {count} route(s) still carried; {state}{error}")
