from __future__ import annotations

from typing import Any

from rest_framework import serializers

from tenants.customer.models import ProtectedPrefix, ServiceProfile

THRESHOLD_FIELDS = ["threshold_bps", "threshold_pps", "prefix_threshold_bps", "prefix_threshold_pps"]


class ProtectedPrefixSerializer(serializers.ModelSerializer):
    prefix = serializers.CharField(help_text="CIDR, e.g. 203.0.113.0/24")

    class Meta:
        model = ProtectedPrefix
        fields = ["id", "prefix", "description", "status", "status_reason", "created_at", "verified_at",
                  *THRESHOLD_FIELDS]
        read_only_fields = ["status", "status_reason", "created_at", "verified_at", *THRESHOLD_FIELDS]

    def to_representation(self, instance: ProtectedPrefix) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["prefix"] = str(instance.prefix)
        return data


class ServiceProfileSerializer(serializers.ModelSerializer):
    latency_overrides = serializers.DictField(child=serializers.IntegerField(), required=False, write_only=True)

    class Meta:
        model = ServiceProfile
        fields = [
            "latency_threshold_ms", "application_profile", "automation_mode", "approval_window_minutes",
            "allowed_actions", "hold_down_minutes", "detection_threshold_bps", "detection_threshold_pps",
            "latency_overrides", "updated_at",
        ]
        read_only_fields = ["updated_at"]

    def to_representation(self, instance: ServiceProfile) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["latency_overrides"] = {
            f"{o.scope_kind}:{o.scope}": o.latency_ms for o in instance.latency_overrides.all()
        }
        return data


def _threshold_field(help_text: str) -> serializers.IntegerField:
    return serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=2**62, help_text=help_text)


class PrefixThresholdsSerializer(serializers.Serializer[Any]):
    """A prefix's detection thresholds; a field left out or null goes back to its default."""

    threshold_bps = _threshold_field("Per host, bits per second (default: the service profile's)")
    threshold_pps = _threshold_field("Per host, packets per second (default: the service profile's)")
    prefix_threshold_bps = _threshold_field("The whole prefix (carpet bombing), bits per second "
                                            "(default: the host's scaled by the prefix's size)")
    prefix_threshold_pps = _threshold_field("The whole prefix (carpet bombing), packets per second "
                                            "(default: the host's scaled by the prefix's size)")


class ThresholdBoundsSerializer(serializers.Serializer[Any]):
    """The range within which a tenant's users may set host thresholds (prefix-wide ones up to the maximum times
    the prefix's carpet multiplier)."""

    min_bps = serializers.IntegerField(min_value=1, max_value=2**62)
    max_bps = serializers.IntegerField(min_value=1, max_value=2**62)
    min_pps = serializers.IntegerField(min_value=1, max_value=2**62)
    max_pps = serializers.IntegerField(min_value=1, max_value=2**62)
