"""Celery tasks of tenants: customer notifications, sent off the engine's path."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from core.tasks import SluiceTask
from tenants import jobs
from tenants.models import Tenant
from tenants.notifications import notify_tenant

MAX_RETRIES = 3


# Acknowledged once sent, unlike the desired-state jobs: nothing else would send a notification lost with its worker.
@shared_task(base=SluiceTask, bind=True, max_retries=MAX_RETRIES, name=jobs.NOTIFY_TENANT, acks_late=True)
def notify_tenant_task(
    self: Task, tenant_id: int, event_kind: str, payload: dict[str, Any], channel_ids: list[int] | None = None
) -> dict[str, object]:
    """Notify the tenant's channels; channels that failed on connection trouble are retried with backoff.

    A redelivery after a crash may send a message twice; a customer would rather hear twice than not at all.
    """
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        return {"skipped": "no such tenant"}
    result = notify_tenant(tenant, event_kind, payload, channel_ids=channel_ids)
    if result.retryable and self.request.retries < self.max_retries:
        raise self.retry(args=(tenant_id, event_kind, payload, result.retryable),
                         countdown=min(5 * 2 ** self.request.retries, 60))
    outcome: dict[str, object] = {**result.as_dict()}
    return outcome
