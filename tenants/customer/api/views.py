"""The customer's API for its own prefixes and profile. Every query runs in the tenant's schema only."""

from __future__ import annotations

import dataclasses
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from core.permissions import AdminWrites, request_actor
from tenants.customer.api.serializers import (
    PrefixThresholdsSerializer,
    ProtectedPrefixSerializer,
    ServiceProfileSerializer,
    ThresholdBoundsSerializer,
)
from tenants.customer.models import ProtectedPrefix, ServiceProfile
from tenants.services import (
    PrefixThresholds,
    ProfileInput,
    request_prefix,
    set_prefix_thresholds,
    threshold_bounds,
    update_service_profile,
)


class ProtectedPrefixViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                             viewsets.GenericViewSet):
    """Protected prefixes: a customer admin asks for one; it stays pending until the provider verifies it."""

    queryset = ProtectedPrefix.objects.all()
    serializer_class = ProtectedPrefixSerializer
    permission_classes = [AdminWrites]
    filterset_fields = ["status"]

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        serializer.instance = request_prefix(
            self.request.tenant,  # type: ignore[attr-defined]  # set by django-tenants' middleware
            serializer.validated_data["prefix"],
            description=serializer.validated_data.get("description", ""),
            acting_user=request_actor(self.request),
        )

    @extend_schema(request=PrefixThresholdsSerializer, responses=ProtectedPrefixSerializer)
    @action(detail=True, methods=["get", "put"])
    def thresholds(self, request: Request, pk: str | None = None) -> Response:
        """GET: the prefix with its thresholds and the provider's bounds. PUT: set its thresholds (admins), within
        those bounds; a field left out or null goes back to its default. A refusal is a 400 naming the field."""
        prefix = self.get_object()
        tenant = request.tenant  # type: ignore[attr-defined]  # set by django-tenants' middleware
        if request.method == "PUT":
            serializer = PrefixThresholdsSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            prefix = set_prefix_thresholds(tenant, prefix.pk, PrefixThresholds(**serializer.validated_data),
                                           acting_user=request_actor(request))
        bounds = ThresholdBoundsSerializer(dataclasses.asdict(threshold_bounds(tenant))).data
        return Response({**ProtectedPrefixSerializer(prefix).data, "bounds": bounds})


class ServiceProfileView(APIView):
    """The tenant's service profile; changing it also changes what routing sees, in the same transaction."""

    permission_classes = [AdminWrites]
    serializer_class = ServiceProfileSerializer

    def get(self, request: Request) -> Response:
        return Response(ServiceProfileSerializer(ServiceProfile.objects.get()).data)

    def put(self, request: Request) -> Response:
        serializer = ServiceProfileSerializer(ServiceProfile.objects.get(), data=request.data)
        serializer.is_valid(raise_exception=True)
        values: dict[str, Any] = dict(serializer.validated_data)
        known = {f.name for f in dataclasses.fields(ProfileInput)}
        values["allowed_actions"] = tuple(values.get("allowed_actions", ()))
        profile = update_service_profile(
            request.tenant, ProfileInput(**{k: v for k, v in values.items() if k in known}),  # type: ignore[attr-defined]  # set by django-tenants' middleware
            acting_user=request_actor(request),
        )
        return Response(ServiceProfileSerializer(profile).data)
