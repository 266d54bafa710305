"""The closed loop on the emulated data plane: traffic through the lab's edge router, flows to the real collector,
its signals to Sluice, and the stand-in scrubbing appliance reporting what really reaches it. The collector keeps
its per-second aggregates where Sluice reads them (Redis, `SLUICE_FLOW_NAMESPACE`), so the closed loop also sees
what the router's flow records mark dropped.

Used by tests/mitigation/test_closed_loop.py (which steps the control plane itself, one cycle at a time) and by
bench/closed_loop.py (where Celery's workers and beat do it, as in production).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from collector import RedisStore, run_collector
from collector.signals import AttackSignal
from core.actors import Actor
from core.errors import ValidationProblem
from core.redis import redis_client
from devices.models import ScrubbingCenter
from mitigation.choices import ActionKindChoices, ActionStatusChoices
from mitigation.management.commands.run_collector import load_prefixes
from mitigation.models import Action
from mitigation.services.center_reports import record_center_report
from mitigation.services.signals import record_signal
from netsim.dataplane import DataPlane, EdgeRouter, ScrubbingSite, Stream
from netsim.polling import wait_for
from tests.support.lab import Lab

logger = logging.getLogger(__name__)

DETECTOR = Actor("detector", "sluice-flow")
APPLIANCE = Actor("system", "lab scrubbing appliance")
# The collector ends an attack this long after its traffic fell under every threshold (production: 60 s).
HOLD_SECONDS = 3


@dataclass
class ClosedLoopLab:
    plane: DataPlane
    collector: tuple[str, int]
    signals: queue.Queue[AttackSignal]
    stop: threading.Event
    recorded: list[AttackSignal] = field(default_factory=list)

    def record_signals(self) -> int:
        """Hand what the collector emitted to Sluice, as `run_collector`'s sink does."""
        count = 0
        while True:
            try:
                signal = self.signals.get_nowait()
            except queue.Empty:
                return count
            record_signal(signal, acting_user=DETECTOR)
            self.recorded.append(signal)
            count += 1

    def report_centers(self) -> int:
        """Each center reports its load and, per prefix Sluice diverts to it, what it received, dropped, returned."""
        state = self.plane.state()["centers"]
        reported = 0
        for center in ScrubbingCenter.objects.all():
            diverted = {str(a.spec.get("prefix")) for a in Action.objects.filter(
                kind=ActionKindChoices.DIVERSION, status=ActionStatusChoices.DESIRED, mitigation__center=center,
                mitigation__state__in=["applying", "active", "withdrawing"])}
            lines = [{"prefix": prefix, **{k: int(v) for k, v in figures.items() if k.endswith(("_bps", "_pps"))}}
                     for prefix, figures in state.get(center.slug, {}).items() if prefix in diverted]
            try:
                record_center_report(center, load_gbps=10.0, load_mpps=5.0, healthy=True, prefixes=lines,
                                     acting_user=APPLIANCE)
            except ValidationProblem as problem:  # diverted a moment ago, withdrawn since: the next report
                logger.info("center report of %s refused: %s", center.slug, problem)
                continue
            reported += len(lines)
        return reported

    def add(self, name: str, destination: str, *, bps: int, protocol: int = 17, source: str = "192.0.2.200",
            source_port: int = 0, destination_port: int = 0, packet_size: int = 1400, attack: bool = True,
            tcp_flags: int = 0) -> None:
        self.plane.add_stream(Stream(name=name, source=source, destination=destination, protocol=protocol, bps=bps,
                                     ingress="lab-edge-1", source_port=source_port,
                                     destination_port=destination_port, packet_size=packet_size, attack=attack,
                                     tcp_flags=tcp_flags))


@contextmanager
def closed_loop_lab(lab: Lab, *, interval: float = 0.2, sampling: int = 100) -> Iterator[ClosedLoopLab]:
    """The data plane over the lab's router and its BIRD receiver, exporting to a real collector in a thread that
    watches every verified prefix with its tenant's thresholds (ending an attack after HOLD_SECONDS) and keeps its
    aggregates in Redis under the `SLUICE_FLOW_NAMESPACE` of the moment it starts."""
    signals: queue.Queue[AttackSignal] = queue.Queue()
    stop = threading.Event()
    ready: dict[str, tuple[str, int]] = {}
    prefixes = [dataclasses.replace(p, hold_seconds=HOLD_SECONDS) for p in load_prefixes()]
    store = RedisStore(redis_client(), settings.SLUICE_FLOW_NAMESPACE)
    thread = threading.Thread(target=lambda: run_collector(
        listen={"ipfix": ("127.0.0.1", 0)}, prefixes=lambda: prefixes, emit=signals.put, redis_url=None,
        stop_event=stop, on_ready=ready.update, store=store), daemon=True, name="collector")
    thread.start()
    wait_for(lambda: bool(ready), timeout=30, what="the collector listening")
    centers = [ScrubbingSite(c.slug, c.diversion_next_hop_v4 or None, c.diversion_next_hop_v6 or None,
                             c.route_target or None) for c in ScrubbingCenter.objects.all()]
    plane = DataPlane([EdgeRouter("lab-edge-1", lab.emulator, lab.bird)], centers)
    host, port = ready["ipfix"]
    try:
        with plane:
            plane.run(f"{host}:{port}", fmt="ipfix", sampling=sampling, interval=interval)
            yield ClosedLoopLab(plane, (host, port), signals, stop)
    finally:
        stop.set()
        thread.join(timeout=10)


def stream_state(plane: DataPlane, name: str) -> dict[str, Any]:
    return next(s for s in plane.state()["streams"] if s["name"] == name)
