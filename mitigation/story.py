"""A mitigation's story, read from what Sluice already records: what happened, whether it works, and what each
FlowSpec rule hits. Pure reads (no writes, no events, no device I/O), shared by the SOC and the customer faces,
which decide what of it each reader may see.

Counter figures follow `RuleCounterSample`: cumulative per action and router; a router that could not be read has
no sample (a gap stays a gap, never a zero), and a cumulative figure that goes down starts a new run (the rule was
installed anew), so no rate is taken across it.
"""

from __future__ import annotations

import datetime
import itertools
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, F, Max, Min, Q, Window
from django.db.models.functions import Lag
from django.utils import timezone

from core.models import AuditEvent
from devices.models import Router, UpstreamPeer
from mitigation.choices import (
    ActionKindChoices,
    ActionStatusChoices,
    DeploymentStateChoices,
    MitigationLevelChoices,
    MitigationStateChoices,
)
from mitigation.engine.problem import (
    CENTER_OK,
    NO_HEADROOM,
    NO_LATENCY,
    NO_NEXT_HOP,
    NO_UPSTREAM,
    NOT_ALLOWED,
    TOO_FAR,
    UNHEALTHY,
)
from mitigation.models import (
    Action,
    Attack,
    CenterPrefixSample,
    Decision,
    Deployment,
    Mitigation,
    RuleCounterSample,
    SignalRecord,
    Verdict,
)

TIMELINE_LIMIT = 200
# Phase changes of a long attack: at most this many signal entries besides the first and the peak.
SIGNAL_CHANGES_LIMIT = 50
# The counter samples one page reads for a mitigation, newest first: hours of samples of a few rules and routers.
SAMPLES_LIMIT = 20_000
# A run of samples whose next reading comes later than this many usual intervals has a gap there: no rate is drawn
# across it, so a router that could not be read shows as missing, not as an average or a zero.
GAP_FACTOR = 3.0
GRAPH_BUCKETS = 240
MIN_BUCKET_S = 10
# The states whose actions the network carries (mitigation.services.network.CARRIED_STATES).
CARRIED_STATES = (MitigationStateChoices.APPLYING, MitigationStateChoices.ACTIVE)
NEVER_MATCHED_AFTER = datetime.timedelta(minutes=10)
NEAR_LIMIT = 0.8
ESCALATIONS = ("mitigation.escalate", "mitigation.escalate_by_evidence")
WITHDRAWALS = ("mitigation.withdraw", "mitigation.panic", "mitigation.hold_down_over")


# ---------------------------------------------------------------------------------------------------------- timeline


@dataclass(frozen=True)
class TimelineEntry:
    """One moment of the story. `element` names a router or speaker (the SOC's business); `actor` is the audit's
    `kind:name` and `action` its action, for faces that phrase them their own way."""

    at: datetime.datetime
    kind: str  # signal, decision, state, deployment, verdict, escalation, withdrawal, end
    title: str
    detail: str = ""
    element: str = ""
    actor: str = ""
    action: str = ""


def rate_text(value: float | None, unit: str = "bps") -> str:
    """A rate as a person reads it (`38.2 Gbps`, `1.2 Mpps`); None (not measured) as a dash."""
    if value is None:
        return "—"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.1f} {prefix}{unit}"
    return f"{value:.0f} {unit}"


def rates_text(bps: float | None, pps: float | None) -> str:
    """Bit/s and packets/s together (`38.2 Gbps · 4.8 Mpps`); empty when not measured."""
    return "" if bps is None else f"{rate_text(bps)} · {rate_text(pps, 'pps')}"


def _signal_entries(mitigation: Mitigation) -> list[TimelineEntry]:
    """The first signal, each detector's phase changes and the peak: not every one of hundreds of updates."""
    signals = SignalRecord.objects.filter(attack_id=mitigation.attack_id)
    first = signals.order_by("received_at", "id").first()
    if first is None:
        return []
    peak = signals.order_by("-bps", "received_at").first()
    changes = list(
        signals.annotate(previous=Window(Lag("phase"), partition_by=[F("detector")], order_by=[F("received_at"),
                                                                                                F("id")]))
        .filter(~Q(previous=F("phase")) | Q(previous__isnull=True))
        .order_by("received_at", "id")[:SIGNAL_CHANGES_LIMIT]
    )
    chosen: dict[int, tuple[SignalRecord, str]] = {first.pk: (first, "first signal")}
    for signal in changes:
        chosen.setdefault(signal.pk, (signal, f"signal: {signal.phase}"))
    if peak is not None and peak.bps > 0:
        chosen[peak.pk] = (peak, "peak" if peak.pk != first.pk else "first signal, the peak")
    return [
        TimelineEntry(signal.received_at, "signal", title,
                      f"{signal.phase} from {signal.detector}: {', '.join(signal.vectors) or 'no vector'}, "
                      f"{rate_text(signal.bps)}")
        for signal, title in chosen.values()
    ]


def _decision_entries(mitigation: Mitigation) -> list[TimelineEntry]:
    decisions = Decision.objects.filter(mitigation=mitigation).select_related("center").order_by("-created_at", "-id")
    return [
        TimelineEntry(decision.created_at, "decision",
                      f"decision: {decision.get_level_display()}"
                      + (f" via {decision.center.name}" if decision.center else ""),
                      decision.reason, actor=decision.actor)
        for decision in decisions[:TIMELINE_LIMIT]
    ]


def _audit_kind(action: str, diff: dict[str, Any]) -> str:
    if action in ESCALATIONS:
        return "escalation"
    state = diff.get("state") if isinstance(diff, dict) else None
    target = state[1] if isinstance(state, list) and len(state) == 2 else ""
    if action in WITHDRAWALS or target == MitigationStateChoices.WITHDRAWING:
        return "withdrawal"
    if target in (MitigationStateChoices.ENDED, MitigationStateChoices.FAILED, MitigationStateChoices.REJECTED):
        return "end"
    return "state"


def _audit_title(event: AuditEvent) -> str:
    state = event.diff.get("state") if isinstance(event.diff, dict) else None
    if isinstance(state, list) and len(state) == 2:
        return f"{state[0]} → {state[1]}"
    return event.action.removeprefix("mitigation.").replace("_", " ")


def _audit_entries(mitigation: Mitigation) -> list[TimelineEntry]:
    """State changes, escalations and withdrawals of the mitigation (as `states.Transitions` and the lifecycle
    audit them), and what was audited of its attack."""
    events = AuditEvent.objects.filter(
        Q(object_type=Mitigation._meta.label, object_id=str(mitigation.pk))
        | Q(object_type=Attack._meta.label, object_id=str(mitigation.attack_id))
    ).order_by("-created_at", "-id")[:TIMELINE_LIMIT]
    return [
        TimelineEntry(event.created_at, _audit_kind(event.action, event.diff), _audit_title(event), event.reason,
                      actor=f"{event.actor_kind}:{event.actor}", action=event.action)
        for event in events
    ]


def _deployment_entries(mitigation: Mitigation) -> list[TimelineEntry]:
    deployments = Deployment.objects.filter(action__mitigation=mitigation).select_related("action").order_by(
        "-verified_at", "-id")[:TIMELINE_LIMIT]
    return [
        TimelineEntry(row.verified_at, "deployment", f"{row.action.get_kind_display()} {row.state}",
                      row.detail or route_text(row.action.spec), element=row.element)
        for row in deployments
    ]


def _verdict_entries(mitigation: Mitigation) -> list[TimelineEntry]:
    verdicts = Verdict.objects.filter(mitigation=mitigation).order_by("-at", "-id")[:TIMELINE_LIMIT]
    return [TimelineEntry(v.at, "verdict", f"verdict: {v.get_outcome_display()}", v.summary) for v in verdicts]


def timeline(mitigation: Mitigation, *, limit: int = TIMELINE_LIMIT) -> list[TimelineEntry]:
    """The mitigation's story, oldest first: signals (first, phase changes, peak), decisions, audited state changes,
    escalations and withdrawals, deployments per element, verdicts. The latest `limit` entries."""
    entries = [
        *_signal_entries(mitigation), *_decision_entries(mitigation), *_audit_entries(mitigation),
        *_deployment_entries(mitigation), *_verdict_entries(mitigation),
    ]
    entries.sort(key=lambda entry: entry.at)
    return entries[-limit:] if limit else entries


def verdict_figures(verdict: Verdict | None) -> list[tuple[str, str]]:
    """The figures a verdict rests on, labelled and readable, for the verdict panel of both faces."""
    if verdict is None:
        return []
    return [("Attack still reaching the target", rate_text(verdict.attack_bps)),
            ("Dropped by FlowSpec", rate_text(verdict.dropped_bps)),
            ("Scrubbed by the center", rate_text(verdict.scrubbed_bps)),
            ("Threshold", rate_text(verdict.threshold_bps))]


def latest_verdict(mitigation: Mitigation) -> Verdict | None:
    return Verdict.objects.filter(mitigation=mitigation).order_by("-at", "-id").first()


# ------------------------------------------------------------------------------------------------------- counters


def _ranges(values: Any) -> str:
    parts = []
    for item in values or ():
        if isinstance(item, list | tuple) and len(item) == 2:
            low, high = item
            parts.append(str(low) if low == high else f"{low}-{high}")
        else:
            parts.append(str(item))
    return ",".join(parts)


def route_text(spec: dict[str, Any], *, internals: bool = True) -> str:
    """A rule or route in one line, as an operator reads it (`dst 203.0.113.10/32 proto 17 dport 53 → discard`).

    `internals=False` leaves out what is the provider's (next hops, a redirect's route target), for customers."""
    if spec.get("type") != "flowspec" and "action" not in spec:
        prefix = spec.get("prefix") or spec.get("destination") or "?"
        hop = f" via {spec['next_hop']}" if spec.get("next_hop") and internals else ""
        return f"{prefix}{hop}"
    parts = [f"dst {spec.get('destination', '?')}"]
    if spec.get("source"):
        parts.append(f"src {spec['source']}")
    for key, label in (("protocols", "proto"), ("destination_ports", "dport"), ("source_ports", "sport"),
                       ("packet_lengths", "len"), ("icmp_types", "icmp-type"), ("icmp_codes", "icmp-code")):
        if spec.get(key):
            parts.append(f"{label} {_ranges(spec[key])}")
    for key, label in (("tcp_flags", "tcp-flags"), ("fragments", "fragment")):
        if spec.get(key):
            parts.append(f"{label} {','.join(str(v) for v in spec[key])}")
    action = str(spec.get("action") or "filter")
    if action == "rate-limit" and spec.get("rate_bps") is not None:
        action += f" {rate_text(spec['rate_bps'])}"
    elif action == "redirect" and spec.get("redirect_target") and internals:
        action += f" {spec['redirect_target']}"
    elif action == "mark" and spec.get("dscp") is not None:
        action += f" dscp {spec['dscp']}"
    return " ".join(parts) + f" → {action}"




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


def _samples_by_series(action_ids: Iterable[int]) -> dict[tuple[int, str], list[Sample]]:
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
    series = _samples_by_series(action.pk for action in actions)
    result = []
    for action in actions:
        elements = [_element_counters(element, samples)
                    for (action_id, element), samples in sorted(series.items()) if action_id == action.pk]
        hits = [e.last_hit_at for e in elements if e.last_hit_at is not None]
        result.append(RuleCounterSummary(action.pk, route_text(action.spec), action.spec, action.status, elements,
                                         max(hits, default=None)))
    return result


# --------------------------------------------------------------------------------------------------------- traffic


@dataclass(frozen=True)
class TrafficSeries:
    """Bucketed series over the attack's life, each value in bit/s or None where nothing was measured."""

    start: datetime.datetime
    bucket_s: int
    times: list[datetime.datetime]
    attack_bps: list[float | None]
    dropped_bps: list[float | None]
    scrubbed_bps: list[float | None]
    clean_bps: list[float | None]
    activated_at: datetime.datetime | None
    ended_at: datetime.datetime | None
    markers: list[tuple[datetime.datetime, str]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(v is not None for v in (*self.attack_bps, *self.dropped_bps, *self.scrubbed_bps))

    def as_json(self) -> dict[str, Any]:
        """Plain JSON for the page's graph: seconds since `start`, values rounded to bit/s."""
        def values(series: list[float | None]) -> list[int | None]:
            return [None if v is None else round(v) for v in series]

        def offset(moment: datetime.datetime | None) -> float | None:
            return None if moment is None else round((moment - self.start).total_seconds(), 1)

        return {
            "start": self.start.isoformat(), "bucket_s": self.bucket_s,
            "t": [offset(t) for t in self.times],
            "series": [
                {"key": "attack", "label": "attack toward the target", "values": values(self.attack_bps)},
                {"key": "dropped", "label": "dropped by FlowSpec", "values": values(self.dropped_bps)},
                {"key": "scrubbed", "label": "scrubbed by the center", "values": values(self.scrubbed_bps)},
                {"key": "clean", "label": "clean traffic returned", "values": values(self.clean_bps)},
            ],
            "markers": [{"t": offset(at), "label": label} for at, label in self.markers],
        }


def _bucketed(points: Iterable[tuple[datetime.datetime, float]], start: datetime.datetime, bucket_s: int,
              count: int, how: str) -> list[float | None]:
    """Points into `count` buckets: the largest (`max`) or the mean (`mean`); a bucket with none stays None."""
    found: list[list[float]] = [[] for _ in range(count)]
    for at, value in points:
        index = math.floor((at - start).total_seconds() / bucket_s)
        if 0 <= index < count:
            found[index].append(value)
    if how == "max":
        return [max(items) if items else None for items in found]
    return [sum(items) / len(items) if items else None for items in found]


def _summed(per_key: Iterable[list[float | None]], count: int) -> list[float | None]:
    """Series of several routers or prefixes added up; a bucket none of them measured stays None."""
    total: list[float | None] = [None] * count
    for series in per_key:
        for index, value in enumerate(series):
            if value is not None:
                total[index] = (total[index] or 0.0) + value
    return total


def traffic_series(mitigation: Mitigation, *, now: datetime.datetime | None = None,
                   buckets: int = GRAPH_BUCKETS) -> TrafficSeries:
    """Attack traffic toward the target from the signals (before and after the mitigation), FlowSpec-dropped bit/s
    from the rules' counters (per rule and router, then summed), and the center's scrubbed and clean bit/s."""
    attack = mitigation.attack
    now = now or timezone.now()
    end = mitigation.ended_at or attack.ended_at or now
    start = min(attack.started_at, mitigation.created_at)
    span = max((end - start).total_seconds(), 1.0)
    bucket_s = max(MIN_BUCKET_S, math.ceil(span / buckets))
    count = max(1, math.ceil(span / bucket_s) + 1)
    times = [start + datetime.timedelta(seconds=i * bucket_s) for i in range(count)]

    signals = SignalRecord.objects.filter(attack_id=attack.pk, received_at__gte=start).exclude(phase="end")
    attack_bps = _bucketed(signals.values_list("received_at", "bps"), start, bucket_s, count, "max")

    action_ids = Action.objects.filter(mitigation=mitigation, kind=ActionKindChoices.FLOWSPEC).values_list(
        "pk", flat=True)
    dropped = [
        _bucketed(((r.at, r.dropped_bps) for r in counter_rates(samples)), start, bucket_s, count, "mean")
        for samples in _samples_by_series(action_ids).values()
    ]
    center_rows: dict[tuple[int, str], list[tuple[datetime.datetime, int, int]]] = defaultdict(list)
    for center_id, prefix, at, center_dropped, center_clean in CenterPrefixSample.objects.filter(
            mitigation=mitigation, at__gte=start).order_by("at", "id").values_list(
            "center_id", "prefix", "at", "dropped_bps", "clean_bps")[:SAMPLES_LIMIT]:
        center_rows[(center_id, str(prefix))].append((at, center_dropped, center_clean))
    scrubbed = [_bucketed(((at, s) for at, s, _ in rows), start, bucket_s, count, "mean")
                for rows in center_rows.values()]
    clean = [_bucketed(((at, c) for at, _, c in rows), start, bucket_s, count, "mean")
             for rows in center_rows.values()]
    markers = [(moment, label) for moment, label in ((mitigation.activated_at, "mitigation active"),
                                                     (mitigation.ended_at, "mitigation ended")) if moment]
    return TrafficSeries(start, bucket_s, times, attack_bps, _summed(dropped, count), _summed(scrubbed, count),
                         _summed(clean, count), mitigation.activated_at, mitigation.ended_at, markers)


# ----------------------------------------------------------------------------------------------------- candidates

STATUS_WORDS = {
    NOT_ALLOWED: "diversion not possible for this attack",
    UNHEALTHY: "unhealthy or its data too old",
    NO_UPSTREAM: "no healthy upstream to announce through",
    NO_NEXT_HOP: "no next hop for this address family",
    NO_LATENCY: "no latency measurement to the tenant",
    TOO_FAR: "latency over the tenant's threshold",
    NO_HEADROOM: "not enough headroom",
}


@dataclass(frozen=True)
class CandidateCenter:
    """One center the engine compared for a decision, with the figures it used (None where not recorded)."""

    center_id: int | None
    name: str
    status: int | None
    chosen: bool
    headroom_gbps: float | None
    headroom_mpps: float | None
    latency_ms: float | None
    threshold_ms: float | None
    cost: float | None
    stale: bool
    why: str

    @property
    def within_threshold(self) -> bool | None:
        if self.latency_ms is None or self.threshold_ms is None:
            return None
        return self.latency_ms <= self.threshold_ms


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _why(view: dict[str, Any], chosen: bool, decision: Decision, chosen_cost: float | None) -> str:
    """Chosen, or why not, in words."""
    status = view.get("status")
    if chosen:
        return "chosen"
    if isinstance(status, int) and status in STATUS_WORDS:
        return STATUS_WORDS[status]
    cost = _number(view.get("cost"))
    if decision.level != MitigationLevelChoices.DIVERSION:
        label = MitigationLevelChoices(decision.level).label if decision.level in MitigationLevelChoices.values \
            else decision.level
        better = f" (cost {chosen_cost:.1f} against {cost:.1f})" if cost is not None and chosen_cost is not None \
            else ""
        return f"{label} was the better option{better}"
    if cost is not None and chosen_cost is not None:
        return f"costs more ({cost:.1f} against {chosen_cost:.1f})"
    return "not chosen" if status in (CENTER_OK, None) else f"status {status}"


def candidate_centers(decision: Decision) -> list[CandidateCenter]:
    """The centers the engine compared for `decision`, side by side, from what `Decision.inputs` recorded
    (mitigation.engine.planner._inputs). Old decisions without candidates give an empty list; missing fields
    give None."""
    inputs = decision.inputs if isinstance(decision.inputs, dict) else {}
    views = [view for view in inputs.get("candidates") or () if isinstance(view, dict)]
    if decision.level == MitigationLevelChoices.DIVERSION:
        chosen_cost = next((_number(v.get("cost")) for v in views if v.get("center") == decision.center_id), None)
    else:
        costs = inputs.get("option_costs") if isinstance(inputs.get("option_costs"), dict) else {}
        chosen_cost = _number(costs.get(decision.level)) if costs else None
    candidates = []
    for view in views:
        chosen = decision.level == MitigationLevelChoices.DIVERSION and view.get("center") == decision.center_id \
            and decision.center_id is not None
        status = view.get("status")
        candidates.append(CandidateCenter(
            center_id=view.get("center") if isinstance(view.get("center"), int) else None,
            name=str(view.get("name") or view.get("center") or "?"),
            status=status if isinstance(status, int) else None, chosen=chosen,
            headroom_gbps=_number(view.get("headroom_gbps")), headroom_mpps=_number(view.get("headroom_mpps")),
            latency_ms=_number(view.get("latency_ms")), threshold_ms=_number(view.get("threshold_ms")),
            cost=_number(view.get("cost")), stale=bool(view.get("stale")),
            why=_why(view, chosen, decision, chosen_cost),
        ))
    return candidates


# ------------------------------------------------------------------------------------------------------- rule hits


@dataclass(frozen=True)
class NeverMatchedRule:
    """A FlowSpec rule of a live mitigation whose counters, read on the routers, never matched a packet."""

    action_id: int
    mitigation_id: int
    tenant: str
    target: str
    rule: str
    installed_at: datetime.datetime
    samples: int
    elements: int
    last_read_at: datetime.datetime


@dataclass(frozen=True)
class RuleLimitUse:
    """FlowSpec rules placed on a router or sent to an upstream, against its limit."""

    kind: str  # router or upstream
    name: str
    rules: int
    limit: int

    @property
    def ratio(self) -> float:
        return self.rules / self.limit if self.limit else 0.0

    @property
    def near(self) -> bool:
        return self.limit > 0 and self.ratio >= NEAR_LIMIT


@dataclass(frozen=True)
class RuleHitStats:
    never_matched: list[NeverMatchedRule]
    limits: list[RuleLimitUse]
    older_than: datetime.timedelta
    near_ratio: float = NEAR_LIMIT

    @property
    def near_limit(self) -> list[RuleLimitUse]:
        return [use for use in self.limits if use.near]


def _never_matched(older_than: datetime.timedelta, now: datetime.datetime, limit: int) -> list[NeverMatchedRule]:
    rows = (
        Action.objects.filter(kind=ActionKindChoices.FLOWSPEC, status=ActionStatusChoices.DESIRED,
                              mitigation__state__in=CARRIED_STATES, created_at__lte=now - older_than)
        .annotate(most=Max("counter_samples__packets"), samples=Count("counter_samples"),
                  elements=Count("counter_samples__element", distinct=True), last_read=Max("counter_samples__at"),
                  first_read=Min("counter_samples__at"))
        .filter(samples__gt=0, most=0)
        .select_related("mitigation__attack", "mitigation__tenant")
        .order_by("created_at", "id")[:limit]
    )
    return [
        NeverMatchedRule(row.pk, row.mitigation_id, row.mitigation.tenant.slug, str(row.mitigation.attack.target),
                         route_text(row.spec), row.created_at, row.samples, row.elements,
                         row.last_read)
        for row in rows
    ]


def _limit_uses() -> list[RuleLimitUse]:
    """Rules each router carries (its present FlowSpec deployments) and each upstream is sent (the carried actions
    that name it), against `Router.flowspec_rule_limit` and `UpstreamPeer.flowspec_rule_limit`."""
    placed = dict(
        Deployment.objects.filter(action__kind=ActionKindChoices.FLOWSPEC, state=DeploymentStateChoices.PRESENT,
                                  element__startswith="router:")
        .values_list("element").annotate(n=Count("action_id", distinct=True)).order_by()
    )
    uses = [RuleLimitUse("router", name, placed.get(f"router:{name}", 0), limit)
            for name, limit in Router.objects.filter(enabled=True).values_list("name", "flowspec_rule_limit")]
    sent: dict[str, int] = defaultdict(int)
    for targets in Action.objects.filter(kind=ActionKindChoices.FLOWSPEC, status=ActionStatusChoices.DESIRED,
                                         mitigation__state__in=CARRIED_STATES).values_list("targets", flat=True):
        for target in targets:
            if target.startswith("peer:"):
                sent[target] += 1
    uses += [RuleLimitUse("upstream", name, sent.get(f"peer:{pk}", 0), limit)
             for pk, name, limit in UpstreamPeer.objects.filter(flowspec_accepted=True).values_list(
                 "pk", "name", "flowspec_rule_limit")]
    return sorted(uses, key=lambda use: (-use.ratio, use.kind, use.name))


def rule_hit_stats(*, older_than: datetime.timedelta = NEVER_MATCHED_AFTER, now: datetime.datetime | None = None,
                   limit: int = TIMELINE_LIMIT) -> RuleHitStats:
    """For the SOC: FlowSpec rules of live mitigations installed longer than `older_than` whose counters never
    matched (candidates to drop), and every router and FlowSpec upstream with its rules against its limit."""
    now = now or timezone.now()
    return RuleHitStats(_never_matched(older_than, now, limit), _limit_uses(), older_than)
