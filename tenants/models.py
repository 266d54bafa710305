"""Tenancy: the customers of the mitigation provider and the domains their portal answers on (public schema)."""

from __future__ import annotations

import datetime

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django_tenants.models import DomainMixin, TenantMixin
from netfields import CidrAddressField, NetManager

from tenants.choices import TenantStatusChoices
from tenants.customer.choices import ApplicationProfileChoices, AutomationModeChoices


class Tenant(TenantMixin):
    """A customer of the provider: owns protected prefixes, a service profile and users, in its own schema."""

    # Annotated because django-tenants' TenantMixin is untyped, so the stubs cannot infer them.
    name: models.CharField[str, str] = models.CharField(max_length=200)
    slug: models.SlugField[str, str] = models.SlugField(max_length=50, unique=True)
    status: models.CharField[str, str] = models.CharField(max_length=20, choices=TenantStatusChoices.choices,
                                                          default=TenantStatusChoices.ACTIVE)
    created_at: models.DateTimeField[datetime.datetime, datetime.datetime] = models.DateTimeField(auto_now_add=True)
    # Switched on by the tenant's admin: every user of the tenant must sign in with a code, as provider staff do.
    require_two_factor: models.BooleanField[bool, bool] = models.BooleanField(default=False, db_default=False)
    # Bounds the provider sets on the detection thresholds this tenant's users may choose (None: the defaults in
    # settings, SLUICE_THRESHOLD_MIN_BPS and the like). Operators themselves may set any positive threshold.
    threshold_min_bps: models.BigIntegerField[int | None, int | None] = models.BigIntegerField(null=True, blank=True)
    threshold_max_bps: models.BigIntegerField[int | None, int | None] = models.BigIntegerField(null=True, blank=True)
    threshold_min_pps: models.BigIntegerField[int | None, int | None] = models.BigIntegerField(null=True, blank=True)
    threshold_max_pps: models.BigIntegerField[int | None, int | None] = models.BigIntegerField(null=True, blank=True)

    auto_create_schema = True
    auto_drop_schema = True

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_public(self) -> bool:
        return self.schema_name == "public"


class Domain(DomainMixin):
    """A host name that routes requests to one tenant (or, for the provider's own, to the public schema)."""

    class Meta:
        ordering = ["domain"]

    def __str__(self) -> str:
        return self.domain


class VerifiedPrefix(models.Model):
    """The registry of verified prefixes: the only address space Sluice will ever announce or filter.

    Each row mirrors a verified `ProtectedPrefix` of one tenant, with its detection thresholds: `threshold_*` for
    each host, `prefix_threshold_*` for the prefix as a whole (empty ones fall back on the tenant's policy and on
    `collector.prefixes.carpet_multiplier`). PostgreSQL itself refuses two tenants holding
    overlapping prefixes: the migration adds `EXCLUDE USING gist (prefix inet_ops WITH &&, tenant_id WITH <>)`
    (Django's ExclusionConstraint cannot express the inet_ops operator class for this field).
    """

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="verified_prefixes")
    prefix = CidrAddressField(unique=True)
    tenant_prefix_id = models.BigIntegerField(help_text="Id of the ProtectedPrefix in the tenant's schema")
    verified_at = models.DateTimeField(auto_now_add=True)
    verified_by = models.CharField(max_length=200)
    threshold_bps = models.BigIntegerField(null=True, blank=True, help_text="Per-prefix detection threshold")
    threshold_pps = models.BigIntegerField(null=True, blank=True, help_text="Per-prefix detection threshold")
    prefix_threshold_bps = models.BigIntegerField(
        null=True, blank=True, help_text="Prefix-wide (carpet-bombing) threshold; empty: scaled from the host's")
    prefix_threshold_pps = models.BigIntegerField(
        null=True, blank=True, help_text="Prefix-wide (carpet-bombing) threshold; empty: scaled from the host's")

    objects = NetManager()  # type: ignore[django-manager-missing]  # netfields' manager is untyped

    class Meta:
        db_table = "mitigation_verifiedprefix"  # moved from mitigation; the table kept its name
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
        db_table = "mitigation_tenantpolicy"  # moved from mitigation; the table kept its name
        verbose_name_plural = "tenant policies"

    def __str__(self) -> str:
        return f"{self.tenant}: {self.application_profile}, {self.latency_threshold_ms} ms"
