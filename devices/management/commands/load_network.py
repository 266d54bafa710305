"""`manage.py load_network FILE.yaml [--dry-run] [--prune]`: make the inventory match a network file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.actors import Actor
from devices.network_file import NetworkFileError, load_network


class Command(BaseCommand):
    help = "Create or update scrubbing centers, routers, upstreams, speakers and tenant latencies from a YAML file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--dry-run", action="store_true", help="print what would change and change nothing")
        parser.add_argument("--prune", action="store_true",
                            help="also delete centers, routers, upstreams and speakers that the file does not list")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        try:
            text = path.read_text()
        except OSError as error:
            raise CommandError(f"{path}: {error.strerror}") from error
        try:
            plan = load_network(text, acting_user=Actor("system", "load_network"), dry_run=options["dry_run"],
                                prune=options["prune"], source=str(path))
        except NetworkFileError as error:
            raise CommandError(f"{path} refused, nothing changed:\n  " + "\n  ".join(error.problems)) from error
        for line in plan.lines():
            self.stdout.write(line)
        if plan.changes:
            verb = "would apply" if options["dry_run"] else "applied"
            self.stdout.write(f"{verb} {len(plan.changes)} change(s)")
