"""The control plane in the public schema: what the engine reads across all tenants at once."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from netfields import CidrAddressField, NetManager

from tenants.customer.choices import ApplicationProfileChoices, AutomationModeChoices


class VerifiedPrefix(models.Model):
    """The registry of verified prefixes: the only address space Sluice will ever announce or filter.

    Each row mirrors a verified `ProtectedPrefix` of one tenant. PostgreSQL itself refuses two tenants holding
    overlapping prefixes: the migration adds `EXCLUDE USING gist (prefix inet_ops WITH &&, tenant_id WITH <>)`
    (Django's ExclusionConstraint cannot express the inet_ops operator class for this field).
    """

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="verified_prefixes")
    prefix = CidrAddressField(unique=True)
    tenant_prefix_id = models.BigIntegerField(help_text="Id of the ProtectedPrefix in the tenant's schema")
    verified_at = models.DateTimeField(auto_now_add=True)
    verified_by = models.CharField(max_length=200)

    objects = NetManager()

    class Meta:
        ordering = ["prefix"]
        verbose_name_plural = "verified prefixes"

    def __str__(self) -> str:
        return str(self.prefix)


class TenantPolicy(models.Model):
    """The public mirror of a tenant's service profile: what routing depends on, readable across tenants.

    Written only by `tenants.services.update_service_profile` (and onboarding), in the same transaction as the
    tenant's own ServiceProfile.
    """

    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.CASCADE, related_name="policy")
    latency_threshold_ms = models.PositiveIntegerField()
    latency_overrides = models.JSONField(default=dict, blank=True, help_text='{"center:fra": 30, "region:eu": 40}')
    application_profile = models.CharField(max_length=20, choices=ApplicationProfileChoices.choices)
    automation_mode = models.CharField(max_length=30, choices=AutomationModeChoices.choices)
    approval_window_minutes = models.PositiveIntegerField()
    allowed_actions = ArrayField(models.CharField(max_length=20))
    hold_down_minutes = models.PositiveIntegerField()
    detection_threshold_bps = models.BigIntegerField()
    detection_threshold_pps = models.BigIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "tenant policies"

    def __str__(self) -> str:
        return f"{self.tenant}: {self.application_profile}, {self.latency_threshold_ms} ms"


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
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action}"
