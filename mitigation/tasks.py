"""Celery tasks of the control plane: thin, idempotent (desired-state), acknowledged as they start, retried only when it may help."""

from __future__ import annotations

from celery import Task, shared_task
from django.conf import settings
from django.db import DatabaseError

from core.tasks import SluiceTask
from mitigation import jobs
from mitigation.services.lifecycle import lifecycle_tick
from mitigation.services.network import ConvergeError, converge_network, element_locks, record_convergence_failure
from mitigation.services.planning import plan_attacks
from mitigation.services.retention import prune_history
from mitigation.services.verdicts import closed_loop_tick


@shared_task(base=SluiceTask, bind=True, max_retries=5, name=jobs.PLAN_NETWORK)
def plan_network_task(self: Task) -> dict[str, int]:
    jobs.mark_started(jobs.PLAN_NETWORK)
    full = jobs.take_full_plan_request()
    try:
        summary = plan_attacks(full=full)
    except DatabaseError as error:
        if full:
            jobs.request_full_plan()
        raise self.retry(exc=error, countdown=1) from error
    return {"planned": summary.planned, "changed": summary.changed, "refused": summary.refused}


SINGLE_FLIGHT = "job:converge"


@shared_task(base=SluiceTask, bind=True, max_retries=5, name=jobs.CONVERGE_NETWORK)
def converge_network_task(self: Task) -> dict[str, object]:
    """One convergence job at a time: a job that finds another running asks it to run once more and ends.

    Several at once (a burst of plans starts one per device worker) only queue on the element locks, each having
    read and gated the whole desired state, and take the CPU the planning of the next attacks needs.
    """
    jobs.mark_started(jobs.CONVERGE_NETWORK)
    try:
        with element_locks([SINGLE_FLIGHT], required=False, wait_s=0.01) as running:
            if not running:
                jobs.request_rerun(jobs.CONVERGE_NETWORK)
                return {"deferred": True}
            report = converge_network()
            while jobs.take_rerun(jobs.CONVERGE_NETWORK):
                report = converge_network()
        if jobs.take_rerun(jobs.CONVERGE_NETWORK):  # asked for while this run was letting go
            jobs.enqueue(jobs.CONVERGE_NETWORK)
    except ConvergeError as error:
        final = not error.transient or self.request.retries >= self.max_retries
        record_convergence_failure(error, final=final)
        if final:
            return {"error": str(error)}
        raise self.retry(exc=error, countdown=min(2 ** self.request.retries, 30)) from error
    except DatabaseError as error:
        # PostgreSQL went away under the job (a restart): again in a second, not at the next reconcile cycle.
        raise self.retry(exc=error, countdown=1) from error
    return {"changed": list(report.changed_elements), "activated": report.activated, "ended": report.ended}


@shared_task(base=SluiceTask, name=jobs.LIFECYCLE_TICK)
def lifecycle_tick_task() -> dict[str, int]:
    jobs.mark_started(jobs.LIFECYCLE_TICK)
    return lifecycle_tick()


@shared_task(base=SluiceTask, name=jobs.RECONCILE)
def reconcile_task() -> dict[str, object]:
    """Every few seconds: the timers, planning for anything that asked for it (a job lost with a killed worker or
    a restarting broker leaves nothing waiting beyond one cycle; every live attack is planned together once per
    SLUICE_FULL_PLAN_SECONDS, which takes in drifting loads), then the network back to the desired state (repairs
    any drift)."""
    moved = lifecycle_tick()
    # An incremental run with nothing waiting costs two queries: no age threshold is needed to make it cheap.
    plan_attacks(full=jobs.full_plan_due(settings.SLUICE_FULL_PLAN_SECONDS))
    try:
        report = converge_network()
    except ConvergeError as error:
        record_convergence_failure(error, final=False)
        return {**moved, "error": str(error)}
    return {**moved, "changed": list(report.changed_elements)}


@shared_task(base=SluiceTask, name=jobs.PRUNE_HISTORY)
def prune_history_task() -> dict[str, int]:
    return prune_history()


@shared_task(base=SluiceTask, name=jobs.CLOSED_LOOP)
def closed_loop_task() -> dict[str, object]:
    """Every SLUICE_COUNTER_POLL_SECONDS: read the FlowSpec counters, judge each mitigation, escalate on evidence."""
    jobs.mark_started(jobs.CLOSED_LOOP)
    return closed_loop_tick()
