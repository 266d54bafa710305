"""Reads with permission logic, in one place: a customer sees only rows of its own tenant.

`tenant=None` means a provider operator, who sees every tenant. Views never filter by tenant themselves.
"""

from __future__ import annotations

from django.db.models import QuerySet

from mitigation.models import Action, Attack, Decision, Mitigation
from tenants.models import Tenant


def request_tenant(request: object) -> Tenant | None:
    """The tenant a request is scoped to: its domain's tenant, or None at the provider's public domain."""
    tenant = getattr(request, "tenant", None)
    if tenant is None or tenant.schema_name == "public":
        return None
    return tenant


def attacks_for(tenant: Tenant | None) -> QuerySet[Attack]:
    queryset = Attack.objects.select_related("tenant")
    return queryset if tenant is None else queryset.filter(tenant=tenant)


def mitigations_for(tenant: Tenant | None) -> QuerySet[Mitigation]:
    queryset = Mitigation.objects.select_related("attack", "tenant", "center")
    return queryset if tenant is None else queryset.filter(tenant=tenant)


def actions_for(tenant: Tenant | None) -> QuerySet[Action]:
    queryset = Action.objects.select_related("mitigation")
    return queryset if tenant is None else queryset.filter(mitigation__tenant=tenant)


def decisions_for(tenant: Tenant | None) -> QuerySet[Decision]:
    queryset = Decision.objects.select_related("mitigation", "center")
    return queryset if tenant is None else queryset.filter(mitigation__tenant=tenant)
