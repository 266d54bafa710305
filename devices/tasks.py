"""Celery tasks of the inventory: thin wrappers that take ids, call one service and return a small dict.

Telemetry polls are read-only and idempotent: a poll lost with a killed worker is simply the next one.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from core.tasks import SluiceTask
from devices.drivers.base import DriverError
from devices.models import Router
from devices.services import poll_router_telemetry


class TransientDriverError(DriverError):
    """Raised by a task to ask Celery for a retry: the poll failed in a way that may pass."""

    transient = True


@shared_task(base=SluiceTask, autoretry_for=(TransientDriverError,), retry_backoff=5, retry_backoff_max=60,
             max_retries=3, ignore_result=False)
def poll_router_telemetry_task(router_id: int) -> dict[str, Any]:
    """Poll one router; retried with backoff only when the failure was transient (connect, lock, timeout)."""
    router = Router.objects.filter(pk=router_id, enabled=True).first()
    if router is None:
        return {"router_id": router_id, "ok": False, "error": "no such enabled router"}
    result = poll_router_telemetry(router)
    if not result["ok"] and result.get("transient") and poll_router_telemetry_task.request.retries < (poll_router_telemetry_task.max_retries or 0):
        raise TransientDriverError(f"{router.name}: {result['error']}")
    return result


@shared_task(base=SluiceTask)
def poll_all_telemetry() -> dict[str, Any]:
    """Fan out one poll per enabled router that has upstreams to watch."""
    router_ids = list(Router.objects.filter(enabled=True, upstreams__isnull=False).distinct().values_list("pk", flat=True))
    for router_id in router_ids:
        poll_router_telemetry_task.delay(router_id)
    return {"routers": len(router_ids)}

