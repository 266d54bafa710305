"""The one base of Sluice's Celery tasks, so that no app needs the Celery app itself (`shared_task(base=...)`)."""

from __future__ import annotations

from tenant_schemas_celery.task import TenantTask


class SluiceTask(TenantTask):
    """Runs in the schema of whoever sent it (tenant-schemas-celery) and is acknowledged only once it has run.

    A worker killed mid-task leaves the message to another (`acks_late`), so every task must be idempotent.
    """

    abstract = True
    acks_late = True
