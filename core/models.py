"""The audit log every app writes to (public schema)."""

from __future__ import annotations

from django.db import models


class AuditEvent(models.Model):
    """One change, by whom and why, with its diff. Append-only: a database trigger refuses UPDATE and DELETE.

    Tenants are named by slug rather than by foreign key so that the record outlives the tenant.
    """

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor_kind = models.CharField(max_length=20)
    actor = models.CharField(max_length=200)
    tenant_slug = models.CharField(max_length=50, blank=True, db_index=True)
    action = models.CharField(max_length=100, db_index=True)
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=100, blank=True)
    reason = models.TextField(blank=True)
    diff = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "mitigation_auditevent"  # moved from mitigation; the table and its trigger kept their names
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action}"
