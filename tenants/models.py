"""Tenancy: the customers of the mitigation provider and the domains their portal answers on (public schema)."""

from __future__ import annotations

from django.db import models
from django_tenants.models import DomainMixin, TenantMixin

from tenants.choices import TenantStatusChoices


class Tenant(TenantMixin):
    """A customer of the provider: owns protected prefixes, a service profile and users, in its own schema."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=50, unique=True)
    status = models.CharField(max_length=20, choices=TenantStatusChoices.choices, default=TenantStatusChoices.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)

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
