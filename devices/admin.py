"""Admin pages of the inventory; the router password is a write-only input and shows as a mask."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from core.crypto import mask
from core.permissions import request_actor
from devices.inventory import delete_row, row_values, save_row
from devices.models import BgpSpeaker, BgpSpeakerNeighbor, Router, ScrubbingCenter, TenantLatency, UpstreamPeer


class RouterAdminForm(forms.ModelForm):
    """Never renders the stored password; an empty input keeps it, anything else replaces it."""

    password = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                               help_text="Leave empty to keep the stored password.")

    class Meta:
        model = Router
        fields = "__all__"

    def clean_password(self) -> str:
        value = self.cleaned_data.get("password") or ""
        if not value and self.instance.pk:
            return Router.objects.get(pk=self.instance.pk).password
        return value


class InventoryAdmin(admin.ModelAdmin):
    """Admin writes take the inventory's one write path: the same audit row with its diff and the same event."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        before = row_values(type(obj).objects.get(pk=obj.pk)) if change else None
        save_row(obj, acting_user=request_actor(request), reason="admin", before=before)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        delete_row(obj, acting_user=request_actor(request), reason="admin")

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for obj in queryset:
            delete_row(obj, acting_user=request_actor(request), reason="admin")

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        instances = formset.save(commit=False)
        for obj in formset.deleted_objects:
            delete_row(obj, acting_user=request_actor(request), reason="admin")
        for obj in instances:
            before = row_values(type(obj).objects.get(pk=obj.pk)) if obj.pk else None
            save_row(obj, acting_user=request_actor(request), reason="admin", before=before)
        formset.save_m2m()


@admin.register(Router)
class RouterAdmin(InventoryAdmin):
    form = RouterAdminForm
    list_display = ["name", "vendor", "platform", "role", "center", "mgmt_host", "mgmt_port", "masked_password",
                    "enabled", "last_seen_at"]
    list_filter = ["vendor", "role", "enabled"]
    search_fields = ["name", "mgmt_host"]

    @admin.display(description="password")
    def masked_password(self, obj: Router) -> str:
        return mask(obj.password)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        form.base_fields["password"].initial = ""
        return form


@admin.register(ScrubbingCenter)
class ScrubbingCenterAdmin(InventoryAdmin):
    list_display = ["slug", "name", "region", "capacity_gbps", "load_gbps", "healthy", "load_updated_at"]
    search_fields = ["slug", "name"]


@admin.register(UpstreamPeer)
class UpstreamPeerAdmin(InventoryAdmin):
    list_display = ["name", "isp", "asn", "router", "center", "session_state", "utilisation", "telemetry_updated_at"]
    list_filter = ["session_state", "center"]
    search_fields = ["name", "isp"]


class BgpSpeakerNeighborInline(admin.TabularInline):
    model = BgpSpeakerNeighbor
    extra = 0


@admin.register(BgpSpeaker)
class BgpSpeakerAdmin(InventoryAdmin):
    list_display = ["name", "kind", "router_id", "local_as", "local_address", "center", "enabled"]
    inlines = [BgpSpeakerNeighborInline]


@admin.register(TenantLatency)
class TenantLatencyAdmin(InventoryAdmin):
    list_display = ["tenant", "center", "latency_ms"]
    list_filter = ["center"]
