"""The timeline: signals, decisions, audited state changes, deployments and verdicts in one ordered list."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from django.db.models import F, Q, Window
from django.db.models.functions import Lag

from core.models import AuditEvent
from mitigation.choices import MitigationStateChoices
from mitigation.models import Attack, Decision, Deployment, Mitigation, SignalRecord, Verdict
from mitigation.story.text import rate_text, route_text

TIMELINE_LIMIT = 200
# Phase changes of a long attack: at most this many signal entries besides the first and the peak.
SIGNAL_CHANGES_LIMIT = 50
ESCALATIONS = ("mitigation.escalate", "mitigation.escalate_by_evidence")
WITHDRAWALS = ("mitigation.withdraw", "mitigation.panic", "mitigation.hold_down_over")


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


def _signal_entries(mitigation: Mitigation) -> list[TimelineEntry]:
    """The first signal, each detector's phase changes and the peak: not every one of hundreds of updates."""
    signals = SignalRecord.objects.filter(attack_id=mitigation.attack_id)
    first = signals.order_by("received_at", "id").first()
    if first is None:
        return []
    peak = signals.order_by("-bps", "received_at").first()
    # Each detector's phase changes, the latest SIGNAL_CHANGES_LIMIT of them (a pulse wave starts and ends often).
    order = [F("received_at"), F("id")]
    changes = list(
        signals.annotate(previous=Window(Lag("phase"), partition_by=[F("detector")], order_by=order))
        .filter(~Q(previous=F("phase")) | Q(previous__isnull=True))
        .order_by("-received_at", "-id")[:SIGNAL_CHANGES_LIMIT]
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
