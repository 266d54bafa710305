"""The kill switch: withdraw everything Sluice announced, with or without Celery and Redis.

It sets the switch in PostgreSQL first (so no job re-announces anything), moves every live mitigation to
withdrawing, audits, then converges the network to the empty desired state directly from this process.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from core.actors import Actor
from core.audit import record_audit
from mitigation.choices import DeploymentStateChoices, MitigationStateChoices
from mitigation.models import ControlSwitch, Deployment, Mitigation
from mitigation.services import states
from mitigation.services.network import ConvergeError, ConvergeReport, converge_network
from mitigation.services.states import LIVE_STATES


@dataclass(frozen=True)
class PanicReport:
    mitigations: int
    converge: ConvergeReport | None
    error: str


def panic(*, acting_user: Actor, reason: str) -> PanicReport:
    """Withdraw everything now. Works when Celery or Redis is down: no task, and locks are best effort."""
    with transaction.atomic():
        switch = ControlSwitch.current()
        switch.panic, switch.changed_by, switch.reason = True, str(acting_user), reason
        switch.save()
        # Row locks in pk order: a planning run in flight finishes first, and cannot write over this afterwards.
        changes = states.Transitions(acting_user)
        live = states.locked(state__in=LIVE_STATES)
        for mitigation in live:
            changes.move(mitigation, MitigationStateChoices.WITHDRAWING, action="mitigation.panic", reason=reason)
            mitigation.updated_at = changes.now
        Mitigation.objects.bulk_update(live, ["state", "updated_at"])
        changes.record()
        count = len(live)
        record_audit(acting_user, "panic", reason=reason, diff={"mitigations_withdrawing": count})
    try:
        report = converge_network(acting_user=acting_user, require_locks=False)
    except ConvergeError as error:
        return PanicReport(count, None, str(error))
    # Every reachable element is clean now; the reconcile loop keeps retrying the others while the switch is on.
    unreached = "; ".join(f"{element}: {problem}" for element, problem in report.failed.items())
    return PanicReport(count, report, unreached)


def elements_still_carrying() -> dict[str, int]:
    """Elements that still carry routes Sluice put there (by their deployments), with how many."""
    rows = (Deployment.objects.filter(state=DeploymentStateChoices.PRESENT).values_list("element", flat=True))
    carrying: dict[str, int] = {}
    for element in rows:
        carrying[element] = carrying.get(element, 0) + 1
    return dict(sorted(carrying.items()))


def clear_panic(*, acting_user: Actor, reason: str) -> None:
    """Allow announcements again; attacks still running are planned anew by the next signal or planning run."""
    with transaction.atomic():
        switch = ControlSwitch.current()
        switch.panic, switch.changed_by, switch.reason = False, str(acting_user), reason
        switch.save()
        record_audit(acting_user, "panic.clear", reason=reason)
