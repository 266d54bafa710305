from __future__ import annotations

import ipaddress
from typing import Any

from rest_framework import serializers

from collector.signals import AttackVector, SignalPhase
from devices.api.serializers import CenterLoadSerializer
from mitigation import customer_view
from mitigation.models import Action, Attack, CenterPrefixSample, Decision, Deployment, Mitigation
from mitigation.services.center_reports import MAX_FIGURE, MAX_PREFIXES


class SignalSerializer(serializers.Serializer):
    """An attack signal from a detector: starts, updates or ends an attack on a target."""

    target = serializers.CharField(help_text="An address or a prefix, e.g. 203.0.113.7 or 203.0.113.0/26")
    vectors = serializers.ListField(
        child=serializers.ChoiceField(choices=[v.value for v in AttackVector]), allow_empty=False, max_length=20
    )
    bps = serializers.IntegerField(min_value=0, max_value=10**15)
    pps = serializers.IntegerField(min_value=0, max_value=10**13)
    phase = serializers.ChoiceField(choices=[p.value for p in SignalPhase], default=SignalPhase.START.value)
    detector = serializers.CharField(max_length=100, default="api")
    top_sources = serializers.ListField(child=serializers.IPAddressField(), required=False, max_length=100)

    def validate_target(self, value: str) -> str:
        try:
            network = ipaddress.ip_network(value.strip(), strict=True)
        except ValueError:
            raise serializers.ValidationError(f"{value!r} is not an address or a prefix without host bits") from None
        return str(network)


class AttackSerializer(serializers.ModelSerializer):
    target = serializers.SerializerMethodField()
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True)  # type: ignore[var-annotated]  # read-only: no queryset to infer the row type from
    unattributed = serializers.BooleanField(read_only=True)

    class Meta:
        model = Attack
        fields = ["id", "tenant", "target", "vectors", "bps", "pps", "peak_bps", "peak_pps", "top_sources",
                  "detectors", "status", "unattributed", "started_at", "last_signal_at", "end_signalled_at", "ended_at"]

    def get_target(self, attack: Attack) -> str:
        return str(attack.target)

    def to_representation(self, instance: Attack) -> dict[str, Any]:
        """Operators also read each detector's last report; customers read the merged attack only."""
        data = super().to_representation(instance)
        if customer_slug(self.context) is None and self.context.get("request") is not None:
            data["reports"] = [
                {"detector": r.detector, "phase": r.phase, "vectors": r.vectors, "bps": r.bps, "pps": r.pps,
                 "top_sources": r.top_sources, "first_seen": r.first_seen, "last_seen": r.last_seen}
                for r in instance.reports.all()
            ]
        return data


class DeploymentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Deployment
        fields = ["element", "state", "verified_at", "detail"]


class ActionSerializer(serializers.ModelSerializer):
    deployments = DeploymentSerializer(many=True, read_only=True)

    class Meta:
        model = Action
        fields = ["id", "mitigation", "kind", "spec", "targets", "status", "reason", "refusal_code",
                  "refusal_reason", "created_at", "retired_at", "deployments"]

    def to_representation(self, instance: Action) -> dict[str, Any]:
        """For a customer: its route and how many elements carry it; no next hops, neighbors or element names."""
        data = super().to_representation(instance)
        if customer_slug(self.context) is None:
            return data
        shown = customer_view.action(instance)
        return {"id": data["id"], "mitigation": data["mitigation"], "kind": shown.kind, "route": shown.route,
                "status": shown.status, "reason": shown.reason, "refusal_code": data["refusal_code"],
                "refusal_reason": shown.refusal, "created_at": data["created_at"], "retired_at": data["retired_at"],
                "carried_on_elements": shown.carried_on, "failed_on_elements": shown.failed_on}


class DecisionSerializer(serializers.ModelSerializer):
    center = serializers.SlugRelatedField(slug_field="slug", read_only=True)  # type: ignore[var-annotated]  # read-only: no queryset to infer the row type from

    class Meta:
        model = Decision
        fields = ["id", "mitigation", "created_at", "level", "center", "reason", "inputs", "cost", "actor"]

    def to_representation(self, instance: Decision) -> dict[str, Any]:
        """For a customer: what was decided and in one clause why; no engine inputs, costs or operator names."""
        data = super().to_representation(instance)
        if customer_slug(self.context) is None:
            return data
        return {"id": data["id"], "mitigation": data["mitigation"], "created_at": data["created_at"],
                "level": data["level"], "center": data["center"], "reason": customer_view.reason(instance.reason)}


class MitigationSerializer(serializers.ModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True)  # type: ignore[var-annotated]  # read-only: no queryset to infer the row type from
    center = serializers.SlugRelatedField(slug_field="slug", read_only=True)  # type: ignore[var-annotated]  # read-only: no queryset to infer the row type from
    attack = AttackSerializer(read_only=True)
    actions = serializers.SerializerMethodField()

    class Meta:
        model = Mitigation
        fields = ["id", "tenant", "attack", "state", "level", "center", "reason", "approval_deadline", "approved_by",
                  "hold_down_until", "last_error", "created_at", "updated_at", "activated_at", "ended_at", "actions"]

    def get_actions(self, mitigation: Mitigation) -> list[dict[str, Any]]:
        serializer = ActionSerializer(mitigation.actions.exclude(status="retired"), many=True, context=self.context)
        return list(serializer.data)

    def to_representation(self, instance: Mitigation) -> dict[str, Any]:
        """A customer reads its mitigation in its own words (mitigation.customer_view), never provider internals."""
        data = super().to_representation(instance)
        slug = customer_slug(self.context)
        if slug is not None:
            data["reason"] = customer_view.reason(instance.reason)
            data["approved_by"] = customer_view.actor(instance.approved_by, slug)
            data["last_error"] = customer_view.error(instance.last_error)
        return data


def customer_slug(context: dict[str, Any]) -> str | None:
    """The tenant's slug when the request comes from a customer's domain, None for the provider's."""
    tenant = getattr(context.get("request"), "tenant", None)
    return tenant.slug if tenant is not None and tenant.schema_name != "public" else None


class MoveSerializer(serializers.Serializer):
    center = serializers.SlugField(help_text="Slug of the scrubbing center to move to")
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class CenterPrefixFiguresSerializer(serializers.Serializer):
    """What a center received, dropped and returned clean for one prefix diverted to it, in bits and packets/s."""

    prefix = serializers.CharField(max_length=64, help_text="A prefix diverted to this center, e.g. 203.0.113.0/24")
    received_bps = serializers.IntegerField(min_value=0, max_value=MAX_FIGURE)
    dropped_bps = serializers.IntegerField(min_value=0, max_value=MAX_FIGURE)
    clean_bps = serializers.IntegerField(min_value=0, max_value=MAX_FIGURE)
    received_pps = serializers.IntegerField(min_value=0, max_value=MAX_FIGURE, default=0)
    dropped_pps = serializers.IntegerField(min_value=0, max_value=MAX_FIGURE, default=0)
    clean_pps = serializers.IntegerField(min_value=0, max_value=MAX_FIGURE, default=0)


class CenterReportSerializer(CenterLoadSerializer):
    """A center's load report, with what it did to each prefix diverted to it (dropped + clean within 1 % of
    received); every prefix must be one now diverted to this center, or nothing of the report is stored."""

    prefixes = serializers.ListField(child=CenterPrefixFiguresSerializer(), required=False, max_length=MAX_PREFIXES)


class CenterPrefixSampleSerializer(serializers.ModelSerializer):
    center = serializers.SlugRelatedField(slug_field="slug", read_only=True)  # type: ignore[var-annotated]  # read-only: no queryset to infer the row type from
    prefix = serializers.SerializerMethodField()

    class Meta:
        model = CenterPrefixSample
        fields = ["center", "prefix", "at", "received_bps", "dropped_bps", "clean_bps", "received_pps", "dropped_pps",
                  "clean_pps"]

    def get_prefix(self, sample: CenterPrefixSample) -> str:
        return str(sample.prefix)
