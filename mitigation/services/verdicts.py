"""The closed loop: what the network drops, whether each mitigation works, and what to do when it does not.

Four sources of evidence, each kept as a time series:
- FlowSpec counters read from the routers (`read_rule_counters`: one `RuleCounterSample` per action and router per
  read; a router that cannot be read leaves a gap, never a zero);
- scrubbing centers' per-prefix reports (`CenterPrefixSample`, written by `center_reports`);
- the detectors' view of the attack (the Attack's figures: what still reaches the target after the filters);
- the flow records' own word on what the network dropped toward the target (v9/IPFIX forwardingStatus), which
  the collectors keep per host and second in Redis (`flow_evidence`; a second without data is a gap, never a
  zero). It is the same traffic the rules' counters count, seen from the exporters: the larger
  of the two counts as what the filters drop, never their sum (`Evidence.filtered_bps`).

`judge` turns them into a verdict a person can read ("FlowSpec dropped 38.2 of 40.0 Gbps; 1.8 Gbps still reaches
203.0.113.10"). An ineffective or partial mitigation is escalated one step, on evidence that held for
`SLUICE_ESCALATE_CONFIRM_SECONDS` after the settle time, never back down while the attack lasts, so plans never
flap (`_escalate`). And the end of an attack is judged by all the evidence: a mitigation whose rules or center still
drop attack traffic is not withdrawn whatever the collector sees behind the filter (`holding_back`, used by the
lifecycle's hold-down). A returning attack starts from the level that last proved effective
(`start_from_last_effective`).
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone

from core.actors import CLOSED_LOOP
from core.audit import record_audit
from core.events import publish
from devices.drivers.base import DriverError, FlowSpecRule, RuleCounters
from devices.health import due
from devices.models import Router
from devices.services import driver_for
from mitigation import jobs
from mitigation.choices import (
    ActionKindChoices,
    ActionStatusChoices,
    MitigationLevelChoices,
    MitigationStateChoices,
    VerdictChoices,
)
from mitigation.models import Action, CenterPrefixSample, Mitigation, RuleCounterSample, Verdict
from mitigation.routes import route_from_spec, without_neighbors
from mitigation.services import states
from mitigation.services.flow_evidence import network_dropped_toward_targets
from mitigation.services.states import mitigation_event
from mitigation.story.counters import Sample, counter_rates
from mitigation.story.text import rate_text
from tenants.models import TenantPolicy, VerifiedPrefix

logger = logging.getLogger(__name__)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

CARRIED = (MitigationStateChoices.APPLYING, MitigationStateChoices.ACTIVE)
LADDER = {
    MitigationLevelChoices.FLOWSPEC: MitigationLevelChoices.DIVERSION,
    MitigationLevelChoices.DIVERSION: MitigationLevelChoices.RTBH,
}
# A detector's second closes and its report travels: a figure reported this soon after a plan took effect may
# still describe the traffic from before it.
REPORT_LAG_SECONDS = 2.0
# Dropped traffic that makes a mitigation "partial" rather than "ineffective": this share of what arrives.
PARTIAL_SHARE = 0.10


def _seconds(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def poll_interval() -> float:
    return _seconds("SLUICE_COUNTER_POLL_SECONDS", 2.0)


# ---------------------------------------------------------------------------------------------------------------
# Counters from the routers


def _edge_rules() -> dict[str, tuple[Action, FlowSpecRule]]:
    """FlowSpec rules the edge routers should carry now, by the name routers know them by (neighbors aside)."""
    rules: dict[str, tuple[Action, FlowSpecRule]] = {}
    actions = Action.objects.filter(kind=ActionKindChoices.FLOWSPEC, status=ActionStatusChoices.DESIRED,
                                    mitigation__state__in=[*CARRIED, MitigationStateChoices.WITHDRAWING])
    for action in actions:
        if "edge" not in action.targets:
            continue
        rule = without_neighbors(route_from_spec(action.spec))
        if isinstance(rule, FlowSpecRule):
            rules[rule.name] = (action, rule)
    return rules


def _read(router: Router, rules: list[FlowSpecRule]) -> tuple[datetime.datetime, dict[str, RuleCounters]]:
    """The router's counters, with the moment it gave them: rates divide by the time between two answers."""
    try:
        with driver_for(router, timeout=max(2, int(poll_interval() * 2))) as driver:
            counters = driver.flowspec_counters(rules)
            return timezone.now(), counters
    finally:
        db_connection.close()  # a pool thread gives back the connection host-key checks may have taken


def read_rule_counters() -> dict[str, str]:
    """Read every carried FlowSpec rule's counters on every edge router that may be read; store one sample per
    rule shown, at the moment the router answered. Returns the routers that could not be read, with why (their
    series get a gap)."""
    rules = _edge_rules()
    if not rules:
        return {}
    routers = {f"router:{r.name}": r for r in Router.objects.filter(enabled=True, role="edge")}
    readable = due(routers)
    failed = {name: "not read: in maintenance or waiting for its retry" for name in set(routers) - readable}
    wanted = [rule for _, rule in rules.values()]
    samples: list[RuleCounterSample] = []
    # Not a `with` block: leaving one waits for every thread, so one hanging router would hold up the judging of
    # all the others until its driver timed out. A late read ends on its own (its thread closes its connection).
    pool = ThreadPoolExecutor(max_workers=min(8, max(1, len(readable))))
    futures = {pool.submit(_read, routers[name], wanted): name for name in sorted(readable)}
    done, late = wait(futures, timeout=poll_interval() * 3)
    pool.shutdown(wait=False, cancel_futures=True)
    for future in late:
        failed[futures[future]] = "no answer in time"
    for future in done:
        name = futures[future]
        try:
            answered, shown = future.result()
        except DriverError as error:  # unreachable, or no counters on this platform (UnsupportedError)
            failed[name] = str(error)
            continue
        for rule_name, counters in shown.items():
            if rule_name in rules:
                samples.append(RuleCounterSample(
                    action=rules[rule_name][0], element=name, at=answered, packets=counters.packets,
                    bytes=counters.bytes, dropped_packets=counters.dropped_packets,
                    dropped_bytes=counters.dropped_bytes))
    RuleCounterSample.objects.bulk_create(samples)
    for name, why in failed.items():
        logger.info("FlowSpec counters of %s not read: %s", name, why)
    return failed


# ---------------------------------------------------------------------------------------------------------------
# Evidence and verdicts


@dataclass
class Evidence:
    """What the network says about one mitigation now; rates in bits (packets) per second."""

    attack_bps: int = 0
    matched_bps: int = 0
    dropped_bps: int = 0
    scrubbed_bps: int = 0
    clean_bps: int = 0
    threshold_bps: int = 0
    counters_read: bool = False
    center_reported: bool = False
    collector_ended: bool = False
    # Whether `attack_bps` was reported since the current plan took effect. A detector's figure from before says
    # nothing about the mitigation, and detectors report a running attack only while it is over threshold: the
    # collector stops reporting an attack that a discard hid from it, long before it signals the end.
    reported_since: bool = False
    per_rule: dict[int, int] = field(default_factory=dict)
    # What the flow records marked dropped or consumed toward the target (mean of the seconds with data), and
    # whether any second of the window had data.
    network_dropped_bps: int = 0
    flows_read: bool = False
    # Whether evidence is to be expected at all: FlowSpec rules on the edge routers (counters), a diversion to a
    # center that sends per-prefix reports.
    expects_counters: bool = False
    expects_center: bool = False

    @property
    def filtered_bps(self) -> int:
        """What the network's filters drop: the rules' counters and the flow records see the same traffic."""
        return max(self.dropped_bps, self.network_dropped_bps)

    def as_json(self) -> dict[str, object]:
        return {
            "attack_bps": self.attack_bps, "matched_bps": self.matched_bps, "dropped_bps": self.dropped_bps,
            "scrubbed_bps": self.scrubbed_bps, "clean_bps": self.clean_bps, "threshold_bps": self.threshold_bps,
            "network_dropped_bps": self.network_dropped_bps, "counters_read": self.counters_read,
            "center_reported": self.center_reported, "flows_read": self.flows_read,
            "collector_ended": self.collector_ended, "reported_since_plan": self.reported_since,
            "dropped_bps_per_action": {str(k): v for k, v in self.per_rule.items()},
        }


def _counter_rates(action_ids: Iterable[int], now: datetime.datetime) -> dict[int, tuple[int, int]]:
    """Per action: (matched, dropped) bits per second, summed over the routers, from each router's last two samples
    in the window (`story.counters.counter_rates`: none across a reinstall, where a cumulative figure went down)."""
    since = now - datetime.timedelta(seconds=poll_interval() * 3 + 1)
    rows = (RuleCounterSample.objects.filter(action_id__in=list(action_ids), at__gte=since, at__lte=now)
            .order_by("action_id", "element", "at")
            .values_list("action_id", "element", "at", "packets", "bytes", "dropped_packets", "dropped_bytes"))
    last_two: dict[tuple[int, str], list[Sample]] = defaultdict(list)
    for action_id, element, at, packets, octets, dropped_packets, dropped_bytes in rows:
        pair = last_two[(action_id, element)]
        pair.append(Sample(at, packets, octets, dropped_packets, dropped_bytes))
        del pair[:-2]
    rates: dict[int, tuple[int, int]] = {}
    for (action_id, _), pair in last_two.items():
        for rate in counter_rates(pair):
            matched, dropped = rates.get(action_id, (0, 0))
            rates[action_id] = (matched + round(rate.matched_bps), dropped + round(rate.dropped_bps))
    return rates


def _center_figures(mitigation_ids: Iterable[int], now: datetime.datetime) -> dict[int, tuple[int, int]]:
    """Per mitigation: (dropped, clean) bits per second from each reported prefix's latest fresh sample."""
    since = now - datetime.timedelta(seconds=_seconds("SLUICE_CENTER_REPORT_FRESH_SECONDS", 30.0))
    latest: dict[tuple[int, str], tuple[int, int]] = {}
    rows = (CenterPrefixSample.objects.filter(mitigation_id__in=list(mitigation_ids), at__gte=since, at__lte=now)
            .order_by("at", "id").values_list("mitigation_id", "prefix", "dropped_bps", "clean_bps"))
    for mitigation_id, prefix, dropped, clean in rows:
        latest[(mitigation_id, str(prefix))] = (dropped, clean)
    figures: dict[int, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for (mitigation_id, _), (dropped, clean) in latest.items():
        total_dropped, total_clean = figures[mitigation_id]
        figures[mitigation_id] = (total_dropped + dropped, total_clean + clean)
    return dict(figures)


def _thresholds(mitigations: list[Mitigation]) -> dict[int, int]:
    """Per mitigation, the per-host detection threshold of its target: its verified prefix's own, else the
    tenant's (one query for each, whatever the number of mitigations)."""
    tenants = {m.tenant_id for m in mitigations}
    policies = dict(TenantPolicy.objects.filter(tenant_id__in=tenants).values_list("tenant_id",
                                                                                   "detection_threshold_bps"))
    own: dict[int, list[tuple[Network, int]]] = defaultdict(list)
    for tenant_id, prefix, bps in VerifiedPrefix.objects.filter(
            tenant_id__in=tenants, threshold_bps__isnull=False).values_list("tenant_id", "prefix", "threshold_bps"):
        own[tenant_id].append((ipaddress.ip_network(str(prefix)), int(bps or 0)))
    found = {}
    for mitigation in mitigations:
        target = ipaddress.ip_network(str(mitigation.attack.target))
        found[mitigation.pk] = next(
            (bps for prefix, bps in own[mitigation.tenant_id]
             if prefix.version == target.version and target.subnet_of(prefix)),  # type: ignore[arg-type]
            int(policies.get(mitigation.tenant_id, settings.SLUICE_THRESHOLD_MIN_BPS)))
    return found


def gather(mitigations: list[Mitigation], *, now: datetime.datetime) -> dict[int, Evidence]:
    """The evidence about each mitigation, in a handful of queries."""
    actions: dict[int, list[int]] = defaultdict(list)
    on_edge: set[int] = set()
    for action_id, mitigation_id, targets in Action.objects.filter(
            mitigation__in=mitigations, kind=ActionKindChoices.FLOWSPEC,
            status=ActionStatusChoices.DESIRED).values_list("id", "mitigation_id", "targets"):
        actions[mitigation_id].append(action_id)
        if "edge" in targets:
            on_edge.add(mitigation_id)
    reporting = set(CenterPrefixSample.objects.filter(at__gte=now - datetime.timedelta(minutes=10))
                    .values_list("center_id", flat=True).distinct())
    rates = _counter_rates([a for ids in actions.values() for a in ids], now)
    centers = _center_figures([m.pk for m in mitigations], now)
    network_dropped = network_dropped_toward_targets(mitigations, now=now, seconds=int(poll_interval() * 3 + 1))
    thresholds = _thresholds(mitigations)
    evidence = {}
    lag = datetime.timedelta(seconds=REPORT_LAG_SECONDS)
    for mitigation in mitigations:
        attack = mitigation.attack
        ended = attack.end_signalled_at is not None or mitigation.hold_down_until is not None
        fresh = not ended and attack.last_signal_at >= _plan_took_effect(mitigation) + lag
        found = Evidence(attack_bps=int(attack.bps) if fresh else 0, threshold_bps=thresholds[mitigation.pk],
                         collector_ended=ended, reported_since=fresh, expects_counters=mitigation.pk in on_edge,
                         expects_center=mitigation.level == MitigationLevelChoices.DIVERSION
                         and mitigation.center_id in reporting)
        for action_id in actions.get(mitigation.pk, []):
            if action_id in rates:
                matched, dropped = rates[action_id]
                found.counters_read = True
                found.matched_bps += matched
                found.dropped_bps += dropped
                found.per_rule[action_id] = dropped
        if mitigation.pk in centers:
            found.center_reported = True
            found.scrubbed_bps, found.clean_bps = centers[mitigation.pk]
        if mitigation.pk in network_dropped:
            found.flows_read = True
            found.network_dropped_bps = network_dropped[mitigation.pk]
        evidence[mitigation.pk] = found
    return evidence


def _target_text(mitigation: Mitigation) -> str:
    """The attack's target as a sentence names it: a host without its /32 or /128."""
    return str(mitigation.attack.target).removesuffix("/32").removesuffix("/128")


def _summary(mitigation: Mitigation, outcome: str, found: Evidence) -> str:
    target = _target_text(mitigation)
    parts = []
    arriving = found.filtered_bps + found.scrubbed_bps + found.attack_bps
    redirected = found.matched_bps - found.dropped_bps
    if found.counters_read and mitigation.level == MitigationLevelChoices.DIVERSION and redirected > 0:
        # FlowSpec redirects into the center's routing instance: they match and pass, the center drops.
        parts.append(f"FlowSpec sent {rate_text(redirected)} to the scrubbing center")
    elif found.counters_read:
        parts.append(f"FlowSpec dropped {rate_text(found.dropped_bps)} of {rate_text(arriving)}")
    if found.network_dropped_bps:
        parts.append(f"the network's flow records show {rate_text(found.network_dropped_bps)} toward {target} "
                     f"dropped")
    if found.center_reported:
        parts.append(f"the scrubbing center dropped {rate_text(found.scrubbed_bps)} and returned "
                     f"{rate_text(found.clean_bps)} clean")
    if found.collector_ended:
        parts.append(f"the detectors no longer see the attack reach {target}")
    elif not found.reported_since:
        parts.append(f"the detectors have not seen it reach {target} over its threshold of "
                     f"{rate_text(found.threshold_bps)} since its {MitigationLevelChoices(mitigation.level).label} plan went in")
    elif found.attack_bps >= found.threshold_bps:
        parts.append(f"{rate_text(found.attack_bps)} still reaches {target} (threshold {rate_text(found.threshold_bps)})")
    else:
        parts.append(f"{rate_text(found.attack_bps)} reaches {target}, under its threshold of "
                     f"{rate_text(found.threshold_bps)}")
    if outcome == VerdictChoices.UNKNOWN:
        parts.append("nothing dropped by its rules or center to judge by yet")
    text = "; ".join(parts)
    return text[:1].upper() + text[1:]


def holds_back(found: Evidence) -> bool:
    """Whether the rules or the center drop attack traffic: SLUICE_HOLDING_SHARE of the threshold or more, which
    would reach the target without the mitigation."""
    dropped = found.filtered_bps + found.scrubbed_bps
    return bool(found.threshold_bps) and dropped >= _seconds("SLUICE_HOLDING_SHARE", 0.5) * found.threshold_bps


def outcome_of(found: Evidence) -> str:
    """Effective: what reaches the target is under its threshold. Partial: it is not, but a real share is being
    dropped. Ineffective: it is not, and next to nothing is dropped. Unknown: nothing to judge by since the plan
    went in."""
    if found.collector_ended:
        return VerdictChoices.EFFECTIVE
    if not found.reported_since:
        # No detector figure since the plan went in: either the plan hid the attack from them (its counters, flow
        # records or center say so), or they have yet to report.
        return VerdictChoices.EFFECTIVE if holds_back(found) else VerdictChoices.UNKNOWN
    if found.attack_bps < found.threshold_bps:
        return VerdictChoices.EFFECTIVE
    dropped = found.filtered_bps + found.scrubbed_bps
    if dropped >= PARTIAL_SHARE * (dropped + found.attack_bps):
        return VerdictChoices.PARTIAL
    return VerdictChoices.INEFFECTIVE


def _plan_took_effect(mitigation: Mitigation) -> datetime.datetime:
    return max(filter(None, [mitigation.activated_at, mitigation.level_since]))


def _settled(mitigation: Mitigation, now: datetime.datetime) -> bool:
    return (now - _plan_took_effect(mitigation)).total_seconds() >= _seconds("SLUICE_VERDICT_SETTLE_SECONDS", 10.0)


def _worth_storing(previous: Verdict | None, outcome: str, found: Evidence, now: datetime.datetime) -> bool:
    """A verdict row when the outcome changes, when a figure moves by a fifth, or once a minute otherwise."""
    if previous is None or previous.outcome != outcome:
        return True
    if (now - previous.at).total_seconds() >= 60:
        return True
    network_dropped = int(previous.evidence.get("network_dropped_bps", 0))
    for before, after in ((previous.attack_bps, found.attack_bps), (previous.dropped_bps, found.dropped_bps),
                          (previous.scrubbed_bps, found.scrubbed_bps), (network_dropped, found.network_dropped_bps)):
        if abs(after - before) > 0.2 * max(before, after, 1):
            return True
    return False


def judge_mitigations(*, now: datetime.datetime | None = None) -> dict[str, int]:
    """Judge every carried mitigation past its settle time; store and publish what changed; escalate on evidence."""
    now = now or timezone.now()
    candidates = [m for m in Mitigation.objects.filter(state__in=CARRIED).select_related("attack", "tenant")
                  if _settled(m, now)]
    counts: dict[str, int] = defaultdict(int)
    if not candidates:
        return dict(counts)
    evidence = gather(candidates, now=now)
    latest = {v.mitigation_id: v for v in Verdict.objects.filter(mitigation__in=candidates).order_by("at", "id")}
    for mitigation in candidates:
        found = evidence[mitigation.pk]
        outcome = outcome_of(found)
        counts[outcome] += 1
        previous = latest.get(mitigation.pk)
        if _worth_storing(previous, outcome, found, now):
            _store(mitigation, outcome, found, now)
        if outcome in {VerdictChoices.PARTIAL, VerdictChoices.INEFFECTIVE} and _escalate(mitigation, found, now):
            counts["escalated"] += 1
    return dict(counts)


def _store(mitigation: Mitigation, outcome: str, found: Evidence, now: datetime.datetime) -> Verdict:
    summary = _summary(mitigation, outcome, found)
    with transaction.atomic():
        verdict = Verdict.objects.create(
            mitigation=mitigation, at=now, outcome=outcome, level=mitigation.level, attack_bps=found.attack_bps,
            dropped_bps=found.dropped_bps, scrubbed_bps=found.scrubbed_bps, threshold_bps=found.threshold_bps,
            summary=summary, evidence=found.as_json())
        Mitigation.objects.filter(pk=mitigation.pk).update(verdict=outcome, verdict_summary=summary, verdict_at=now)
        mitigation.verdict, mitigation.verdict_summary, mitigation.verdict_at = outcome, summary, now
        publish("mitigation.verdict", {**mitigation_event(mitigation), "verdict": outcome, "summary": summary,
                                       "at": now.isoformat(), "evidence": found.as_json()},
                tenant_schema=mitigation.tenant.schema_name)
    return verdict


# ---------------------------------------------------------------------------------------------------------------
# Escalation by evidence


def _next_level(mitigation: Mitigation) -> str | None:
    current = mitigation.override_level or mitigation.level
    step = LADDER.get(MitigationLevelChoices(current)) if current in LADDER else None
    if step is None:
        return None
    policy = TenantPolicy.objects.filter(tenant_id=mitigation.tenant_id).first()
    allowed = set(policy.allowed_actions) if policy else set()
    while step is not None and step not in allowed:
        step = LADDER.get(step)
    return step


def _evidence_held(mitigation: Mitigation, now: datetime.datetime) -> bool:
    """Non-effective verdicts, and nothing else, since at least SLUICE_ESCALATE_CONFIRM_SECONDS ago (counted from
    the current plan: a refined plan, a new level or activation start the clock again)."""
    confirm = datetime.timedelta(seconds=_seconds("SLUICE_ESCALATE_CONFIRM_SECONDS", 4.0))
    plan_since = mitigation.decisions.order_by("-created_at").values_list("created_at", flat=True).first()
    start = max(filter(None, [mitigation.activated_at, mitigation.level_since, plan_since]))
    verdicts = list(mitigation.verdicts.filter(at__gte=start).order_by("at").values_list("at", "outcome"))
    if not verdicts or any(outcome == VerdictChoices.EFFECTIVE for _, outcome in verdicts):
        return False
    return now - verdicts[0][0] >= confirm


def _escalate(mitigation: Mitigation, found: Evidence, now: datetime.datetime) -> bool:
    """One step up the ladder, stated with its evidence, once the evidence held; never down while the attack lasts."""
    if not _evidence_held(mitigation, now):
        return False
    step = _next_level(mitigation)
    if step is None:
        return False
    with transaction.atomic():
        rows = states.locked([mitigation.pk])
        if not rows or rows[0].state not in CARRIED:
            return False
        locked = rows[0]
        if (locked.override_level or locked.level) == step:
            return False
        locked.override_level, locked.override_by, locked.replan = step, str(CLOSED_LOOP), True
        locked.save(update_fields=["override_level", "override_by", "replan", "updated_at"])
        why = (f"escalated from {locked.level} to {step}: {mitigation.verdict_summary or _summary(locked, '', found)}")
        record_audit(CLOSED_LOOP, "mitigation.escalate_by_evidence", tenant_slug=locked.tenant.slug, obj=locked,
                     reason=why, diff={"level": [locked.level, step], "evidence": found.as_json()})
        publish("mitigation.escalated", {**mitigation_event(locked), "to": step, "why": why},
                tenant_schema=locked.tenant.schema_name)
        jobs.plan_after_commit()
    logger.info("mitigation %s: %s", mitigation.pk, why)
    return True


# ---------------------------------------------------------------------------------------------------------------
# The end of an attack, and its return


def holding_back(mitigations: list[Mitigation], *, now: datetime.datetime | None = None) -> dict[int, str]:
    """The mitigations among these whose rules or center still drop attack traffic (so the attack is still there,
    behind the filter), with the evidence in a sentence: the rules' counters, the center's reports, or the flow
    records that mark the target's traffic dropped (which speak for the rules where their counters cannot be read).
    Without the mitigation, the dropped traffic would reach the target: it holds the attack back when what it drops
    is SLUICE_HOLDING_SHARE of the threshold or more."""
    now = now or timezone.now()
    if not mitigations:
        return {}
    # Evidence takes a settle time to gather: a discard that hid the attack from the detectors within seconds of
    # going in has no counter readings yet, and withdrawing it then invites the attack straight back.
    young = datetime.timedelta(seconds=_seconds("SLUICE_VERDICT_SETTLE_SECONDS", 10.0) + 2 * poll_interval())
    activated = {m.pk: m.activated_at for m in mitigations}
    targets = {m.pk: _target_text(m) for m in mitigations}
    held = {}
    for mitigation_id, found in gather(mitigations, now=now).items():
        since = activated.get(mitigation_id)
        waiting = (found.expects_counters and not found.counters_read) or (
            found.expects_center and not found.center_reported)
        if waiting and since is not None and now - since < young:
            held[mitigation_id] = "its counters or center reports have not been read since it went in, and the end waits for them"
            continue
        if holds_back(found):
            sources = [f"its FlowSpec rules drop {rate_text(found.dropped_bps)}"] if found.dropped_bps else []
            if found.network_dropped_bps:
                sources.append(f"the network's flow records show {rate_text(found.network_dropped_bps)} toward "
                               f"{targets[mitigation_id]} dropped")
            if found.scrubbed_bps:
                sources.append(f"its scrubbing center drops {rate_text(found.scrubbed_bps)}")
            held[mitigation_id] = f"{' and '.join(sources)}, so the attack is still there behind the filter"
    return held


def start_from_last_effective(mitigation: Mitigation) -> str:
    """A returning attack on a target whose last mitigation had to be escalated by evidence, and then worked,
    starts at that level at once. Returns the reason, or "" when there is nothing to remember."""
    memory = datetime.timedelta(hours=_seconds("SLUICE_EFFECTIVE_MEMORY_HOURS", 24.0))
    last = (Mitigation.objects.filter(tenant_id=mitigation.tenant_id, attack__target=mitigation.attack.target,
                                      state=MitigationStateChoices.ENDED, ended_at__gte=timezone.now() - memory,
                                      override_by=str(CLOSED_LOOP))
            .exclude(pk=mitigation.pk).order_by("-ended_at").first())
    if last is None or not last.override_level:
        return ""
    proof = last.verdicts.filter(outcome=VerdictChoices.EFFECTIVE, level=last.override_level).order_by("-at").first()
    if proof is None:
        return ""
    mitigation.override_level, mitigation.override_by = last.override_level, str(CLOSED_LOOP)
    mitigation.save(update_fields=["override_level", "override_by", "updated_at"])
    why = (f"the attack on {mitigation.attack.target} returned: starting at {last.override_level}, which proved "
           f"effective in mitigation {last.pk} ({proof.summary})")
    record_audit(CLOSED_LOOP, "mitigation.start_from_last_effective", tenant_slug=mitigation.tenant.slug,
                 obj=mitigation, reason=why, diff={"level": last.override_level, "from_mitigation": last.pk})
    return why


def closed_loop_tick(*, now: datetime.datetime | None = None) -> dict[str, object]:
    """Read the counters, then judge: the periodic job (every SLUICE_COUNTER_POLL_SECONDS)."""
    unread = read_rule_counters()
    judged = judge_mitigations(now=now or timezone.now())  # after the readings, which carry their own times
    return {"unread": sorted(unread), **judged}
