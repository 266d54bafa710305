"""`manage.py run_speaker NAME`: run and supervise the ExaBGP of one BgpSpeaker row until SIGTERM or SIGINT.

It lives in the control plane because it enforces the kill switch on the speaker: while the switch is on, the
speaker's journal replay is on hold, so a speaker (re)started then announces nothing.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from core.errors import ValidationProblem
from devices.drivers.base import DriverError
from devices.drivers.bgp import set_hold
from devices.models import BgpSpeaker
from devices.services import speaker_process
from mitigation.models import ControlSwitch

HOLD_POLL_S = 1.0


def hold_speaker(speaker: BgpSpeaker) -> None:
    """Keep the speaker's replay hold equal to the kill switch; when the database cannot say, keep it as it is."""
    try:
        panic = ControlSwitch.current().panic
    except DatabaseError:
        return
    set_hold(speaker.workdir, panic)


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
        hold_speaker(speaker)  # before the first start: a speaker started under the kill switch replays nothing
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
            while not stop.wait(HOLD_POLL_S):
                hold_speaker(speaker)
        finally:
            process.stop()
        self.stdout.write(f"speaker {speaker.name} stopped (restarts: {process.restarts})")
