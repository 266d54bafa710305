"""The append-only audit: every change to what Sluice protects or announces leaves one row."""

from __future__ import annotations

from typing import Any

from django.db import models

from core.actors import Actor
from core.models import AuditEvent


def record_audit(
    actor: Actor,
    action: str,
    *,
    tenant_slug: str = "",
    obj: models.Model | None = None,
    reason: str = "",
    diff: dict[str, Any] | None = None,
) -> AuditEvent:
    """Write one audit row in the caller's transaction, so it exists exactly when the change does."""
    return AuditEvent.objects.create(
        actor_kind=actor.kind,
        actor=str(actor.name),
        tenant_slug=tenant_slug or actor.tenant_slug,
        action=action,
        object_type=obj._meta.label if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        reason=reason,
        diff=diff or {},
    )
