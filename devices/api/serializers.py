"""The inventory's validation, shared by the REST API and the network file.

Related rows are named by their natural keys; credentials are write-only. Every writer gets the same checks (the
model's field validators and its `clean()` rules, unknown fields refused, booleans never taken for numbers) and
the same wording of errors, which the network file prints as `section[key].field: message`.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from rest_framework import serializers

from core.crypto import mask
from devices.models import (
    BgpSpeaker,
    BgpSpeakerNeighbor,
    Router,
    ScrubbingCenter,
    TenantLatency,
    UpstreamPeer,
    validate_asn_nn,
)
from tenants.models import Tenant


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _plain_messages(field: serializers.Field) -> None:
    """One wording of errors for every writer: short, lower-case, saying what is allowed."""
    messages = field.error_messages
    messages["required"] = "is required"
    messages["null"] = "may not be empty"
    if isinstance(field, serializers.BooleanField):
        messages["invalid"] = "must be a boolean"
    elif isinstance(field, serializers.IntegerField | serializers.FloatField):
        messages["invalid"] = "must be a whole number" if isinstance(field, serializers.IntegerField) else (
            "must be a number")
        _plain_range(field)


def _plain_range(field: serializers.IntegerField | serializers.FloatField) -> None:
    """The model's min/max validators and the field's own bounds as one range check with one message."""
    lows = [field.min_value] if field.min_value is not None else []
    highs = [field.max_value] if field.max_value is not None else []
    kept = []
    for validator in field.validators:
        if isinstance(validator, MinValueValidator):
            lows.append(validator.limit_value)
        elif isinstance(validator, MaxValueValidator):
            highs.append(validator.limit_value)
        else:
            kept.append(validator)
    low, high = (max(lows) if lows else None), (min(highs) if highs else None)
    if low is not None and high is not None:
        message = f"must be {_bound(low)}..{_bound(high)}"
    elif low is not None:
        message = f"must be >= {_bound(low)}"
    elif high is not None:
        message = f"must be <= {_bound(high)}"
    else:
        return

    def in_range(value: float) -> None:
        if (low is not None and value < low) or (high is not None and value > high):
            raise serializers.ValidationError(message, code="range")

    field.min_value = field.max_value = None
    field.validators = [*kept, in_range]


class InventorySerializer(serializers.ModelSerializer):
    """The base of every inventory serializer.

    Context `file_fields` (the network file) limits the accepted fields to the file's own; `refs_elsewhere` drops
    the related-row fields, which the network file resolves itself against the file and the inventory.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.context.get("refs_elsewhere"):
            for name in [name for name, item in self.fields.items() if isinstance(item, serializers.RelatedField)]:
                del self.fields[name]
        for item in self.fields.values():
            _plain_messages(item)
            if isinstance(item, serializers.ListField) and item.child is not None:
                _plain_messages(item.child)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = self.context.get("file_fields") or list(self.fields)
            problems: dict[str, Any] = {
                name: f"unknown field (expected one of {', '.join(allowed)})" for name in data if name not in allowed
            }
            for name, value in data.items():
                item = self.fields.get(name)
                numeric = isinstance(item, serializers.IntegerField | serializers.FloatField)
                if numeric and isinstance(value, bool):
                    kind = "whole number" if isinstance(item, serializers.IntegerField) else "number"
                    problems[name] = f"must be a {kind}, not a boolean"
                # DRF's text fields refuse NUL themselves; a related row's name goes to PostgreSQL as it came,
                # which refuses NUL with an error that was a 500 (found by tests/portal/test_api_fuzz.py).
                if isinstance(item, serializers.RelatedField) and isinstance(value, str) and "\x00" in value:
                    problems[name] = "must not contain a NUL character"
            if problems:
                raise serializers.ValidationError(problems)
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Run the model's own `clean()` on the row as it would be saved."""
        model: type[models.Model] = self.Meta.model
        row = model(**{name: getattr(self.instance, name) for name in _concrete(model)}) if self.instance else model()
        for name, value in attrs.items():
            if name in _concrete(model):
                setattr(row, name, value)
        try:
            row.clean()
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.message_dict) from error
        return attrs


def _concrete(model: type[models.Model]) -> set[str]:
    return {item.name for item in model._meta.concrete_fields if not item.primary_key}


class ScrubbingCenterSerializer(InventorySerializer):
    is_stale = serializers.BooleanField(read_only=True)
    load_age_s = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = ScrubbingCenter
        fields = "__all__"
        read_only_fields = ["load_gbps", "load_mpps", "load_updated_at"]


class RouterSerializer(InventorySerializer):
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


class UpstreamPeerSerializer(InventorySerializer):
    router = serializers.SlugRelatedField(slug_field="name", queryset=Router.objects.all())
    center = serializers.SlugRelatedField(slug_field="slug", queryset=ScrubbingCenter.objects.all())
    is_stale = serializers.BooleanField(read_only=True)
    session_up = serializers.BooleanField(read_only=True)

    class Meta:
        model = UpstreamPeer
        exclude = ["telemetry_sample"]
        read_only_fields = ["utilisation", "session_state", "telemetry_updated_at"]

    def validate_communities(self, value: Any) -> dict[str, str]:
        """Named communities the upstream honours, each `ASN:NN`; an error names the community at fault."""
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be a mapping of name to ASN:NN")
        problems = {}
        for label, community in value.items():
            try:
                validate_asn_nn(str(community))
            except DjangoValidationError as error:
                problems[str(label)] = error.messages[0]
        if problems:
            raise serializers.ValidationError(problems)
        return value


class BgpSpeakerNeighborSerializer(InventorySerializer):
    speaker = serializers.SlugRelatedField(slug_field="name", queryset=BgpSpeaker.objects.all())
    router = serializers.SlugRelatedField(slug_field="name", queryset=Router.objects.all(), allow_null=True,
                                          required=False)
    upstream = serializers.SlugRelatedField(slug_field="name", queryset=UpstreamPeer.objects.all(), allow_null=True,
                                            required=False)

    class Meta:
        model = BgpSpeakerNeighbor
        fields = "__all__"

    def validate_families(self, value: list[str]) -> list[str]:
        if not value:
            raise serializers.ValidationError("must be a non-empty list of family names")
        return value


class BgpSpeakerSerializer(InventorySerializer):
    center = serializers.SlugRelatedField(slug_field="slug", queryset=ScrubbingCenter.objects.all(), allow_null=True,
                                          required=False)
    neighbors = BgpSpeakerNeighborSerializer(many=True, read_only=True)

    class Meta:
        model = BgpSpeaker
        fields = "__all__"


class TenantLatencySerializer(InventorySerializer):
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
