"""Stand-in scrubbing appliances for the demo: report each center's load every few seconds, as real ones would
through POST /api/v1/centers/<slug>/load/. Without reports a center's data goes stale and the engine avoids it."""

from __future__ import annotations

import math
import signal
import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from core.actors import Actor
from devices.models import ScrubbingCenter
from devices.services import record_center_load

ACTOR = Actor("system", "demo scrubbers")


class Command(BaseCommand):
    help = "Report a gently varying load for every scrubbing center until stopped (demo only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=10.0)

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        started = time.monotonic()
        while not stop.is_set():
            close_old_connections()
            phase = (time.monotonic() - started) / 300
            for index, center in enumerate(ScrubbingCenter.objects.order_by("slug")):
                share = 0.15 + 0.1 * math.sin(phase + index)
                record_center_load(center, load_gbps=round(center.capacity_gbps * share, 1),
                                   load_mpps=round(center.capacity_mpps * share, 1), healthy=True, acting_user=ACTOR)
            stop.wait(options["interval"])
