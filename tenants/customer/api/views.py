"""The customer's API for its own prefixes and profile. Every query runs in the tenant's schema only."""

from __future__ import annotations

import dataclasses
from typing import Any

from rest_framework import mixins, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from core.permissions import AdminWrites, request_actor
from tenants.customer.api.serializers import ProtectedPrefixSerializer, ServiceProfileSerializer
from tenants.customer.models import ProtectedPrefix, ServiceProfile
from tenants.services import ProfileInput, request_prefix, update_service_profile


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
