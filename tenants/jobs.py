"""Jobs of tenants, sent by name: the only place that knows the notification task's name and "after commit"."""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app
from django.db import transaction
from kombu.exceptions import OperationalError

logger = logging.getLogger(__name__)

# The name the task routes refer to: never change it.
NOTIFY_TENANT = "tenants.tasks.notify_tenant_task"


def notify_after_commit(tenant_id: int, event_kind: str, payload: dict[str, Any]) -> None:
    """Send the notification job once the caller's transaction commits (at once outside one); never raises."""
    transaction.on_commit(lambda: _enqueue(tenant_id, event_kind, payload))


def _enqueue(tenant_id: int, event_kind: str, payload: dict[str, Any]) -> None:
    try:
        current_app.signature(NOTIFY_TENANT, args=(tenant_id, event_kind, payload)).apply_async()
    except (OperationalError, OSError) as error:
        logger.warning("could not enqueue %s notification for tenant %s: %s", event_kind, tenant_id, error)
