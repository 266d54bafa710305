"""The inventory API on the provider's domain: operators read, operator admins write.

A center's appliances post their load with per-prefix figures at `centers/<slug>/load/`, served by
mitigation.api.views.CenterReportView: the figures are about mitigations, a layer above the inventory.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model
from rest_framework import viewsets
from rest_framework.serializers import BaseSerializer

from core.actors import Actor
from core.permissions import AdminWrites, request_actor
from devices.api import serializers
from devices.inventory import delete_row, row_values, save_row
from devices.models import BgpSpeaker, BgpSpeakerNeighbor, Router, ScrubbingCenter, TenantLatency, UpstreamPeer


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


class ScrubbingCenterViewSet(InventoryViewSet):
    queryset = ScrubbingCenter.objects.all()
    serializer_class = serializers.ScrubbingCenterSerializer
    permission_classes = [AdminWrites]
    lookup_field = "slug"
    filterset_fields = ["region", "healthy"]


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
