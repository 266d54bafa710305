"""The provider's API over tenants (public domain, operators only)."""

from __future__ import annotations

import dataclasses

from django.http import Http404
from django_tenants.utils import schema_context
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from core.permissions import AdminWrites, request_actor
from tenants.api.serializers import TenantSerializer
from tenants.customer.api.serializers import (
    PrefixThresholdsSerializer,
    ProtectedPrefixSerializer,
    ThresholdBoundsSerializer,
)
from tenants.customer.models import ProtectedPrefix
from tenants.models import Tenant
from tenants.services import (
    PrefixThresholds,
    ThresholdBounds,
    set_prefix_thresholds,
    set_threshold_bounds,
    threshold_bounds,
)


class TenantViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Tenant.objects.exclude(schema_name="public").prefetch_related("domains")
    serializer_class = TenantSerializer
    permission_classes = [AdminWrites]
    filterset_fields = ["slug", "status"]

    @extend_schema(request=ThresholdBoundsSerializer, responses=ThresholdBoundsSerializer)
    @action(detail=True, methods=["get", "put"], url_path="threshold-bounds")
    def threshold_bounds(self, request: Request, pk: str | None = None) -> Response:
        """The range within which the tenant's users may set detection thresholds; PUT sets it (admins)."""
        tenant = self.get_object()
        bounds = threshold_bounds(tenant)
        if request.method == "PUT":
            serializer = ThresholdBoundsSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            bounds = set_threshold_bounds(tenant, ThresholdBounds(**serializer.validated_data),
                                          acting_user=request_actor(request))
        return Response(ThresholdBoundsSerializer(dataclasses.asdict(bounds)).data)

    @extend_schema(responses=ProtectedPrefixSerializer(many=True))
    @action(detail=True, methods=["get"])
    def prefixes(self, request: Request, pk: str | None = None) -> Response:
        """The tenant's protected prefixes with their detection thresholds."""
        tenant = self.get_object()
        with schema_context(tenant.schema_name):
            data = ProtectedPrefixSerializer(ProtectedPrefix.objects.all(), many=True).data
        return Response(data)

    @extend_schema(request=PrefixThresholdsSerializer, responses=ProtectedPrefixSerializer)
    @action(detail=True, methods=["put"], url_path=r"prefixes/(?P<prefix_id>\d+)/thresholds")
    def prefix_thresholds(self, request: Request, pk: str | None = None, prefix_id: str | None = None) -> Response:
        """Set a prefix's detection thresholds as the provider: any positive values, not bound by the tenant's
        bounds; a field left out or null goes back to its default."""
        tenant = self.get_object()
        serializer = PrefixThresholdsSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            prefix = set_prefix_thresholds(tenant, int(prefix_id or 0), PrefixThresholds(**serializer.validated_data),
                                           acting_user=request_actor(request))
        except ProtectedPrefix.DoesNotExist:
            raise Http404("no such prefix") from None
        with schema_context(tenant.schema_name):
            data = ProtectedPrefixSerializer(prefix).data
        return Response(data)
