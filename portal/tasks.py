"""Tasks of the portal itself: a probe that shows which schema a task ran in (used by health checks and tests)."""

from __future__ import annotations

from celery import shared_task
from django.db import connection

from core.tasks import SluiceTask
from tenants.customer.models import ProtectedPrefix


@shared_task(base=SluiceTask, bind=True, name="portal.tasks.schema_probe")
def schema_probe(self: SluiceTask) -> dict[str, object]:
    """Report the schema the task ran in and what that schema holds: proves tenant context crosses the broker."""
    schema = connection.schema_name  # type: ignore[attr-defined]  # django-tenants adds it to the connection
    prefixes = [] if schema == "public" else [str(p.prefix) for p in ProtectedPrefix.objects.all()]
    return {"schema": schema, "prefixes": prefixes}
