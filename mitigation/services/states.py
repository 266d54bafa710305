"""The one way a mitigation changes state: a table of allowed transitions, checked under the row's lock.

detected -> planned -> (awaiting_approval ->) applying -> active -> withdrawing -> ended; failed and rejected end
a mitigation early, and a returning attack brings an ended, failed or rejected mitigation back to detected.

Every caller holds the mitigation's row lock (`select_for_update`, in pk order when it locks several) and calls
`transition()`, which refuses a change the table does not allow, sets the timestamps that go with the new state,
and leaves one audit row and one live event per change. So a planning run that read a mitigation as `active` can
never write `applying` over a withdraw, a rejection or the kill switch that committed meanwhile: planning locks
the rows it plans, and a withdrawn mitigation is not plannable.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import connection
from django.utils import timezone

from core.actors import Actor
from core.events import publish
from core.models import AuditEvent
from mitigation.choices import MitigationStateChoices as S
from mitigation.models import Mitigation
from tenants.models import TenantPolicy

LIVE_STATES = (S.DETECTED, S.PLANNED, S.AWAITING_APPROVAL, S.APPLYING, S.ACTIVE)
FINAL_STATES = (S.ENDED, S.FAILED, S.REJECTED)

ALLOWED: dict[str, frozenset[str]] = {
    S.DETECTED: frozenset({S.PLANNED, S.AWAITING_APPROVAL, S.APPLYING, S.WITHDRAWING, S.ENDED}),
    S.PLANNED: frozenset({S.AWAITING_APPROVAL, S.APPLYING, S.WITHDRAWING, S.ENDED}),
    S.AWAITING_APPROVAL: frozenset({S.PLANNED, S.APPLYING, S.REJECTED, S.WITHDRAWING, S.ENDED}),
    # A new plan for a mitigation already on the network sends it back to applying until the network carries it.
    S.APPLYING: frozenset({S.ACTIVE, S.WITHDRAWING, S.FAILED}),
    S.ACTIVE: frozenset({S.APPLYING, S.WITHDRAWING}),
    S.WITHDRAWING: frozenset({S.ENDED}),
    S.ENDED: frozenset({S.DETECTED}),
    S.FAILED: frozenset({S.DETECTED, S.WITHDRAWING}),
    S.REJECTED: frozenset({S.DETECTED}),
}


class IllegalTransition(Exception):
    def __init__(self, mitigation: Mitigation, target: str) -> None:
        self.mitigation, self.target = mitigation, target
        super().__init__(f"mitigation {mitigation.pk} cannot go from {mitigation.state} to {target}")


def mitigation_event(mitigation: Mitigation) -> dict[str, object]:
    return {
        "mitigation": mitigation.pk, "attack": mitigation.attack_id, "state": mitigation.state,
        "level": mitigation.level, "center": mitigation.center_id, "reason": mitigation.reason,
        "target": str(mitigation.attack.target), "tenant": mitigation.tenant.slug,
    }


def start_hold_down(mitigation: Mitigation, now: datetime.datetime) -> datetime.datetime:
    """The mitigation holds for its tenant's hold-down from `now`, then withdraws (unless something holds it on).
    Returns when the hold-down ends."""
    minutes = TenantPolicy.objects.filter(tenant_id=mitigation.tenant_id).values_list(
        "hold_down_minutes", flat=True).first()
    mitigation.hold_down_until = now + datetime.timedelta(minutes=10 if minutes is None else minutes)
    mitigation.save(update_fields=["hold_down_until", "updated_at"])
    return mitigation.hold_down_until


def allowed(source: str, target: str) -> bool:
    return target in ALLOWED[source]


@dataclass
class Transitions:
    """Changes gathered under one set of row locks and written together: one audit row and one event each.

    Planning moves hundreds of mitigations in one run; this keeps that to one bulk insert of audit rows.
    """

    acting_user: Actor
    now: datetime.datetime = field(default_factory=timezone.now)
    audits: list[AuditEvent] = field(default_factory=list)
    moved: list[Mitigation] = field(default_factory=list)

    def move(self, mitigation: Mitigation, target: str, *, action: str, reason: str = "") -> None:
        """Change the state in memory (the caller saves the row), or raise IllegalTransition."""
        if not connection.in_atomic_block:
            raise RuntimeError("a mitigation changes state only inside a transaction that holds its row lock")
        source = mitigation.state
        if source == target:
            return
        if not allowed(source, target):
            raise IllegalTransition(mitigation, target)
        mitigation.state = target
        if target == S.ACTIVE:
            mitigation.activated_at = mitigation.activated_at or self.now
        elif target in FINAL_STATES:
            mitigation.ended_at = self.now
        elif target == S.DETECTED:
            mitigation.ended_at = None
        self.audits.append(AuditEvent(
            actor_kind=self.acting_user.kind, actor=str(self.acting_user.name),
            tenant_slug=mitigation.tenant.slug, action=action, object_type=Mitigation._meta.label,
            object_id=str(mitigation.pk), reason=reason,
            diff={"state": [source, target], "level": mitigation.level},
        ))
        self.moved.append(mitigation)

    def record(self) -> None:
        """Write the audit rows and publish one event per change (after commit)."""
        AuditEvent.objects.bulk_create(self.audits)
        for mitigation in self.moved:
            publish(f"mitigation.{mitigation.state}", mitigation_event(mitigation),
                    tenant_schema=mitigation.tenant.schema_name)
        self.audits, self.moved = [], []


def transition(mitigation: Mitigation, target: str, *, acting_user: Actor, action: str, reason: str = "",
               now: datetime.datetime | None = None) -> None:
    """Move one locked mitigation to `target`, save it, audit it and publish it; IllegalTransition if not allowed."""
    changes = Transitions(acting_user, now or timezone.now())
    changes.move(mitigation, target, action=action, reason=reason)
    mitigation.save()
    changes.record()


def locked(ids: Iterable[int] | None = None, **filters: object) -> list[Mitigation]:
    """Mitigations locked for a state change, in pk order (two lockers of overlapping sets never deadlock)."""
    rows = Mitigation.objects.select_for_update(of=("self",)).select_related("attack", "tenant")
    if ids is not None:
        rows = rows.filter(pk__in=list(ids))
    return list(rows.filter(**filters).order_by("pk"))
