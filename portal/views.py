"""Views shared by the public domain (SOC console) and tenant domains (customer portal), and their access rules.

The same role names mean the same thing on both sides: viewers see, operators act on mitigations, admins manage.
Which side a request is on is decided by its domain (the urlconf django-tenants picked), never by the user.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from core.accounts.choices import UserRoleChoices
from core.accounts.throttling import record_success
from core.accounts.two_factor import has_two_factor
from core.errors import ValidationProblem
from core.permissions import has_role, request_actor
from mitigation.models import Mitigation
from mitigation.services import lifecycle
from portal.accounts.forms import ThrottledAuthenticationForm, attempt_for
from portal.customer.forms import PrefixThresholdsForm
from tenants.models import Tenant
from tenants.services import PrefixThresholds, set_prefix_thresholds

View = Callable[..., HttpResponse]


def is_public_request(request: HttpRequest) -> bool:
    return connection.schema_name == "public"  # type: ignore[attr-defined]  # django-tenants adds it to the connection


def role_required(role: str) -> Callable[[View], View]:
    """Log in first (anonymous users are sent to the login page), then hold `role` or a stronger one (else 403).

    Views that look up an object by id check the role themselves after the lookup, so that a foreign id answers
    404 to every role alike and a weak role cannot tell foreign ids from its own.
    """

    def decorate(view: View) -> View:
        @functools.wraps(view)
        @login_required
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not has_role(request.user, role):
                raise PermissionDenied(f"needs the {role} role")
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


viewer_required = role_required(UserRoleChoices.VIEWER)


def require_role(request: HttpRequest, role: str) -> None:
    """The role check for views that first had to find their object (see role_required)."""
    if not has_role(request.user, role):
        raise PermissionDenied(f"needs the {role} role")


def add_problem(form: Any, problem: ValidationProblem, field_map: dict[str, str] | None = None) -> None:
    """Show a service's refusal on the form, on the field it names when the form has one."""
    field = (field_map or {}).get(problem.field, problem.field)
    if field in form.fields:
        form.add_error(field, problem.message)
    else:
        form.add_error(None, f"{problem.field}: {problem.message}")


class LoginView(auth_views.LoginView):
    """Login at the request's domain: operators at the public domain, a tenant's users at that tenant's domain.

    Users live in the schema of their domain, so credentials of one tenant cannot match at another's. Failed
    attempts are throttled per username and per address; a user with TOTP goes on to the code step and is logged
    in only there.
    """

    template_name = "portal/login.html"
    redirect_authenticated_user = True
    authentication_form = ThrottledAuthenticationForm

    def form_valid(self, form: ThrottledAuthenticationForm) -> HttpResponse:  # type: ignore[override]  # this view's authentication_form is always this form
        from portal.accounts.views import start_two_factor

        user = form.get_user()
        if has_two_factor(user):
            return start_two_factor(self.request, user, self.get_redirect_url())
        record_success(attempt_for(self.request, user.username))
        return super().form_valid(form)

    def get_context_data(self, **kwargs: object) -> dict[str, object]:
        context = super().get_context_data(**kwargs)
        context["tenant"] = getattr(self.request, "tenant", None)
        context["is_public"] = is_public_request(self.request)
        return context


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect("login")


def home(request: HttpRequest) -> HttpResponse:
    """'/': the SOC board at the provider's domain, the customer dashboard at a tenant's."""
    if is_public_request(request):
        from portal.soc.views import board

        return board(request)
    from portal.customer.views import dashboard

    return dashboard(request)


class ReasonForm(forms.Form):
    """Why a person approves, rejects or withdraws: kept in the audit log next to their name."""

    reason = forms.CharField(max_length=300, required=False)


def act_on_mitigation(request: HttpRequest, mitigation: Mitigation, verb: str) -> None:
    """Run one of the mitigation actions (approve, reject, withdraw) as the request's user; say how it went.

    The caller has already found the mitigation through the selectors (so a foreign id was a 404) and checked
    the role. A refusal by the lifecycle (wrong state) becomes a message, never an error page.
    """
    form = ReasonForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        lifecycle.MITIGATION_ACTIONS[verb](mitigation.pk, acting_user=request_actor(request), reason=reason)
    except ValidationProblem as problem:
        messages.error(request, f"Could not {verb}: {problem.message}")
    else:
        messages.success(request, f"Mitigation {mitigation.pk} ({mitigation.tenant.slug}): {verb} recorded.")


def form_problems(form: forms.Form) -> str:
    """A form's errors in one line, for a page that shows them as a message."""
    return "; ".join(f"{name}: {' '.join(str(e) for e in errors)}" for name, errors in form.errors.items())


def save_prefix_thresholds(request: HttpRequest, tenant: Tenant, prefix_id: int) -> None:
    """Set a prefix's thresholds from a posted PrefixThresholdsForm (customer and SOC pages alike): the service
    decides what this person may set; its refusal, or the form's, is a message, never an error page."""
    form = PrefixThresholdsForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Thresholds not changed: {form_problems(form)}")
        return
    try:
        prefix = set_prefix_thresholds(tenant, prefix_id, PrefixThresholds(**form.cleaned_data),
                                       acting_user=request_actor(request))
    except ValidationProblem as problem:
        messages.error(request, f"Thresholds not changed: {problem.field}: {problem.message}")
    else:
        messages.success(request, f"{prefix.prefix}: detection thresholds saved; the collector applies them "
                                  "within seconds.")
