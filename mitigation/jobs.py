"""The control plane's jobs, sent by name: the only place that knows their names, coalescing and "after commit".

Services call these and never import tasks; tasks call services. Queues come from the task routes in the settings,
which go by these names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from celery import current_app
from django.db import transaction
from kombu.exceptions import OperationalError

from core.redis import redis_client

logger = logging.getLogger(__name__)

# Names a running beat schedule and the task routes refer to: never change them.
PLAN_NETWORK = "mitigation.tasks.plan_network_task"
CONVERGE_NETWORK = "mitigation.tasks.converge_network_task"
LIFECYCLE_TICK = "mitigation.tasks.lifecycle_tick_task"
RECONCILE = "mitigation.tasks.reconcile_task"
PRUNE_HISTORY = "mitigation.tasks.prune_history_task"
CLOSED_LOOP = "mitigation.tasks.closed_loop_task"

# A job's "already queued" mark lives this long at most: a job lost with a killed worker must not hold back the
# next one for longer (found by bench/chaos.py: with 30 s, attacks sent after a worker was killed waited for the
# reconcile loop's stuck check).
QUEUED_TTL_S = 3


def _queued_key(name: str) -> str:
    return f"sluice:queued:{name}"


def enqueue(name: str) -> None:
    """Send a desired-state job unless one is already waiting: a burst of signals becomes one run, not a queue.

    The waiting mark is cleared when the task starts, so a change made after that start sends a new one. When the
    broker is down the failure is logged: the beat's reconcile loop will do the same work later.
    """
    marked = False
    try:
        if not redis_client().set(_queued_key(name), "1", nx=True, ex=QUEUED_TTL_S):
            return
        marked = True
    except (redis.RedisError, OSError) as error:
        logger.warning("coalescing unavailable for %s: %s", name, error)
    try:
        current_app.signature(name).apply_async()
    except (OperationalError, OSError) as error:
        # The mark stands only for a job the broker accepted: a lost send must not hold back the next one.
        if marked:
            mark_started(name)
        logger.warning("could not enqueue %s (%s); the reconcile loop will catch up", name, error)


def mark_started(name: str) -> None:
    """Called by a coalesced task as it starts: from now on a new change needs a new run."""
    try:
        redis_client().delete(_queued_key(name))
    except (redis.RedisError, OSError) as error:
        logger.warning("could not clear the waiting mark of %s: %s", name, error)


def plan_after_commit(*, full: bool = False) -> None:
    """Plan once the caller's transaction commits: the mitigations that asked for it, or (`full`) every live one."""
    if full:
        transaction.on_commit(request_full_plan)
    transaction.on_commit(lambda: enqueue(PLAN_NETWORK))


_FULL_PLAN_KEY = "sluice:plan:full"
_LAST_FULL_PLAN_KEY = "sluice:plan:last-full"


def request_full_plan() -> None:
    """Ask the next planning run to plan every live mitigation together (a change that concerns them all)."""
    try:
        redis_client().set(_FULL_PLAN_KEY, "1", ex=600)
    except (redis.RedisError, OSError) as error:
        logger.warning("could not ask for a full planning run (%s); the reconcile loop's periodic one will do", error)


def take_full_plan_request() -> bool:
    """Whether a full planning run was asked for (and the request is taken); True when Redis cannot say."""
    try:
        return redis_client().getdel(_FULL_PLAN_KEY) is not None
    except (redis.RedisError, OSError):
        return True


def full_plan_due(every_s: float) -> bool:
    """Whether the periodic full planning run is due (at most one per `every_s` across all workers)."""
    try:
        return bool(redis_client().set(_LAST_FULL_PLAN_KEY, "1", nx=True, ex=max(1, int(every_s))))
    except (redis.RedisError, OSError):
        return True


def lifecycle_tick_after_commit() -> None:
    """Run the lifecycle timers once the caller's transaction commits."""
    transaction.on_commit(lambda: enqueue(LIFECYCLE_TICK))


def converge_after_commit(*, announce_first: Callable[[], None] | None = None) -> None:
    """Bring the network to the desired state once the caller's transaction commits.

    `announce_first` runs on commit before the job is sent (the speakers announce new routes at once).
    """
    if announce_first is not None:
        transaction.on_commit(announce_first)
    transaction.on_commit(lambda: enqueue(CONVERGE_NETWORK))


def _rerun_key(name: str) -> str:
    return f"sluice:rerun:{name}"


def request_rerun(name: str) -> None:
    """Ask the run of `name` under way to run once more when it ends (a change came in while it ran)."""
    try:
        redis_client().set(_rerun_key(name), "1", ex=60)
    except (redis.RedisError, OSError) as error:
        logger.warning("could not ask %s to run again (%s); the reconcile loop will catch up", name, error)


def take_rerun(name: str) -> bool:
    """Whether another run of `name` was asked for meanwhile (and the request is taken)."""
    try:
        return redis_client().getdel(_rerun_key(name)) is not None
    except (redis.RedisError, OSError):
        return False
