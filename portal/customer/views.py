"""The customer portal: a tenant's attacks and mitigations live, approvals, prefixes, profile and users.

Every public-schema row is read through mitigation.selectors with the request's tenant, so a foreign id and a
missing id are the same 404. Tenant-schema rows (prefixes, profile, users) are the request's own schema already.
"""

from __future__ import annotations

import datetime
import secrets
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from core.accounts.choices import UserRoleChoices
from core.accounts.models import User
from core.audit import record_audit
from core.errors import ValidationProblem
from core.models import AuditEvent
from core.permissions import has_role
from mitigation import customer_view, selectors, story
from mitigation.choices import AttackStatusChoices, MitigationLevelChoices, MitigationStateChoices
from mitigation.engine.problem import NO_LATENCY, TOO_FAR
from mitigation.models import Decision, Mitigation
from mitigation.services import states
from portal.customer.forms import (
    PROFILE_FIELD_MAP,
    PrefixRequestForm,
    ServiceProfileForm,
    UserCreateForm,
)
from portal.customer.reports import customer_timeline, verdict_line
from portal.spreadsheet import SafeCsvWriter
from portal.views import (
    ReasonForm,
    act_on_mitigation,
    add_problem,
    request_actor,
    require_role,
    role_required,
    save_prefix_thresholds,
    viewer_required,
)
from tenants.customer.models import ProtectedPrefix, ServiceProfile
from tenants.models import Tenant
from tenants.services import (
    ProfileInput,
    request_prefix,
    set_two_factor_requirement,
    threshold_bounds,
    update_service_profile,
)

# States a customer wants on the dashboard: everything that is or may soon be on the network.
BOARD_STATES = (*states.LIVE_STATES, MitigationStateChoices.WITHDRAWING)
RECENT_LIMIT = 20


def _tenant(request: HttpRequest) -> Tenant:
    """The request's tenant; the customer urlconf is only ever served at a tenant's domain."""
    tenant = selectors.request_tenant(request)
    assert tenant is not None, "customer views are only routed at a tenant's domain"
    return tenant


def _board_mitigations(tenant: Tenant) -> QuerySet[Mitigation]:
    return (
        selectors.mitigations_for(tenant)
        .annotate(action_count=Count("actions", filter=~Q(actions__status="retired")))
        .prefetch_related("actions")
    )


def _board_context(request: HttpRequest) -> dict[str, Any]:
    tenant = _tenant(request)
    return {
        "tenant": tenant,
        "attacks": selectors.attacks_for(tenant)
        .select_related("mitigation")
        .filter(status=AttackStatusChoices.ACTIVE)[:100],
        "mitigations": _board_mitigations(tenant).filter(state__in=BOARD_STATES)[:100],
        "recent": _board_mitigations(tenant).exclude(state__in=BOARD_STATES)[:RECENT_LIMIT],
    }


@viewer_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """The page a customer keeps open: live attacks and mitigations, refreshed on every live event."""
    return render(request, "customer/dashboard.html", _board_context(request))


@viewer_required
@never_cache
def dashboard_fragment(request: HttpRequest) -> HttpResponse:
    """The dashboard's tables alone, fetched by the page when a `sluice:event` arrives (no full reload)."""
    return render(request, "customer/_board.html", _board_context(request))


@dataclass(frozen=True)
class CustomerCandidate:
    """A center the engine compared, as the tenant may see it: its latency against the tenant's own threshold and
    whether it was chosen, never another center's headroom or the engine's costs (mitigation.customer_view)."""

    name: str
    chosen: bool
    latency_ms: float | None
    threshold_ms: float | None
    within_threshold: bool | None
    why: str


def _customer_why(candidate: story.CandidateCenter, decision: Decision) -> str:
    if candidate.chosen:
        return "chosen"
    if candidate.status == TOO_FAR:
        return "latency over your threshold"
    if candidate.status == NO_LATENCY:
        return "no latency measurement to your network"
    if candidate.status in story.STATUS_WORDS:
        return "not available for this attack"
    if decision.level != MitigationLevelChoices.DIVERSION:
        return f"{decision.get_level_display()} fit better"
    return "another center fit better"


def customer_candidates(decision: Decision | None) -> list[CustomerCandidate]:
    if decision is None:
        return []
    return [CustomerCandidate(c.name, c.chosen, c.latency_ms, c.threshold_ms, c.within_threshold,
                              _customer_why(c, decision))
            for c in story.candidate_centers(decision)]


@dataclass(frozen=True)
class CustomerRule:
    """A FlowSpec rule with its counters summed over the routers that carry it: how many, not which."""

    rule: str
    status: str
    routers: int
    packets: int
    dropped_packets: int
    matched: str
    dropped: str
    last_hit_at: datetime.datetime | None


def customer_rules(mitigation: Mitigation) -> list[CustomerRule]:
    return [
        CustomerRule(story.route_text(rule.spec, internals=False), rule.status, len(rule.elements), rule.packets, rule.dropped_packets,
                     story.rates_text(rule.matched_bps, rule.matched_pps) or "—",
                     story.rates_text(rule.dropped_bps, rule.dropped_pps) or "—",
                     rule.last_hit_at)
        for rule in story.rule_counters_of(mitigation)
    ]


def _story_live_context(tenant: Tenant, mitigation: Mitigation) -> dict[str, Any]:
    """What live events change on the page: the verdict, the traffic graph and the rule counters."""
    return {
        "tenant": tenant,
        "mitigation": mitigation,
        "verdict_figures": story.verdict_figures(story.latest_verdict(mitigation)),
        "series": story.traffic_series(mitigation).as_json(),
        "rules": customer_rules(mitigation),
    }


@viewer_required
@never_cache
def mitigation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One mitigation: whether it works (the verdict), its story, the traffic before and after, what its rules hit,
    the centers compared, and its actions. `?part=live` answers the verdict, graph and counters alone, re-fetched
    by the page on this mitigation's verdict and center report events."""
    tenant = _tenant(request)
    mitigation = get_object_or_404(selectors.mitigations_for(tenant), pk=pk)
    if request.GET.get("part") == "live":
        return render(request, "customer/_mitigation_live.html", _story_live_context(tenant, mitigation))
    actions = selectors.actions_for(tenant).filter(mitigation=mitigation).prefetch_related("deployments")
    latest = selectors.decisions_for(tenant).filter(mitigation=mitigation).first()
    context = {
        **_story_live_context(tenant, mitigation),
        "attack": mitigation.attack,
        # In the customer's words only (mitigation.customer_view): no element names, next hops or operator names.
        "shown": {
            "reason": customer_view.reason(mitigation.reason),
            "approved_by": customer_view.actor(mitigation.approved_by, tenant.slug),
            "withdraw_requested_by": customer_view.actor(mitigation.withdraw_requested_by, tenant.slug),
            "error": customer_view.error(mitigation.last_error),
        },
        "actions": [customer_view.action(action) for action in actions],
        "timeline": customer_timeline(tenant, mitigation),
        "decision": latest,
        "candidates": customer_candidates(latest),
        "can_act": has_role(request.user, UserRoleChoices.OPERATOR),
        "can_decide": mitigation.state == MitigationStateChoices.AWAITING_APPROVAL,
        "can_withdraw": mitigation.state in states.LIVE_STATES,
        "form": ReasonForm(),
    }
    return render(request, "customer/mitigation_detail.html", context)


@viewer_required
def mitigation_report(request: HttpRequest, pk: int) -> HttpResponse:
    """The mitigation as CSV, for the customer's incident report: the attack, the latest verdict, each decision,
    action and deployment."""
    tenant = _tenant(request)
    mitigation = get_object_or_404(selectors.mitigations_for(tenant), pk=pk)
    attack = mitigation.attack
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="sluice-{tenant.slug}-mitigation-{mitigation.pk}.csv"'
    writer = SafeCsvWriter(response)
    writer.writerow(["section", "time", "what", "state", "detail"])
    writer.writerow(["attack", attack.started_at.isoformat(), str(attack.target), attack.status,
                     f"{','.join(attack.vectors)}; peak {attack.peak_bps} bit/s, {attack.peak_pps} pkt/s"])
    writer.writerow(["mitigation", mitigation.created_at.isoformat(), mitigation.level, mitigation.state,
                     customer_view.reason(mitigation.reason)])
    writer.writerow(["verdict", mitigation.verdict_at.isoformat() if mitigation.verdict_at else "",
                     mitigation.verdict or "not judged", "", verdict_line(mitigation)])
    for decision in selectors.decisions_for(tenant).filter(mitigation=mitigation).order_by("created_at", "id"):
        center = decision.center.name if decision.center else ""
        writer.writerow(["decision", decision.created_at.isoformat(), decision.level, center,
                         customer_view.reason(decision.reason)])
    actions = selectors.actions_for(tenant).filter(mitigation=mitigation).prefetch_related("deployments")
    for action in actions:
        shown = customer_view.action(action)
        writer.writerow(["action", action.created_at.isoformat(), f"{shown.kind} {shown.route}", shown.status,
                         f"{shown.reason}; carried on {shown.carried_on} element(s)"])
    return response


def _act(request: HttpRequest, pk: int, verb: str) -> HttpResponse:
    """Look up first (404 for foreign and missing ids alike, whatever the role), then check the role, then act."""
    mitigation = get_object_or_404(selectors.mitigations_for(_tenant(request)), pk=pk)
    require_role(request, UserRoleChoices.OPERATOR)
    act_on_mitigation(request, mitigation, verb)
    return redirect("customer:mitigation", pk=mitigation.pk)


@require_POST
@viewer_required
def mitigation_approve(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, "approve")


@require_POST
@viewer_required
def mitigation_reject(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, "reject")


@require_POST
@viewer_required
def mitigation_withdraw(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, "withdraw")


@viewer_required
def prefixes(request: HttpRequest) -> HttpResponse:
    """The tenant's prefixes with their verification status; admins ask for new ones here."""
    tenant = _tenant(request)
    is_admin = has_role(request.user, UserRoleChoices.ADMIN)
    form = PrefixRequestForm()
    if request.method == "POST":
        require_role(request, UserRoleChoices.ADMIN)
        form = PrefixRequestForm(request.POST)
        if form.is_valid():
            try:
                created = request_prefix(
                    tenant, form.cleaned_data["prefix"], description=form.cleaned_data["description"],
                    acting_user=request_actor(request),
                )
            except ValidationProblem as problem:
                add_problem(form, problem)
            else:
                messages.success(request, f"{created.prefix} requested; it is pending until the provider verifies it.")
                return redirect("customer:prefixes")
    context = {"tenant": tenant, "prefixes": ProtectedPrefix.objects.all(), "form": form, "is_admin": is_admin,
               "bounds": threshold_bounds(tenant)}
    return render(request, "customer/prefixes.html", context)


@require_POST
@viewer_required
def prefix_thresholds(request: HttpRequest, pk: int) -> HttpResponse:
    """An admin sets a prefix's detection thresholds, within the bounds the provider set."""
    require_role(request, UserRoleChoices.ADMIN)
    get_object_or_404(ProtectedPrefix, pk=pk)
    save_prefix_thresholds(request, _tenant(request), pk)
    return redirect("customer:prefixes")


def _profile_initial(profile: ServiceProfile | None) -> dict[str, Any]:
    if profile is None:
        return {}
    overrides = "\n".join(f"{o.scope_kind}:{o.scope}={o.latency_ms}" for o in profile.latency_overrides.all())
    return {
        "latency_threshold_ms": profile.latency_threshold_ms,
        "application_profile": profile.application_profile,
        "automation_mode": profile.automation_mode,
        "approval_window_minutes": profile.approval_window_minutes,
        "allowed_actions": list(profile.allowed_actions),
        "hold_down_minutes": profile.hold_down_minutes,
        "detection_threshold_bps": profile.detection_threshold_bps,
        "detection_threshold_pps": profile.detection_threshold_pps,
        "latency_overrides": overrides,
    }


def _profile_history(tenant: Tenant) -> QuerySet[AuditEvent]:
    """This tenant's profile changes; audit rows name their tenant by slug, so the filter is by that slug."""
    return AuditEvent.objects.filter(tenant_slug=tenant.slug, action="profile.update")[:50]


@viewer_required
def profile(request: HttpRequest) -> HttpResponse:
    """The service profile; admins change it, through the one service that also updates what routing reads."""
    tenant = _tenant(request)
    current = ServiceProfile.objects.prefetch_related("latency_overrides").first()
    form = ServiceProfileForm(initial=_profile_initial(current))
    if request.method == "POST":
        require_role(request, UserRoleChoices.ADMIN)
        form = ServiceProfileForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                update_service_profile(
                    tenant,
                    ProfileInput(
                        latency_threshold_ms=data["latency_threshold_ms"],
                        application_profile=data["application_profile"],
                        automation_mode=data["automation_mode"],
                        approval_window_minutes=data["approval_window_minutes"],
                        allowed_actions=tuple(data["allowed_actions"]),
                        hold_down_minutes=data["hold_down_minutes"],
                        detection_threshold_bps=data["detection_threshold_bps"],
                        detection_threshold_pps=data["detection_threshold_pps"],
                        latency_overrides=data["latency_overrides"],
                    ),
                    acting_user=request_actor(request),
                )
            except ValidationProblem as problem:
                add_problem(form, problem, PROFILE_FIELD_MAP)
            else:
                messages.success(request, "Service profile saved.")
                return redirect("customer:profile")
    context = {
        "tenant": tenant,
        "form": form,
        "is_admin": has_role(request.user, UserRoleChoices.ADMIN),
        "history": _profile_history(tenant),
    }
    return render(request, "customer/profile.html", context)


@role_required(UserRoleChoices.ADMIN)
@never_cache
def users(request: HttpRequest) -> HttpResponse:
    """The tenant's users and their roles. A new user's password is generated and shown on this response only."""
    tenant = _tenant(request)
    form = UserCreateForm()
    created: tuple[str, str] | None = None
    if request.method == "POST":
        form = UserCreateForm(request.POST)
        if form.is_valid():
            created = _create_user(request, tenant, form)
            if created is not None:
                form = UserCreateForm()
    context = {"tenant": tenant, "users": User.objects.all(), "form": form, "created": created}
    return render(request, "customer/users.html", context)


@role_required(UserRoleChoices.ADMIN)
@require_POST
def two_factor_requirement(request: HttpRequest) -> HttpResponse:
    """The tenant's admin requires two-factor sign-in of all its users, or stops requiring it."""
    tenant = _tenant(request)
    required = request.POST.get("required") == "on"
    set_two_factor_requirement(tenant, required, acting_user=request_actor(request))
    messages.success(request, "Every user must now sign in with a code." if required
                     else "Two-factor sign-in is now each user's choice.")
    return redirect("customer:users")


def _create_user(request: HttpRequest, tenant: Tenant, form: UserCreateForm) -> tuple[str, str] | None:
    """Create the user and its audit row together; None (with the error on the form) when the name is taken."""
    data = form.cleaned_data
    password = secrets.token_urlsafe(12)
    try:
        with transaction.atomic():
            user = User.objects.create_user(
                username=data["username"], email=data["email"], password=password, role=data["role"]
            )
            record_audit(
                request_actor(request), "user.create", tenant_slug=tenant.slug, obj=user,
                diff={"username": user.username, "role": user.role},
            )
    except IntegrityError:
        form.add_error("username", f"{data['username']!r} is taken")
        return None
    return user.username, password
