"""`manage.py run_speaker NAME`: run and supervise the ExaBGP of one BgpSpeaker row until SIGTERM or SIGINT."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import ValidationProblem
from devices.drivers.base import DriverError
from devices.models import BgpSpeaker
from devices.services import speaker_process


class Command(BaseCommand):
    help = "Start the BGP speaker of a BgpSpeaker row, restart it if it dies, stop it on SIGTERM/SIGINT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--wait", type=float, default=15.0, help="seconds to wait for the control socket")

    def handle(self, *args: Any, **options: Any) -> None:
        speaker = BgpSpeaker.objects.filter(name=options["name"]).first()
        if speaker is None:
            raise CommandError(f"no BGP speaker named {options['name']!r}")
        if not speaker.enabled:
            raise CommandError(f"speaker {speaker.name} is disabled")
        try:
            process = speaker_process(speaker)
        except ValidationProblem as error:
            raise CommandError(str(error)) from error
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        try:
            process.start(wait=options["wait"])
        except DriverError as error:
            process.stop()
            raise CommandError(f"speaker {speaker.name} did not start: {error}") from error
        neighbors = ", ".join(f"{n.peer_address}:{n.port}" for n in process.settings.neighbors) or "none"
        self.stdout.write(f"speaker {speaker.name} running in {speaker.workdir} (neighbors: {neighbors})")
        self.stdout.flush()
        try:
            stop.wait()
        finally:
            process.stop()
        self.stdout.write(f"speaker {speaker.name} stopped (restarts: {process.restarts})")
