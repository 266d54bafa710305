from __future__ import annotations

from rest_framework import serializers

from tenants.models import Tenant


class TenantSerializer(serializers.ModelSerializer):
    domains = serializers.SlugRelatedField(many=True, read_only=True, slug_field="domain")  # type: ignore[var-annotated]  # read-only: no queryset to infer the row type from

    class Meta:
        model = Tenant
        fields = ["id", "slug", "name", "status", "schema_name", "domains", "created_at"]
