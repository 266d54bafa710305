"""The mitigation lifecycle beyond planning: approvals, rejections, withdrawals, hold-down and expiry.

Every state change goes through `states.transition` under the mitigation's row lock (see states.py for the
table); every change here is audited and published after commit.
"""

from __future__ import annotations

import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.actors import CLOSED_LOOP, ENGINE, Actor
from core.audit import record_audit
from core.errors import ValidationProblem
from core.events import publish
from core.models import AuditEvent
from mitigation import jobs
from mitigation.choices import AttackStatusChoices, MitigationLevelChoices, MitigationStateChoices
from mitigation.models import Mitigation
from mitigation.services import states, verdicts
from mitigation.services.states import LIVE_STATES, mitigation_event


def _locked(mitigation_id: int) -> Mitigation:
    rows = states.locked([mitigation_id])
    if not rows:
        raise Mitigation.DoesNotExist(f"no mitigation {mitigation_id}")
    return rows[0]


def _changed(mitigation: Mitigation, action: str, acting_user: Actor, reason: str = "") -> None:
    """A change that is not a state change (an override): saved, audited and published."""
    mitigation.save()
    record_audit(acting_user, action, tenant_slug=mitigation.tenant.slug, obj=mitigation, reason=reason,
                 diff={"state": mitigation.state, "level": mitigation.level})
    publish(f"mitigation.{mitigation.state}", mitigation_event(mitigation), tenant_schema=mitigation.tenant.schema_name)


def _converge_after_commit() -> None:
    jobs.converge_after_commit()


def approve_mitigation(mitigation_id: int, *, acting_user: Actor, reason: str = "") -> Mitigation:
    """Approve a mitigation awaiting approval; it is applied at once."""
    with transaction.atomic():
        mitigation = _locked(mitigation_id)
        if mitigation.state != MitigationStateChoices.AWAITING_APPROVAL:
            raise ValidationProblem("state", f"only a mitigation awaiting approval can be approved, not {mitigation.state}")
        mitigation.approved_by = str(acting_user)
        mitigation.approval_deadline = None
        states.transition(mitigation, MitigationStateChoices.APPLYING, acting_user=acting_user,
                          action="mitigation.approve", reason=reason)
        _converge_after_commit()
    return mitigation


def reject_mitigation(mitigation_id: int, *, acting_user: Actor, reason: str = "") -> Mitigation:
    """Reject a mitigation awaiting approval: nothing is announced for this attack unless it is planned anew."""
    with transaction.atomic():
        mitigation = _locked(mitigation_id)
        if mitigation.state != MitigationStateChoices.AWAITING_APPROVAL:
            raise ValidationProblem("state", f"only a mitigation awaiting approval can be rejected, not {mitigation.state}")
        states.transition(mitigation, MitigationStateChoices.REJECTED, acting_user=acting_user,
                          action="mitigation.reject", reason=reason)
    return mitigation


def withdraw_mitigation(mitigation_id: int, *, acting_user: Actor, reason: str = "") -> Mitigation:
    """Withdraw a mitigation now (a customer's request or an operator's action), whatever its hold-down."""
    with transaction.atomic():
        mitigation = _locked(mitigation_id)
        if mitigation.state not in LIVE_STATES:
            raise ValidationProblem("state", f"a mitigation in state {mitigation.state} cannot be withdrawn")
        mitigation.withdraw_requested_by = str(acting_user)
        states.transition(mitigation, MitigationStateChoices.WITHDRAWING, acting_user=acting_user,
                          action="mitigation.withdraw", reason=reason)
        _converge_after_commit()
    return mitigation


def lifecycle_tick(*, now: datetime.datetime | None = None) -> dict[str, int]:
    """The timers: approval deadlines, hold-down expiry, and attacks whose signals stopped without an end.

    Returns counts of what moved; schedules a convergence when anything did.
    """
    now = now or timezone.now()
    moved = {"approved": 0, "withdrawing": 0, "expired": 0, "held": 0}
    expiry = datetime.timedelta(minutes=settings.SLUICE_SIGNAL_EXPIRY_MINUTES)
    with transaction.atomic():
        for mitigation in states.locked(state=MitigationStateChoices.AWAITING_APPROVAL, approval_deadline__lte=now):
            mitigation.approved_by = "engine (not rejected within the approval window)"
            mitigation.approval_deadline = None
            states.transition(mitigation, MitigationStateChoices.APPLYING, acting_user=ENGINE,
                              action="mitigation.auto_approve", now=now)
            moved["approved"] += 1
        for mitigation in states.locked(state__in=LIVE_STATES, attack__last_signal_at__lte=now - expiry,
                                        hold_down_until__isnull=True):
            mitigation.hold_down_until = now
            mitigation.save(update_fields=["hold_down_until", "updated_at"])
            moved["expired"] += 1
        due = states.locked(state__in=LIVE_STATES, hold_down_until__lte=now)
        # The end is judged by all the evidence: rules or a center still dropping the attack mean it is still
        # there, behind the filter, whatever the detectors see; the hold-down starts again from now.
        held = verdicts.holding_back([m for m in due if m.state in verdicts.CARRIED], now=now)
        for mitigation in due:
            if mitigation.pk in held:
                _hold_on(mitigation, held[mitigation.pk], now)
                moved["held"] += 1
                continue
            if mitigation.state in {MitigationStateChoices.APPLYING, MitigationStateChoices.ACTIVE}:
                target = MitigationStateChoices.WITHDRAWING
            else:
                target = MitigationStateChoices.ENDED
                mitigation.attack.status, mitigation.attack.ended_at = AttackStatusChoices.ENDED, now
                mitigation.attack.save(update_fields=["status", "ended_at"])
            states.transition(mitigation, target, acting_user=ENGINE, action="mitigation.hold_down_over",
                              reason="the attack ended and the hold-down passed", now=now)
            moved["withdrawing"] += 1
        if moved["approved"] or moved["withdrawing"]:
            _converge_after_commit()
    return moved


def _hold_on(mitigation: Mitigation, evidence: str, now: datetime.datetime) -> None:
    """Keep a mitigation whose hold-down passed but which still holds the attack back: the hold-down again."""
    until = states.start_hold_down(mitigation, now)
    why = f"not withdrawn: {evidence}"
    # Audited when the hold starts, not again at every cycle of a hold-down of 0 minutes (each is published).
    last = (AuditEvent.objects.filter(object_type=Mitigation._meta.label, object_id=str(mitigation.pk))
            .order_by("-pk").values_list("action", flat=True).first())
    if last != "mitigation.hold_extended":
        record_audit(CLOSED_LOOP, "mitigation.hold_extended", tenant_slug=mitigation.tenant.slug,
                     obj=mitigation, reason=why, diff={"hold_down_until": until.isoformat()})
    publish("mitigation.hold_extended", {**mitigation_event(mitigation), "why": why,
                                         "hold_down_until": until.isoformat()},
            tenant_schema=mitigation.tenant.schema_name)


ESCALATION = {
    MitigationLevelChoices.NONE: MitigationLevelChoices.FLOWSPEC,
    MitigationLevelChoices.FLOWSPEC: MitigationLevelChoices.DIVERSION,
    MitigationLevelChoices.DIVERSION: MitigationLevelChoices.RTBH,
}


def _replan_after_commit() -> None:
    jobs.plan_after_commit()


def move_mitigation(mitigation_id: int, *, center_id: int, acting_user: Actor, reason: str = "") -> Mitigation:
    """An operator moves a mitigation to another scrubbing center; planning keeps it there until it ends.

    The operator's word replaces the latency threshold for that center; every safety validator still applies.
    """
    from devices.models import ScrubbingCenter

    with transaction.atomic():
        mitigation = _locked(mitigation_id)
        if mitigation.state not in LIVE_STATES:
            raise ValidationProblem("state", f"a mitigation in state {mitigation.state} cannot be moved")
        center = ScrubbingCenter.objects.filter(pk=center_id).first()
        if center is None:
            raise ValidationProblem("center", "no such scrubbing center")
        mitigation.override_center, mitigation.override_by = center, str(acting_user)
        mitigation.replan = True
        _changed(mitigation, "mitigation.move", acting_user, reason or f"moved to {center.name}")
        _replan_after_commit()
    return mitigation


def escalate_mitigation(mitigation_id: int, *, acting_user: Actor, reason: str = "") -> Mitigation:
    """An operator moves a mitigation one step up the ladder (FlowSpec, diversion, RTBH) and keeps it there."""
    with transaction.atomic():
        mitigation = _locked(mitigation_id)
        if mitigation.state not in LIVE_STATES:
            raise ValidationProblem("state", f"a mitigation in state {mitigation.state} cannot be escalated")
        current = mitigation.override_level or mitigation.level
        if current not in ESCALATION:
            raise ValidationProblem("level", "the mitigation is already at the top of the ladder (RTBH)")
        mitigation.override_level = ESCALATION[MitigationLevelChoices(current)]
        mitigation.override_by = str(acting_user)
        mitigation.replan = True
        _changed(mitigation, "mitigation.escalate", acting_user, reason or f"escalated to {mitigation.override_level}")
        _replan_after_commit()
    return mitigation


# The actions a person may take on a mitigation, by the verb the pages and the API use.
MITIGATION_ACTIONS = {
    "approve": approve_mitigation,
    "reject": reject_mitigation,
    "withdraw": withdraw_mitigation,
    "escalate": escalate_mitigation,
}
