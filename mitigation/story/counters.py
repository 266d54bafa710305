"""FlowSpec rule counters: rates between consecutive samples of a run, the latest per router, the last hit.

A router that could not be read has no sample (a gap stays a gap, never a zero); a cumulative figure that goes
down starts a new run (the rule was installed anew), so no rate is taken across it.
"""

from __future__ import annotations

import datetime
import itertools
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mitigation.choices import ActionKindChoices
from mitigation.models import Action, Mitigation, RuleCounterSample
from mitigation.story.text import route_text

# The counter samples one page reads for a mitigation, newest first: hours of samples of a few rules and routers.
SAMPLES_LIMIT = 20_000
# A run of samples whose next reading comes later than this many usual intervals has a gap there: no rate is drawn
# across it, so a router that could not be read shows as missing, not as an average or a zero.
GAP_FACTOR = 3.0


@dataclass(frozen=True)
class Sample:
    at: datetime.datetime
    packets: int
    bytes: int
    dropped_packets: int
    dropped_bytes: int


@dataclass(frozen=True)
class Rate:
    """Rates between two consecutive samples of one run, assigned to the later sample's time."""

    at: datetime.datetime
    seconds: float
    matched_bps: float
    matched_pps: float
    dropped_bps: float
    dropped_pps: float


def _reset(previous: Sample, sample: Sample) -> bool:
    return (sample.packets < previous.packets or sample.bytes < previous.bytes
            or sample.dropped_packets < previous.dropped_packets or sample.dropped_bytes < previous.dropped_bytes)


def counter_rates(samples: Sequence[Sample]) -> list[Rate]:
    """Rates between consecutive samples (oldest first) of one action on one router.

    No rate across a reinstall (a cumulative figure went down) nor across a gap (a reading GAP_FACTOR usual
    intervals after the previous one): what was not read stays unknown.
    """
    intervals = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(samples)]
    usual = statistics.median(intervals) if intervals else 0.0
    rates = []
    for previous, sample in itertools.pairwise(samples):
        seconds = (sample.at - previous.at).total_seconds()
        if seconds <= 0 or _reset(previous, sample) or (len(intervals) > 1 and seconds > GAP_FACTOR * usual):
            continue
        rates.append(Rate(
            at=sample.at, seconds=seconds,
            matched_bps=(sample.bytes - previous.bytes) * 8 / seconds,
            matched_pps=(sample.packets - previous.packets) / seconds,
            dropped_bps=(sample.dropped_bytes - previous.dropped_bytes) * 8 / seconds,
            dropped_pps=(sample.dropped_packets - previous.dropped_packets) / seconds,
        ))
    return rates


def last_hit(samples: Sequence[Sample]) -> datetime.datetime | None:
    """The latest sample by which the rule matched more packets than at the sample before (or, in a new run, any)."""
    found = None
    for index, sample in enumerate(samples):
        previous = samples[index - 1] if index else None
        fresh = previous is None or _reset(previous, sample)
        if sample.packets > (0 if fresh or previous is None else previous.packets):
            found = sample.at
    return found


def counter_samples(action_ids: Iterable[int]) -> dict[tuple[int, str], list[Sample]]:
    """The newest SAMPLES_LIMIT counter samples of these actions, per (action, element), oldest first."""
    rows = RuleCounterSample.objects.filter(action_id__in=list(action_ids)).order_by("-at", "-id").values_list(
        "action_id", "element", "at", "packets", "bytes", "dropped_packets", "dropped_bytes")[:SAMPLES_LIMIT]
    series: dict[tuple[int, str], list[Sample]] = defaultdict(list)
    for action_id, element, at, packets, size, dropped_packets, dropped_bytes in reversed(list(rows)):
        series[(action_id, element)].append(Sample(at, packets, size, dropped_packets, dropped_bytes))
    return series


@dataclass(frozen=True)
class ElementCounters:
    """One rule on one router: the latest cumulative counters, and the rates from the last two samples of a run."""

    element: str
    at: datetime.datetime
    packets: int
    bytes: int
    dropped_packets: int
    dropped_bytes: int
    rate: Rate | None
    last_hit_at: datetime.datetime | None


@dataclass(frozen=True)
class RuleCounterSummary:
    action_id: int
    rule: str
    spec: dict[str, Any]
    status: str
    elements: list[ElementCounters]
    last_hit_at: datetime.datetime | None

    def _total(self, name: str) -> float | None:
        rates = [getattr(e.rate, name) for e in self.elements if e.rate is not None]
        return sum(rates) if rates else None

    @property
    def matched_bps(self) -> float | None:
        return self._total("matched_bps")

    @property
    def matched_pps(self) -> float | None:
        return self._total("matched_pps")

    @property
    def dropped_bps(self) -> float | None:
        return self._total("dropped_bps")

    @property
    def dropped_pps(self) -> float | None:
        return self._total("dropped_pps")

    @property
    def packets(self) -> int:
        return sum(e.packets for e in self.elements)

    @property
    def dropped_packets(self) -> int:
        return sum(e.dropped_packets for e in self.elements)


def _element_counters(element: str, samples: Sequence[Sample]) -> ElementCounters:
    latest = samples[-1]
    rates = counter_rates(samples[-2:]) if len(samples) >= 2 else []
    return ElementCounters(element, latest.at, latest.packets, latest.bytes, latest.dropped_packets,
                           latest.dropped_bytes, rates[0] if rates else None, last_hit(samples))


def rule_counters_of(mitigation: Mitigation) -> list[RuleCounterSummary]:
    """Per FlowSpec action of the mitigation (retired ones too, newest last): its rule, per router the latest
    counters and current rates, and when it last matched anything."""
    actions = list(Action.objects.filter(mitigation=mitigation, kind=ActionKindChoices.FLOWSPEC).order_by(
        "created_at", "id"))
    series = counter_samples(action.pk for action in actions)
    result = []
    for action in actions:
        elements = [_element_counters(element, samples)
                    for (action_id, element), samples in sorted(series.items()) if action_id == action.pk]
        hits = [e.last_hit_at for e in elements if e.last_hit_at is not None]
        result.append(RuleCounterSummary(action.pk, route_text(action.spec), action.spec, action.status, elements,
                                         max(hits, default=None)))
    return result
