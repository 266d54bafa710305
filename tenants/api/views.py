"""The provider's API over tenants (public domain, operators only)."""

from __future__ import annotations

from rest_framework import viewsets

from core.permissions import AdminWrites
from tenants.api.serializers import TenantSerializer
from tenants.models import Tenant


class TenantViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Tenant.objects.exclude(schema_name="public").prefetch_related("domains")
    serializer_class = TenantSerializer
    permission_classes = [AdminWrites]
    filterset_fields = ["slug", "status"]
