"""Forms of the customer portal. They only shape input; the services in tenants.services decide what is allowed."""

from __future__ import annotations

from typing import cast

from django import forms

from core.accounts.choices import ApiTokenScopeChoices, UserRoleChoices
from tenants.customer.choices import ApplicationProfileChoices, AutomationModeChoices, MitigationActionChoices
from tenants.customer.models import NotificationChannelKindChoices, NotificationEventChoices


class PrefixRequestForm(forms.Form):
    """Ask the provider to protect a prefix; it stays pending until an operator verifies it."""

    prefix = forms.CharField(max_length=50, widget=forms.TextInput(attrs={"placeholder": "203.0.113.0/24"}))  # type: ignore[assignment]  # a form field, not the form's own prefix: the metaclass moves it to base_fields
    description = forms.CharField(max_length=200, required=False)


class ServiceProfileForm(forms.Form):
    """The service profile; field names follow ProfileInput so a refusal lands on the right field."""

    latency_threshold_ms = forms.IntegerField(label="Latency threshold (ms)", min_value=1, max_value=1000)
    application_profile = forms.ChoiceField(choices=ApplicationProfileChoices.choices)
    automation_mode = forms.ChoiceField(choices=AutomationModeChoices.choices)
    approval_window_minutes = forms.IntegerField(label="Approval window (minutes)", min_value=1, max_value=240)
    allowed_actions = forms.MultipleChoiceField(
        choices=MitigationActionChoices.choices, widget=forms.CheckboxSelectMultiple
    )
    hold_down_minutes = forms.IntegerField(label="Hold-down (minutes)", min_value=0, max_value=1440)
    detection_threshold_bps = forms.IntegerField(label="Detection threshold per host (bit/s)", min_value=1)
    detection_threshold_pps = forms.IntegerField(label="Detection threshold per host (packets/s)", min_value=1)
    latency_overrides = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "center:fra=30\nregion:eu=40"}),
        help_text="One per line: center:<slug>=<ms> or region:<name>=<ms>",
    )

    def clean_latency_overrides(self) -> dict[str, int]:
        overrides: dict[str, int] = {}
        for line in self.cleaned_data["latency_overrides"].splitlines():
            if not line.strip():
                continue
            scope, sep, value = line.partition("=")
            if not sep or not value.strip().isdigit():
                raise forms.ValidationError(f"{line.strip()!r} must read center:<slug>=<ms> or region:<name>=<ms>")
            overrides[scope.strip()] = int(value.strip())
        return overrides


# The service names a field by its ProfileInput meaning; these are the form's names for the same fields.
PROFILE_FIELD_MAP = {
    "latency_ms": "latency_threshold_ms",
    "profile": "application_profile",
    "detection_threshold": "detection_threshold_bps",
}


class UserCreateForm(forms.Form):
    """A new user of this tenant; the password is generated and shown once, like onboarding's admin password."""

    username = forms.RegexField(regex=r"^[\w.@+-]{2,150}$", max_length=150)
    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=UserRoleChoices.choices, initial=UserRoleChoices.VIEWER)



class NotificationChannelForm(forms.Form):
    """A place to be told about attacks; the model's clean() checks the target fits the kind."""

    kind = forms.ChoiceField(choices=NotificationChannelKindChoices.choices)
    target = forms.CharField(max_length=500, widget=forms.TextInput(attrs={"placeholder": "noc@example.com or https://…"}))
    events = forms.MultipleChoiceField(
        choices=NotificationEventChoices.choices, widget=forms.CheckboxSelectMultiple,
        initial=list(NotificationEventChoices.values),
    )


class ApiTokenForm(forms.Form):
    """A new API token: which of the tenant's users it acts as, what it may do, and for how long."""

    name = forms.CharField(max_length=100)
    user = forms.ChoiceField()
    scopes = forms.MultipleChoiceField(choices=ApiTokenScopeChoices.choices, widget=forms.CheckboxSelectMultiple)
    expires_in_days = forms.IntegerField(min_value=1, max_value=365, initial=90)

    def __init__(self, *args: object, users: list[str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        cast(forms.ChoiceField, self.fields["user"]).choices = [(name, name) for name in users]


class PrefixThresholdsForm(forms.Form):
    """A prefix's detection thresholds (SOC and customer pages alike); empty fields go back to their defaults."""

    threshold_bps = forms.IntegerField(label="Per host (bit/s)", min_value=1, required=False)
    threshold_pps = forms.IntegerField(label="Per host (packets/s)", min_value=1, required=False)
    prefix_threshold_bps = forms.IntegerField(label="Whole prefix (bit/s)", min_value=1, required=False)
    prefix_threshold_pps = forms.IntegerField(label="Whole prefix (packets/s)", min_value=1, required=False)


class ThresholdBoundsForm(forms.Form):
    """The range within which a tenant's users may set host thresholds (SOC only)."""

    min_bps = forms.IntegerField(label="Lowest (bit/s)", min_value=1)
    max_bps = forms.IntegerField(label="Highest (bit/s)", min_value=1)
    min_pps = forms.IntegerField(label="Lowest (packets/s)", min_value=1)
    max_pps = forms.IntegerField(label="Highest (packets/s)", min_value=1)
