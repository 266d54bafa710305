"""Celery tasks of the control plane: thin, idempotent (desired-state), acks_late, retried only when it may help."""

from __future__ import annotations

import logging

import redis
from celery import Task
from kombu.exceptions import OperationalError

from core.redis import redis_client
from mitigation.services.lifecycle import lifecycle_tick
from mitigation.services.network import ConvergeError, converge_network, record_failure
from mitigation.services.planning import plan_network
from portal.celery import app

logger = logging.getLogger(__name__)


QUEUED_TTL_S = 30


def _queued_key(task: Task) -> str:
    return f"sluice:queued:{task.name}"


def enqueue(task: Task) -> None:
    """Send a desired-state task unless one is already waiting: a burst of signals becomes one run, not a queue.

    The waiting mark is cleared when the task starts, so a change made after that start sends a new one. When the
    broker is down the failure is logged: the beat's reconcile loop will do the same work later.
    """
    try:
        if not redis_client().set(_queued_key(task), "1", nx=True, ex=QUEUED_TTL_S):
            return
    except (redis.RedisError, OSError) as error:
        logger.warning("coalescing unavailable for %s: %s", task.name, error)
    try:
        task.apply_async()
    except (OperationalError, OSError) as error:
        logger.warning("could not enqueue %s (%s); the reconcile loop will catch up", task.name, error)


def _started(task: Task) -> None:
    try:
        redis_client().delete(_queued_key(task))
    except (redis.RedisError, OSError) as error:
        logger.warning("could not clear the waiting mark of %s: %s", task.name, error)


@app.task(acks_late=True, name="mitigation.tasks.plan_network_task")
def plan_network_task() -> dict[str, int]:
    _started(plan_network_task)
    summary = plan_network()
    return {"planned": summary.planned, "changed": summary.changed, "refused": summary.refused}


@app.task(bind=True, acks_late=True, max_retries=5, name="mitigation.tasks.converge_network_task")
def converge_network_task(self: Task) -> dict[str, object]:
    _started(converge_network_task)
    try:
        report = converge_network()
    except ConvergeError as error:
        final = not error.transient or self.request.retries >= self.max_retries
        record_failure(error, final=final)
        if final:
            return {"error": str(error)}
        raise self.retry(exc=error, countdown=min(2 ** self.request.retries, 30)) from error
    return {"changed": list(report.changed_elements), "activated": report.activated, "ended": report.ended}


@app.task(acks_late=True, name="mitigation.tasks.lifecycle_tick_task")
def lifecycle_tick_task() -> dict[str, int]:
    _started(lifecycle_tick_task)
    return lifecycle_tick()


@app.task(acks_late=True, name="mitigation.tasks.reconcile_task")
def reconcile_task() -> dict[str, object]:
    """Every few seconds: the timers, then the network back to the desired state (repairs any drift)."""
    moved = lifecycle_tick()
    try:
        report = converge_network()
    except ConvergeError as error:
        record_failure(error, final=False)
        return {**moved, "error": str(error)}
    return {**moved, "changed": list(report.changed_elements)}
