"""Serializers of the inventory API. Related rows are named by their natural keys; credentials are write-only."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from core.crypto import mask
from devices.models import BgpSpeaker, BgpSpeakerNeighbor, Router, ScrubbingCenter, TenantLatency, UpstreamPeer
from tenants.models import Tenant


class ScrubbingCenterSerializer(serializers.ModelSerializer):
    is_stale = serializers.BooleanField(read_only=True)
    load_age_s = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = ScrubbingCenter
        fields = "__all__"
        read_only_fields = ["load_gbps", "load_mpps", "load_updated_at"]


class RouterSerializer(serializers.ModelSerializer):
    """A router; `password` is accepted on write and only ever answered as a mask."""

    center = serializers.SlugRelatedField(slug_field="slug", queryset=ScrubbingCenter.objects.all(), allow_null=True,
                                          required=False)
    password = serializers.CharField(write_only=True, required=False, allow_blank=True, style={"input_type": "password"})

    class Meta:
        model = Router
        fields = "__all__"
        read_only_fields = ["last_seen_at"]

    def to_representation(self, instance: Router) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["password"] = mask(instance.password)
        return data


class UpstreamPeerSerializer(serializers.ModelSerializer):
    router = serializers.SlugRelatedField(slug_field="name", queryset=Router.objects.all())
    center = serializers.SlugRelatedField(slug_field="slug", queryset=ScrubbingCenter.objects.all())
    is_stale = serializers.BooleanField(read_only=True)
    session_up = serializers.BooleanField(read_only=True)

    class Meta:
        model = UpstreamPeer
        exclude = ["telemetry_sample"]
        read_only_fields = ["utilisation", "session_state", "telemetry_updated_at"]


class BgpSpeakerNeighborSerializer(serializers.ModelSerializer):
    speaker = serializers.SlugRelatedField(slug_field="name", queryset=BgpSpeaker.objects.all())
    router = serializers.SlugRelatedField(slug_field="name", queryset=Router.objects.all(), allow_null=True,
                                          required=False)
    upstream = serializers.SlugRelatedField(slug_field="name", queryset=UpstreamPeer.objects.all(), allow_null=True,
                                            required=False)

    class Meta:
        model = BgpSpeakerNeighbor
        fields = "__all__"


class BgpSpeakerSerializer(serializers.ModelSerializer):
    center = serializers.SlugRelatedField(slug_field="slug", queryset=ScrubbingCenter.objects.all(), allow_null=True,
                                          required=False)
    neighbors = BgpSpeakerNeighborSerializer(many=True, read_only=True)

    class Meta:
        model = BgpSpeaker
        fields = "__all__"


class TenantLatencySerializer(serializers.ModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", queryset=Tenant.objects.exclude(schema_name="public"))
    center = serializers.SlugRelatedField(slug_field="slug", queryset=ScrubbingCenter.objects.all())

    class Meta:
        model = TenantLatency
        fields = "__all__"


class CenterLoadSerializer(serializers.Serializer):
    """A load report of a center's appliances; `healthy` left out keeps the center's current health."""

    load_gbps = serializers.FloatField(min_value=0.0)
    load_mpps = serializers.FloatField(min_value=0.0)
    healthy = serializers.BooleanField(required=False)
