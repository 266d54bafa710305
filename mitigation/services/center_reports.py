"""A scrubbing center's report: its load, and per prefix diverted to it what it received, dropped and returned.

The per-prefix part is the center's word on a mitigation (the closed loop reads it as evidence, see verdicts.py),
so it is only taken for a prefix the center is carrying for us now: a desired diversion of a mitigation in
applying, active or withdrawing whose center is this one, or a FlowSpec redirect of one into the center's routing
instance. The whole report is one transaction with the center's
load (`devices.services.record_center_load`): a report with one bad prefix writes nothing at all, so an appliance
never has half of a report stored and the rest refused.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from core.actors import Actor
from core.errors import ValidationProblem
from core.events import publish
from devices.models import ScrubbingCenter
from devices.services import record_center_load
from mitigation.choices import ActionKindChoices, ActionStatusChoices, MitigationStateChoices
from mitigation.models import Action, CenterPrefixSample, Mitigation

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Mitigations whose diversion the network carries or is still taking down: a center may report on their prefixes.
DIVERTING_STATES = (MitigationStateChoices.APPLYING, MitigationStateChoices.ACTIVE, MitigationStateChoices.WITHDRAWING)
BPS_FIELDS = ("received_bps", "dropped_bps", "clean_bps")
PPS_FIELDS = ("received_pps", "dropped_pps", "clean_pps")
MAX_PREFIXES = 1000
MAX_FIGURE = 10**15  # bits or packets per second: a petabit is past any center, and far inside a bigint
# Appliances count received, dropped and clean traffic at slightly different moments: their sum may overshoot
# what was received, by this many percent at most.
TOLERANCE_PERCENT = 1


@dataclass(frozen=True)
class PrefixFigures:
    """One validated line of a report: a prefix and its six rates."""

    prefix: Network
    received_bps: int
    dropped_bps: int
    clean_bps: int
    received_pps: int = 0
    dropped_pps: int = 0
    clean_pps: int = 0

    def figures(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in (*BPS_FIELDS, *PPS_FIELDS)}


@dataclass(frozen=True)
class CenterReport:
    """What a report left behind: the center with its new load and one sample per reported prefix and mitigation."""

    center: ScrubbingCenter
    samples: list[CenterPrefixSample]


def record_center_report(
    center: ScrubbingCenter, *, load_gbps: float, load_mpps: float, healthy: bool,
    prefixes: Sequence[Mapping[str, object]] = (), acting_user: Actor, now: datetime | None = None,
) -> CenterReport:
    """Store a center's load and its per-prefix figures in one transaction; publish them after commit.

    Each item of `prefixes` has `prefix` and `received_bps`, `dropped_bps`, `clean_bps` (and optionally the same
    in pps, 0 when left out). Raises ValidationProblem naming the field (`prefixes[1].prefix`) for a malformed
    item, a prefix reported twice, figures whose dropped and clean traffic exceed what was received by more than
    1 %, or a prefix not diverted to this center; then nothing is written, the load neither.

    A prefix that two mitigations divert (attacks on two hosts of one /24) gives each of them a sample: the figures
    describe the prefix, and each mitigation's verdict needs them. Events: `center.load` to the SOC, and
    `mitigation.center_report` per sample to the SOC and the mitigation's tenant.
    """
    now = now or timezone.now()
    lines = _parse(prefixes)
    with transaction.atomic():
        carriers = _diverted_to(center, [line.prefix for line in lines])
        for index, line in enumerate(lines):
            if not carriers.get(line.prefix):
                raise ValidationProblem(f"prefixes[{index}].prefix", f"{line.prefix} is not diverted to {center.name}")
        updated = record_center_load(center, load_gbps=load_gbps, load_mpps=load_mpps, healthy=healthy,
                                     acting_user=acting_user, now=now)
        samples = CenterPrefixSample.objects.bulk_create([
            CenterPrefixSample(center=updated, mitigation=mitigation, prefix=str(line.prefix), at=now,
                               **line.figures())
            for line in lines for mitigation in carriers[line.prefix]
        ])
        for sample in samples:
            publish("mitigation.center_report", {
                "mitigation": sample.mitigation.pk, "center": updated.slug, "prefix": str(sample.prefix),
                "at": now.isoformat(), **{name: getattr(sample, name) for name in (*BPS_FIELDS, *PPS_FIELDS)},
            }, tenant_schema=sample.mitigation.tenant.schema_name)
    return CenterReport(center=updated, samples=samples)


def _parse(prefixes: Sequence[Mapping[str, object]]) -> list[PrefixFigures]:
    if isinstance(prefixes, str | bytes) or not isinstance(prefixes, Sequence):
        raise ValidationProblem("prefixes", "must be a list")
    if len(prefixes) > MAX_PREFIXES:
        raise ValidationProblem("prefixes", f"at most {MAX_PREFIXES} prefixes in one report")
    lines: list[PrefixFigures] = []
    seen: dict[Network, int] = {}
    for index, item in enumerate(prefixes):
        line = _parse_line(f"prefixes[{index}]", item)
        if line.prefix in seen:
            raise ValidationProblem(f"prefixes[{index}].prefix",
                                    f"{line.prefix} is reported twice (also prefixes[{seen[line.prefix]}])")
        seen[line.prefix] = index
        lines.append(line)
    return lines


def _parse_line(path: str, item: object) -> PrefixFigures:
    if not isinstance(item, Mapping):
        raise ValidationProblem(path, "must be an object with a prefix and its figures")
    raw = item.get("prefix")
    try:
        prefix = ipaddress.ip_network(str(raw).strip(), strict=True) if isinstance(raw, str) else None
    except ValueError:
        prefix = None
    if prefix is None:
        raise ValidationProblem(f"{path}.prefix", f"{raw!r} is not a prefix without host bits")
    figures = {name: _figure(f"{path}.{name}", item.get(name), required=True) for name in BPS_FIELDS}
    figures |= {name: _figure(f"{path}.{name}", item.get(name, 0), required=False) for name in PPS_FIELDS}
    for unit in ("bps", "pps"):
        received, dropped, clean = (figures[f"{kind}_{unit}"] for kind in ("received", "dropped", "clean"))
        if (dropped + clean) * 100 > received * (100 + TOLERANCE_PERCENT):
            raise ValidationProblem(f"{path}.received_{unit}",
                                    f"{received} is less than dropped_{unit} + clean_{unit} ({dropped} + {clean}) "
                                    f"by more than {TOLERANCE_PERCENT} %")
    return PrefixFigures(prefix=prefix, **figures)


def _figure(path: str, value: object, *, required: bool) -> int:
    if value is None and not required:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationProblem(path, "must be a whole number")
    if not 0 <= value <= MAX_FIGURE:
        raise ValidationProblem(path, f"must be between 0 and {MAX_FIGURE}")
    return value


def diverting_actions() -> QuerySet[Action]:
    """The desired actions that send traffic to their mitigation's center: diversions of a prefix, and FlowSpec
    redirects into the center's routing instance (what the rule's destination matches goes there)."""
    return Action.objects.filter(
        Q(kind=ActionKindChoices.DIVERSION) | Q(kind=ActionKindChoices.FLOWSPEC, spec__action="redirect"),
        status=ActionStatusChoices.DESIRED, mitigation__state__in=DIVERTING_STATES, mitigation__center__isnull=False)


def diverted_prefix(kind: str, spec: Mapping[str, object]) -> Network | None:
    """The prefix a diverting action sends to the center: a diversion's prefix, a redirect's destination."""
    value = spec.get("prefix") if kind == ActionKindChoices.DIVERSION else spec.get("destination")
    try:
        return ipaddress.ip_network(str(value or ""), strict=False)
    except ValueError:
        return None


def _diverted_to(center: ScrubbingCenter, prefixes: list[Network]) -> dict[Network, list[Mitigation]]:
    """The mitigations diverting each of `prefixes` to `center` now, oldest first."""
    if not prefixes:
        return {}
    wanted = set(prefixes)
    carriers: dict[Network, list[Mitigation]] = defaultdict(list)
    actions = (diverting_actions().filter(mitigation__center=center)
               .select_related("mitigation__tenant").order_by("mitigation_id", "id"))
    for action in actions:
        network = diverted_prefix(action.kind, action.spec)
        mitigation = action.mitigation
        if network in wanted and mitigation not in carriers[network]:
            carriers[network].append(mitigation)
    return carriers
