"""Admin pages of the inventory; the router password is a write-only input and shows as a mask."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from core.crypto import mask
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


@admin.register(Router)
class RouterAdmin(admin.ModelAdmin):
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
class ScrubbingCenterAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "region", "capacity_gbps", "load_gbps", "healthy", "load_updated_at"]
    search_fields = ["slug", "name"]


@admin.register(UpstreamPeer)
class UpstreamPeerAdmin(admin.ModelAdmin):
    list_display = ["name", "isp", "asn", "router", "center", "session_state", "utilisation", "telemetry_updated_at"]
    list_filter = ["session_state", "center"]
    search_fields = ["name", "isp"]


class BgpSpeakerNeighborInline(admin.TabularInline):
    model = BgpSpeakerNeighbor
    extra = 0


@admin.register(BgpSpeaker)
class BgpSpeakerAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "router_id", "local_as", "local_address", "center", "enabled"]
    inlines = [BgpSpeakerNeighborInline]


@admin.register(TenantLatency)
class TenantLatencyAdmin(admin.ModelAdmin):
    list_display = ["tenant", "center", "latency_ms"]
    list_filter = ["center"]
