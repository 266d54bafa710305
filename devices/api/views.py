"""The inventory API on the provider's domain: operators read, operator admins write; appliances post load."""

from __future__ import annotations

from typing import Any

from django.db.models import Model
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from core.accounts.choices import ApiTokenScopeChoices
from core.accounts.models import ApiToken
from core.actors import Actor
from core.permissions import AdminWrites, request_actor
from devices.api import serializers
from devices.inventory import delete_row, row_values, save_row
from devices.models import BgpSpeaker, BgpSpeakerNeighbor, Router, ScrubbingCenter, TenantLatency, UpstreamPeer
from devices.services import record_center_load


class InventoryViewSet(viewsets.ModelViewSet):
    """Writes go through the inventory's one write path: validated, saved, audited with a diff, published."""

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        model: type[Model] = serializer.Meta.model  # type: ignore[attr-defined]  # every inventory serializer has one
        row = model(**serializer.validated_data)
        save_row(row, acting_user=self._actor(), reason="REST API")
        serializer.instance = row

    def perform_update(self, serializer: BaseSerializer[Any]) -> None:
        row = serializer.instance
        assert row is not None, "an update has its row"
        before = row_values(row)
        for name, value in serializer.validated_data.items():
            setattr(row, name, value)
        save_row(row, acting_user=self._actor(), reason="REST API", before=before)

    def perform_destroy(self, instance: Any) -> None:
        delete_row(instance, acting_user=self._actor(), reason="REST API")

    def _actor(self) -> Actor:
        return request_actor(self.request)


class TelemetryToken(BasePermission):
    """Only an operator's API token with the telemetry scope: appliances never log in with a session.

    Tokens are looked up in the schema of the request's domain, so a tenant's token is unknown here anyway.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        token = request.auth
        return (isinstance(token, ApiToken) and ApiTokenScopeChoices.TELEMETRY in token.scopes
                and bool(request.user and request.user.is_active))


class ScrubbingCenterViewSet(InventoryViewSet):
    queryset = ScrubbingCenter.objects.all()
    serializer_class = serializers.ScrubbingCenterSerializer
    permission_classes = [AdminWrites]
    lookup_field = "slug"
    filterset_fields = ["region", "healthy"]

    @action(detail=True, methods=["post"], url_path="load", permission_classes=[TelemetryToken],
            serializer_class=serializers.CenterLoadSerializer)
    def load(self, request: Request, slug: str | None = None) -> Response:
        """Record a load report of this center (scrubbing appliances, every telemetry interval)."""
        center = self.get_object()
        body = serializers.CenterLoadSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        center = record_center_load(
            center, load_gbps=body.validated_data["load_gbps"], load_mpps=body.validated_data["load_mpps"],
            healthy=body.validated_data.get("healthy", center.healthy),
            acting_user=request_actor(request),
        )
        return Response(serializers.ScrubbingCenterSerializer(center).data, status=status.HTTP_200_OK)


class RouterViewSet(InventoryViewSet):
    queryset = Router.objects.select_related("center")
    serializer_class = serializers.RouterSerializer
    permission_classes = [AdminWrites]
    filterset_fields = ["vendor", "role", "enabled"]


class UpstreamPeerViewSet(InventoryViewSet):
    queryset = UpstreamPeer.objects.select_related("router", "center")
    serializer_class = serializers.UpstreamPeerSerializer
    permission_classes = [AdminWrites]
    filterset_fields = ["isp", "asn", "session_state"]


class BgpSpeakerViewSet(InventoryViewSet):
    queryset = BgpSpeaker.objects.select_related("center").prefetch_related("neighbors")
    serializer_class = serializers.BgpSpeakerSerializer
    permission_classes = [AdminWrites]


class BgpSpeakerNeighborViewSet(InventoryViewSet):
    queryset = BgpSpeakerNeighbor.objects.select_related("speaker", "router", "upstream")
    serializer_class = serializers.BgpSpeakerNeighborSerializer
    permission_classes = [AdminWrites]


class TenantLatencyViewSet(InventoryViewSet):
    queryset = TenantLatency.objects.select_related("tenant", "center")
    serializer_class = serializers.TenantLatencySerializer
    permission_classes = [AdminWrites]
