"""Element health: each router's and speaker's last push outcome, with exponential backoff after failures.

Convergence asks which elements are due, pushes to those only, and reports each outcome here. A failing element is
retried at `SLUICE_RETRY_BASE_SECONDS * 2^(failures-1)`, at most `SLUICE_RETRY_MAX_SECONDS` apart (an unreachable
router sooner, once its management port answers again), and never holds up or rolls back another element. Changes of state are audited and published to the SOC.
"""

from __future__ import annotations

import datetime
import socket
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.actors import ENGINE, Actor
from core.audit import record_audit
from core.errors import ValidationProblem
from core.events import publish
from devices.choices import ElementHealthStateChoices
from devices.drivers.base import CommitError, ConnectError, DriverTimeoutError, LockError, PortClosedError
from devices.models import ElementHealth, Router


def state_for(error: BaseException) -> str:
    """The health state a driver error means."""
    if isinstance(error, PortClosedError):
        return ElementHealthStateChoices.UNREACHABLE
    if isinstance(error, ConnectError):  # the port answered: a refused login or host key, a session cut short
        return ElementHealthStateChoices.FAILED
    if isinstance(error, DriverTimeoutError | TimeoutError):
        return ElementHealthStateChoices.TIMEOUT
    if isinstance(error, LockError):
        return ElementHealthStateChoices.LOCKED
    if isinstance(error, CommitError):
        return ElementHealthStateChoices.COMMIT_FAILED
    return ElementHealthStateChoices.FAILED


def backoff(failures: int) -> datetime.timedelta:
    base = float(getattr(settings, "SLUICE_RETRY_BASE_SECONDS", 5.0))
    cap = float(getattr(settings, "SLUICE_RETRY_MAX_SECONDS", 300.0))
    return datetime.timedelta(seconds=min(cap, base * 2 ** max(0, failures - 1)))


def due(elements: Iterable[str], now: datetime.datetime | None = None) -> set[str]:
    """The elements convergence should push to now: healthy ones, failed ones whose retry time has come, and
    unreachable routers that answer again (`answering_again`)."""
    now = now or timezone.now()
    names = set(elements)
    waiting = dict(ElementHealth.objects.filter(element__in=names, next_retry_at__gt=now)
                   .values_list("element", "state"))
    back = answering_again({e for e, state in waiting.items() if state == ElementHealthStateChoices.UNREACHABLE})
    resting = set(ElementHealth.objects.filter(element__in=names, maintenance=True).values_list("element", flat=True))
    return names - (set(waiting) - back) - resting


def answering_again(elements: set[str]) -> set[str]:
    """Of these unreachable routers in backoff, those whose management port accepts a connection again.

    A TCP connect and nothing more (no login, no RPC), at most `PROBE_TIMEOUT_SECONDS` each and all at once: the
    backoff spares a router that fails its pushes, but a router back from a power cut or a management-network
    outage is converged at the next cycle, not a backoff later (after a minute down that was 10 s more). Only a
    router whose port was closed when it failed (`PortClosedError`) is probed: one that refuses our login, hangs or
    fails its commit already accepted connections, and its backoff stands (a login retried every cycle could lock
    the account).
    """
    endpoints = {f"router:{name}": (host, port) for name, host, port in Router.objects.filter(
        name__in=[e.removeprefix("router:") for e in elements if e.startswith("router:")]).values_list(
        "name", "mgmt_host", "mgmt_port")}
    if not endpoints:
        return set()
    with ThreadPoolExecutor(max_workers=min(16, len(endpoints))) as pool:
        answers = dict(zip(endpoints, pool.map(_accepts, endpoints.values()), strict=True))
    return {element for element, answered in answers.items() if answered}


PROBE_TIMEOUT_SECONDS = 0.5


def _accepts(endpoint: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(endpoint, timeout=PROBE_TIMEOUT_SECONDS):
            return True
    except OSError:
        return False


def out_of_service() -> set[str]:
    """Elements the engine must not count on: in maintenance, or failing their pushes."""
    rows = ElementHealth.objects.exclude(state=ElementHealthStateChoices.OK, maintenance=False)
    return set(rows.values_list("element", flat=True))


def set_maintenance(element: str, *, on: bool, reason: str, acting_user: Actor) -> ElementHealth:
    """Take an element out of service (it is neither pushed to nor planned on) or put it back; audited.

    A reason is required either way: it is what the next operator on shift reads.
    """
    if not reason.strip():
        raise ValidationProblem("reason", "say why the element goes into or out of maintenance")
    with transaction.atomic():
        row, _ = ElementHealth.objects.select_for_update().get_or_create(element=element)
        row.maintenance, row.maintenance_reason = on, reason.strip()[:300] if on else ""
        if not on:
            row.next_retry_at = None  # back in service: converge it at the next cycle
        row.save()
        record_audit(acting_user, "element.maintenance.on" if on else "element.maintenance.off", obj=row,
                     reason=reason, diff={"element": element})
        publish("element.health", _event(row), tenant_schema=None)
    return row


def health_of(elements: Iterable[str]) -> dict[str, ElementHealth]:
    return {row.element: row for row in ElementHealth.objects.filter(element__in=list(elements))}


def record_push_success(element: str) -> None:
    """The element took its push: back to ok (audited and published when it had been failing)."""
    with transaction.atomic():
        row, _ = ElementHealth.objects.select_for_update().get_or_create(element=element)
        if row.is_ok and row.failures == 0:
            return
        previous = row.state
        row.state, row.last_error, row.failures = ElementHealthStateChoices.OK, "", 0
        row.since, row.next_retry_at = timezone.now(), None
        row.save()
        record_audit(ENGINE, "element.recovered", obj=row, diff={"element": element, "was": previous})
        publish("element.health", _event(row), tenant_schema=None)


def record_push_successes(elements: Iterable[str]) -> None:
    """Every element that took its push: one query when all were healthy already (the usual reconcile cycle)."""
    recovering = ElementHealth.objects.filter(element__in=list(elements)).exclude(
        state=ElementHealthStateChoices.OK, failures=0)
    for element in recovering.values_list("element", flat=True):
        record_push_success(element)


def record_push_failure(element: str, error: BaseException) -> ElementHealth:
    """The element failed its push: mark it, and schedule its next try with backoff."""
    now = timezone.now()
    with transaction.atomic():
        row, _ = ElementHealth.objects.select_for_update().get_or_create(element=element)
        state = state_for(error)
        changed = row.state != state
        if changed:
            row.since = now
        row.state, row.last_error = state, str(error)[:2000]
        row.failures += 1
        row.next_retry_at = now + backoff(row.failures)
        row.save()
        if changed:
            record_audit(ENGINE, "element.failed", obj=row, diff={"element": element, "state": state,
                                                                  "error": row.last_error})
            publish("element.health", _event(row), tenant_schema=None)
    return row


def retry_now(element: str, *, acting_user: Actor) -> None:
    """An operator asks for the element to be tried at the next convergence, whatever its backoff."""
    with transaction.atomic():
        updated = ElementHealth.objects.filter(element=element).update(next_retry_at=None)
        if updated:
            record_audit(acting_user, "element.retry", diff={"element": element})


def _event(row: ElementHealth) -> dict[str, object]:
    return {"element": row.element, "state": row.state, "maintenance": row.maintenance, "since": row.since.isoformat(), "error": row.last_error,
            "next_retry_at": row.next_retry_at.isoformat() if row.next_retry_at else None}
