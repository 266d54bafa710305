"""The one base of Sluice's Celery tasks, so that no app needs the Celery app itself (`shared_task(base=...)`)."""

from __future__ import annotations

from tenant_schemas_celery.task import TenantTask


class SluiceTask(TenantTask):
    """Runs in the schema of whoever sent it (tenant-schemas-celery), acknowledged as it starts.

    Acknowledgement follows CELERY_TASK_ACKS_LATE (off, see the settings): every job brings the network to a
    desired state held in PostgreSQL and the reconcile loop runs that again within one cycle, so a job lost with a
    killed worker costs nothing. Every task must be idempotent. (This class used to set `acks_late = True`, which
    silently overrode the setting.)
    """

    abstract = True
