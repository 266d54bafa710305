from __future__ import annotations

from typing import Any

from rest_framework import serializers

from tenants.customer.models import ProtectedPrefix, ServiceProfile


class ProtectedPrefixSerializer(serializers.ModelSerializer):
    prefix = serializers.CharField(help_text="CIDR, e.g. 203.0.113.0/24")

    class Meta:
        model = ProtectedPrefix
        fields = ["id", "prefix", "description", "status", "status_reason", "created_at", "verified_at"]
        read_only_fields = ["status", "status_reason", "created_at", "verified_at"]

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
