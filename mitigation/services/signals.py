"""Signals in, by one path: the REST API, the FastNetMon hook and the flow collector all call record_signal()."""

from __future__ import annotations

import datetime
import ipaddress

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from collector.signals import AttackSignal, SignalPhase
from core.actors import Actor
from core.audit import record_audit
from core.events import publish
from mitigation import jobs
from mitigation.choices import AttackStatusChoices, MitigationStateChoices
from mitigation.models import Attack, DetectorReport, Mitigation, SignalRecord
from mitigation.services import states, verdicts
from tenants.choices import TenantStatusChoices
from tenants.models import Tenant, VerifiedPrefix
from tenants.notifications import notify_on_commit

MAX_TOP_SOURCES = 20


def attribute_target(target: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Tenant | None:
    """The tenant whose verified prefix covers the whole target, or None (unattributed: never announced)."""
    registry = VerifiedPrefix.objects.filter(prefix__net_contains_or_equals=target).select_related("tenant").first()
    return registry.tenant if registry else None


def attack_event(attack: Attack) -> dict[str, object]:
    return {
        "attack": attack.pk, "target": str(attack.target), "vectors": attack.vectors, "bps": attack.bps,
        "pps": attack.pps, "status": attack.status, "tenant": attack.tenant.slug if attack.tenant else None,
    }


def record_signal(signal: AttackSignal, *, acting_user: Actor) -> Attack | None:
    """Record one signal: create or update the target's active Attack, or start its end.

    Returns the Attack, or None for an end signal with no active attack on that target. Side effects after
    commit: live events, and a planning job when the attack belongs to a tenant.
    """
    for attempt in range(3):
        try:
            with transaction.atomic():
                return _record(signal, acting_user)
        except IntegrityError:
            # Another signal created the target's attack concurrently: take the update path on the next try.
            if attempt == 2:
                raise
    return None



def _record(signal: AttackSignal, acting_user: Actor) -> Attack | None:
    now = timezone.now()
    target = ipaddress.ip_network(signal.target)
    attack = (Attack.objects.select_for_update(of=("self",)).select_related("tenant")
              .filter(target=target, status=AttackStatusChoices.ACTIVE).first())
    if signal.phase == SignalPhase.END:
        if attack is None:
            return None
        _log(attack, signal, acting_user)
        _report(attack, signal, now)
        if merge_reports(attack, now):
            # Another detector still sees it: this one's word ends its own report, not the attack.
            attack.save(update_fields=_MERGED_FIELDS)
            publish("attack.updated", attack_event(attack), tenant_schema=_schema(attack))
            return attack
        _end_signalled(attack, now)
        return attack
    tenant = attribute_target(target)
    if attack is not None and attack.tenant_id != (tenant.pk if tenant else None):
        _close_for_moved_prefix(attack, tenant, acting_user, now)
        attack = None
    created = attack is None
    if attack is None:
        attack = Attack.objects.create(tenant=tenant, target=target, started_at=now)
    before = (set(attack.vectors), set(attack.top_sources))
    _report(attack, signal, now)
    merge_reports(attack, now)
    if signal.detector not in attack.detectors:
        attack.detectors = [*attack.detectors, signal.detector]
    attack.last_signal_at = now
    attack.end_signalled_at = None
    attack.save(update_fields=[*_MERGED_FIELDS, "detectors", "last_signal_at", "end_signalled_at"])
    replan = created or _changes_the_plan(attack, before)
    _log(attack, signal, acting_user)
    publish("attack.started" if created else "attack.updated", attack_event(attack),
            tenant_schema=tenant.schema_name if tenant else None)
    if tenant is None:
        return attack
    if created:
        notify_on_commit(tenant, "attack_started", attack_event(attack))
    mitigation = None if created else Mitigation.objects.filter(attack=attack).first()
    if mitigation is None:
        if _held_back(attack, tenant, acting_user, created):
            return attack
        mitigation, new = Mitigation.objects.get_or_create(attack=attack, defaults={"tenant": tenant})
        if new:
            verdicts.start_from_last_effective(mitigation)
    if mitigation.hold_down_until is not None:
        mitigation.hold_down_until = None
        mitigation.save(update_fields=["hold_down_until", "updated_at"])
        replan = True
    if mitigation.state in {MitigationStateChoices.ENDED, MitigationStateChoices.FAILED}:
        mitigation = states.locked([mitigation.pk])[0]
        states.transition(mitigation, MitigationStateChoices.DETECTED, acting_user=acting_user,
                          action="mitigation.returned", reason="the attack came back")
        replan = True
    if replan or mitigation.state == MitigationStateChoices.DETECTED:
        attack.planned_bps, attack.planned_pps = attack.bps, attack.pps
        attack.save(update_fields=["planned_bps", "planned_pps"])
        if mitigation.state != MitigationStateChoices.DETECTED:
            Mitigation.objects.filter(pk=mitigation.pk).update(replan=True)
        _schedule_planning()
    return attack


# A change of traffic smaller than this share of what planning last saw is not worth a new planning run: a
# detector's per-second figures wobble, and planning every attack anew for each wobble starves the API.
PLANNING_CHANGE = 0.10


def _changes_the_plan(attack: Attack, before: tuple[set[str], set[str]]) -> bool:
    """Whether this signal may change the attack's plan: new vectors or sources, or traffic moved by 10 % or more."""
    if (set(attack.vectors), set(attack.top_sources)) != before:
        return True
    return any(abs(now - planned) > PLANNING_CHANGE * planned
               for now, planned in ((attack.bps, attack.planned_bps), (attack.pps, attack.planned_pps)))


def _close_for_moved_prefix(attack: Attack, owner: Tenant | None, acting_user: Actor, now: datetime.datetime) -> None:
    """The target's prefix now belongs to another tenant (or to none): the old tenant's attack ends here and the
    signal starts a new one for the owner, so the two tenants' signals, figures and mitigations never mix. The old
    mitigation is withdrawn (its actions also fail the apply-time gate, which no longer finds the prefix its own).
    """
    why = f"the prefix of {attack.target} moved to {owner.slug if owner else 'no tenant'}"
    mitigation = Mitigation.objects.filter(attack=attack).first()
    if mitigation is not None:
        mitigation = states.locked([mitigation.pk])[0]
        if mitigation.state in states.LIVE_STATES:
            states.transition(mitigation, MitigationStateChoices.WITHDRAWING, acting_user=acting_user,
                              action="mitigation.prefix_moved", reason=why, now=now)
            jobs.converge_after_commit()
    attack.status, attack.ended_at = AttackStatusChoices.ENDED, now
    attack.save(update_fields=["status", "ended_at"])
    record_audit(acting_user, "attack.prefix_moved", tenant_slug=attack.tenant.slug if attack.tenant else "",
                 obj=attack, reason=why)
    publish("attack.ended", attack_event(attack), tenant_schema=attack.tenant.schema_name if attack.tenant else None)


def _held_back(attack: Attack, tenant: Tenant, acting_user: Actor, created: bool) -> bool:
    """Whether this attack is recorded but not mitigated: a suspended tenant, or one at its cap of live attacks.

    Nothing is dropped: the attack and its signals are stored, audited once and shown to the SOC; a later signal
    mitigates it once the tenant is active again and under its cap.
    """
    if tenant.status != TenantStatusChoices.ACTIVE:
        why = f"tenant {tenant.slug} is {tenant.status}: recorded, not mitigated"
    else:
        cap = int(settings.SLUICE_TENANT_MAX_ATTACKS)
        live = Mitigation.objects.filter(tenant=tenant, state__in=states.LIVE_STATES).count()
        if live < cap:
            return False
        why = f"tenant {tenant.slug} has {live} live mitigations, its cap of {cap}: recorded, not mitigated yet"
    if created:
        record_audit(acting_user, "attack.held_back", tenant_slug=tenant.slug, obj=attack, reason=why)
        publish("attack.held_back", {**attack_event(attack), "reason": why}, tenant_schema=None)
    return True


def _report(attack: Attack, signal: AttackSignal, now: datetime.datetime) -> DetectorReport:
    """Keep this detector's latest word on the attack (its sources stay when a signal carries none)."""
    report = DetectorReport(attack=attack, detector=signal.detector, phase=str(signal.phase), first_seen=now,
                            last_seen=now)
    updated = ["phase", "last_seen"]
    if signal.phase != SignalPhase.END:
        report.vectors = [str(v) for v in signal.vectors]
        report.bps, report.pps = signal.bps, signal.pps
        updated += ["vectors", "bps", "pps"]
        if signal.top_sources:
            report.top_sources = list(signal.top_sources[:MAX_TOP_SOURCES])
            updated.append("top_sources")
    # One statement: the first report of this detector on the attack, or its latest word over the one before.
    DetectorReport.objects.bulk_create([report], update_conflicts=True, unique_fields=["attack", "detector"],
                                       update_fields=updated)
    return report


# What merge_reports sets on the attack.
_MERGED_FIELDS = ["bps", "pps", "peak_bps", "peak_pps", "vectors", "top_sources"]


def merge_reports(attack: Attack, now: datetime.datetime) -> list[DetectorReport]:
    """The attack's figures from its detectors' live reports; returns the live ones (none: every detector ended
    it or went silent).

    The rule: bps and pps are the largest among the live reports, because detectors see the attack at different
    points and with different sampling (a flow collector on the edge, FastNetMon behind it, a partner's detector),
    a detector that sees less (or reports no figures, as FastNetMon's unban) never lowers another's, and capacity
    planning must hold what the largest live view says. Vectors are the union of every report's. Sources come from
    the live report that saw the most traffic and named some. Live: not ended, and heard from within
    SLUICE_SIGNAL_EXPIRY_MINUTES.
    """
    silent_after = now - datetime.timedelta(minutes=settings.SLUICE_SIGNAL_EXPIRY_MINUTES)
    reports = list(DetectorReport.objects.filter(attack=attack))
    live = [r for r in reports if r.phase != SignalPhase.END and r.last_seen >= silent_after]
    if not live:
        return []
    attack.bps, attack.pps = max(r.bps for r in live), max(r.pps for r in live)
    attack.peak_bps, attack.peak_pps = max(attack.peak_bps, attack.bps), max(attack.peak_pps, attack.pps)
    attack.vectors = sorted(set(attack.vectors).union(*(r.vectors for r in reports if r.phase != SignalPhase.END)))
    sourced = [r for r in live if r.top_sources]
    if sourced:
        attack.top_sources = list(max(sourced, key=lambda r: (r.bps, r.pps)).top_sources)
    return live


def _schema(attack: Attack) -> str | None:
    return attack.tenant.schema_name if attack.tenant else None


def _log(attack: Attack, signal: AttackSignal, acting_user: Actor) -> None:
    SignalRecord.objects.create(
        attack=attack, phase=str(signal.phase), detector=signal.detector, vectors=[str(v) for v in signal.vectors],
        bps=signal.bps, pps=signal.pps, actor=str(acting_user),
    )


def _end_signalled(attack: Attack, now: datetime.datetime) -> None:
    """The attack is over by its detector's word: its mitigation holds for the tenant's hold-down, then withdraws."""
    attack.end_signalled_at = now
    attack.save(update_fields=["end_signalled_at"])
    mitigation = Mitigation.objects.filter(attack=attack).first()
    if mitigation is None:
        attack.status, attack.ended_at = AttackStatusChoices.ENDED, now
        attack.save(update_fields=["status", "ended_at"])
        publish("attack.ended", attack_event(attack), tenant_schema=None)
        return
    states.start_hold_down(mitigation, now)
    publish("attack.end_signalled", {**attack_event(attack), "hold_down_until": mitigation.hold_down_until},
            tenant_schema=mitigation.tenant.schema_name)
    _schedule_lifecycle()


def _schedule_planning() -> None:
    jobs.plan_after_commit()


def _schedule_lifecycle() -> None:
    jobs.lifecycle_tick_after_commit()
