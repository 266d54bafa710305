"""Stand-in scrubbing appliances for the demo: every few seconds each center reports what the emulated data plane
really diverts to it, through the same service as POST /api/v1/centers/<slug>/load/ (`record_center_report`).

A center's load is a constant baseline share of its capacity (other customers' traffic) plus what it receives
from the data plane now. Its per-prefix figures (received, dropped, clean) are the closed loop's evidence, and
are only reported for prefixes Sluice diverts to that center: the data plane may still carry a diversion Sluice
has withdrawn, or already one it has not recorded yet. Without the data plane (`python -m netsim.demo`), centers
report the baseline load only. Without reports a center's data goes stale and the engine avoids it.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import signal
import threading
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections

from core.actors import Actor
from core.errors import ValidationProblem
from devices.models import ScrubbingCenter
from mitigation.integrations.dataplane import DataPlaneUnreachable, dataplane_address, dataplane_call
from mitigation.services.center_reports import diverted_prefix, diverting_actions, record_center_report

logger = logging.getLogger(__name__)

ACTOR = Actor("system", "demo scrubbers")
BASELINE_SHARE = 0.15
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_REFUSED_PREFIX = re.compile(r"prefixes\[(\d+)\]")


@dataclass(frozen=True)
class ScrubberReport:
    """What one center reports: its load, and the per-prefix figures of the prefixes Sluice diverts to it."""

    load_gbps: float
    load_mpps: float
    prefixes: list[dict[str, object]] = field(default_factory=list)


def scrubber_report(figures: Mapping[str, Mapping[str, float]] | None, diverted: Collection[Network], *,
                    capacity_gbps: float, capacity_mpps: float, baseline_share: float = BASELINE_SHARE) -> ScrubberReport:
    """A center's report from the data plane's figures for it (`state`'s `centers[slug]`: prefix -> rates, None
    when the data plane is not reachable) and the prefixes Sluice diverts to it.

    The load counts all the center receives (a diversion Sluice no longer counts still loads the appliance); the
    per-prefix lines only the diverted prefixes, in whole bits and packets per second, dropped plus clean never
    above received.
    """
    received_bps = received_pps = 0.0
    lines: list[dict[str, object]] = []
    wanted = set(diverted)
    for prefix, rates in sorted((figures or {}).items()):
        received_bps += rates.get("received_bps", 0.0)
        received_pps += rates.get("received_pps", 0.0)
        try:
            network = ipaddress.ip_network(prefix, strict=False)
        except ValueError:
            continue
        if network not in wanted:
            continue
        line: dict[str, object] = {"prefix": str(network)}
        for unit in ("bps", "pps"):
            received = round(rates.get(f"received_{unit}", 0.0))
            dropped = min(round(rates.get(f"dropped_{unit}", 0.0)), received)
            clean = min(round(rates.get(f"clean_{unit}", 0.0)), received - dropped)
            line |= {f"received_{unit}": received, f"dropped_{unit}": dropped, f"clean_{unit}": clean}
        lines.append(line)
    return ScrubberReport(load_gbps=round(capacity_gbps * baseline_share + received_bps / 1e9, 3),
                          load_mpps=round(capacity_mpps * baseline_share + received_pps / 1e6, 3), prefixes=lines)


def diverted_prefixes() -> dict[int, set[Network]]:
    """Per center id, the prefixes Sluice diverts to it now (the rows `record_center_report` accepts figures for)."""
    diverted: dict[int, set[Network]] = defaultdict(set)
    for center_id, kind, spec in diverting_actions().values_list("mitigation__center_id", "kind", "spec"):
        network = diverted_prefix(kind, spec)
        if network is not None:
            diverted[center_id].add(network)
    return diverted


def send_report(center: ScrubbingCenter, report: ScrubberReport) -> list[str]:
    """Record the report; a prefix the service refuses (its diversion ended in between) is left out and the rest
    sent again. Returns the prefixes left out."""
    lines: Sequence[dict[str, object]] = list(report.prefixes)
    left_out: list[str] = []
    while True:
        try:
            record_center_report(center, load_gbps=report.load_gbps, load_mpps=report.load_mpps, healthy=True,
                                 prefixes=lines, acting_user=ACTOR)
            return left_out
        except ValidationProblem as problem:
            refused = _REFUSED_PREFIX.match(problem.field)
            if refused is None or int(refused.group(1)) >= len(lines):
                if not lines:
                    raise
                left_out += [str(line["prefix"]) for line in lines]
                lines = []
                continue
            index = int(refused.group(1))
            left_out.append(str(lines[index]["prefix"]))
            lines = [line for position, line in enumerate(lines) if position != index]


class Command(BaseCommand):
    help = "Report every scrubbing center's load and per-prefix figures from the demo's data plane (demo only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=2.0, help="seconds between reports (default 2)")
        parser.add_argument("--dataplane", help="the data plane's control address host:port "
                                                "(default: var/netsim/dataplane.port, else 127.0.0.1:4790)")

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        reachable: bool | None = None
        while not stop.is_set():
            try:  # read again each time: a restarted netsim writes its new port
                address = dataplane_address(options["dataplane"], Path(settings.BASE_DIR))
            except ValueError as error:
                raise CommandError(f"--dataplane: {error}") from error
            try:
                state: dict[str, Any] | None = dataplane_call(address, {"op": "state"})
            except DataPlaneUnreachable as error:
                state = None
                if reachable is not False:
                    logger.warning("%s; reporting the centers' baseline load only until it answers", error)
            if state is not None and reachable is not True:
                logger.info("reporting what the data plane at %s:%s diverts to each center", *address)
            reachable = state is not None
            try:
                close_old_connections()
                self._report_all(state)
            except Exception:  # a database gone for a moment must not end the reports
                logger.exception("center reports failed; trying again in %s s", options["interval"])
            stop.wait(options["interval"])

    def _report_all(self, state: dict[str, Any] | None) -> None:
        diverted = diverted_prefixes()
        centers = (state or {}).get("centers") or {}
        for center in ScrubbingCenter.objects.order_by("slug"):
            report = scrubber_report(centers.get(center.slug) if state is not None else None,
                                     diverted.get(center.pk, set()), capacity_gbps=center.capacity_gbps,
                                     capacity_mpps=center.capacity_mpps)
            try:
                left_out = send_report(center, report)
            except ValidationProblem as problem:
                logger.warning("%s refused its report: %s", center.slug, problem)
                continue
            if left_out:
                logger.info("%s: %s no longer diverted there; reported without", center.slug, ", ".join(left_out))
