"""The Celery app: tenant-aware, so a task sent inside a tenant's schema runs in that schema on the worker."""

from __future__ import annotations

import os

from celery import signals
from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = CeleryApp("sluice")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# A worker whose consumer cannot come back after the broker restarted (kombu 5.7 fails while closing the old
# connection and leaves the consumer stopped for good, found by bench/chaos.py) is ended, so that its supervisor
# (portal.supervise, as `./sluice run` starts workers) starts a fresh one.
CONSUMER_STUCK_S = float(os.environ.get("SLUICE_WORKER_STUCK_SECONDS", "30"))


@signals.worker_process_init.connect
def _watch_database_pool(**kwargs: object) -> None:
    """Each pool process finds connections a PostgreSQL restart broke within seconds (core.dbpool)."""
    from django.conf import settings

    from core.dbpool import watch_pool

    watch_pool(settings.SLUICE_DB_POOL_CHECK_SECONDS)


@signals.worker_ready.connect
def _watch_consumer(sender: object, **kwargs: object) -> None:
    import logging
    import threading
    import time

    from celery import bootsteps

    logger = logging.getLogger("sluice.worker")
    consumer = sender

    def watch() -> None:
        bad_since: float | None = None
        while True:
            time.sleep(2)
            state = getattr(getattr(consumer, "blueprint", None), "state", None)
            connection = getattr(consumer, "connection", None)
            healthy = state == bootsteps.RUN and connection is not None and bool(connection.connected)
            if healthy:
                bad_since = None
                continue
            bad_since = bad_since or time.monotonic()
            if time.monotonic() - bad_since > CONSUMER_STUCK_S:
                logger.error("the broker consumer has not come back for %.0f s (state %s); ending this worker so "
                             "that a fresh one is started", CONSUMER_STUCK_S, state)
                os._exit(70)

    threading.Thread(target=watch, name="consumer-watchdog", daemon=True).start()
    logger.info("consumer watchdog on: a consumer down for %.0f s ends this worker", CONSUMER_STUCK_S)
