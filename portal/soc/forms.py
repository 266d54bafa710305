"""Forms of the SOC console. They shape input; services decide, and their refusals land on these fields."""

from __future__ import annotations

from django import forms
from django.db.models import QuerySet

from core.models import AuditEvent
from tenants.customer.choices import ApplicationProfileChoices, AutomationModeChoices


class PanicForm(forms.Form):
    """The kill switch asks for the word, not a click: withdrawing everything must never be an accident."""

    confirm = forms.CharField(max_length=10, help_text="Type PANIC to confirm")
    reason = forms.CharField(max_length=300)

    def clean_confirm(self) -> str:
        value = self.cleaned_data["confirm"]
        if value != "PANIC":
            raise forms.ValidationError("Type PANIC (in capitals) to confirm.")
        return value


class ClearPanicForm(forms.Form):
    reason = forms.CharField(max_length=300)


class OnboardingForm(forms.Form):
    """A new tenant. Field names are the ones onboard_tenant names in its refusals (prefix -> prefixes)."""

    name = forms.CharField(max_length=200, label="Tenant name")
    slug = forms.CharField(max_length=50, help_text="Lower case, digits and dashes; also the schema name")
    domain = forms.CharField(max_length=253, help_text="The host name of the customer's portal")
    admin_email = forms.CharField(max_length=254, label="Admin email")
    prefixes = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), help_text="One prefix per line")
    latency_ms = forms.IntegerField(label="Latency threshold (ms)", initial=40)
    profile = forms.ChoiceField(choices=ApplicationProfileChoices.choices, initial=ApplicationProfileChoices.GENERIC,
                                label="Application profile")
    automation_mode = forms.ChoiceField(choices=AutomationModeChoices.choices, initial=AutomationModeChoices.AUTOMATIC)
    verify = forms.BooleanField(required=False, label="Verify the prefixes now")

    def prefix_lines(self) -> list[str]:
        return [line.strip() for line in self.cleaned_data["prefixes"].splitlines() if line.strip()]


class AuditFilterForm(forms.Form):
    """Filters of the audit log; every one optional, all combined."""

    tenant = forms.CharField(max_length=50, required=False)
    action = forms.CharField(max_length=100, required=False)
    actor = forms.CharField(max_length=200, required=False)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def apply(self, queryset: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        """Narrow an AuditEvent queryset by the valid filters."""
        data = self.cleaned_data if self.is_valid() else {}
        if data.get("tenant"):
            queryset = queryset.filter(tenant_slug=data["tenant"])
        if data.get("action"):
            queryset = queryset.filter(action__startswith=data["action"])
        if data.get("actor"):
            queryset = queryset.filter(actor__icontains=data["actor"])
        if data.get("since"):
            queryset = queryset.filter(created_at__date__gte=data["since"])
        if data.get("until"):
            queryset = queryset.filter(created_at__date__lte=data["until"])
        return queryset

