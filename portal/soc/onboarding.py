"""Onboarding a customer from the SOC: one guided form over tenants.services.onboard_tenant, with its rules.

The new admin's password exists only in the response to the successful POST: it is not stored in clear, not put
in the session and not shown again.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from core.accounts.choices import UserRoleChoices
from core.errors import ValidationProblem
from core.permissions import request_actor
from portal.soc.forms import OnboardingForm
from portal.views import add_problem, role_required
from tenants.services import ProfileInput, onboard_tenant

# onboard_tenant names a refused prefix "prefix"; the form has one field for all of them.
ONBOARDING_FIELD_MAP = {"prefix": "prefixes"}


@role_required(UserRoleChoices.ADMIN)
@never_cache
def onboard(request: HttpRequest) -> HttpResponse:
    form = OnboardingForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            result = onboard_tenant(
                slug=data["slug"].strip(),
                name=data["name"],
                domain=data["domain"],
                admin_email=data["admin_email"].strip(),
                prefixes=form.prefix_lines(),
                profile=ProfileInput(
                    latency_threshold_ms=data["latency_ms"],
                    application_profile=data["profile"],
                    automation_mode=data["automation_mode"],
                ),
                verify=data["verify"],
                acting_user=request_actor(request),
            )
        except ValidationProblem as problem:
            add_problem(form, problem, ONBOARDING_FIELD_MAP)
        else:
            return render(request, "soc/onboarded.html", {"result": result, "domain": data["domain"].strip().lower()})
    return render(request, "soc/onboard.html", {"form": form})
