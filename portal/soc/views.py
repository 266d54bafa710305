"""The SOC console at the provider's domain: every tenant at once, the network's state, and the operator's levers.

The board is what an SOC keeps on a wall screen, refreshed on every live event, so it runs a small fixed number of
queries whatever the number of tenants (aggregates in the database, related rows joined, not looped).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from django_tenants.utils import schema_context

from core.accounts.choices import UserRoleChoices
from core.errors import ValidationProblem
from core.models import AuditEvent
from core.permissions import has_role, request_actor
from devices.health import set_maintenance
from devices.models import BgpSpeaker, ElementHealth, Router, ScrubbingCenter, UpstreamPeer
from mitigation import selectors, story
from mitigation.choices import AttackStatusChoices, MitigationStateChoices
from mitigation.models import ControlSwitch, Mitigation, SignalRecord
from mitigation.services import lifecycle, states
from mitigation.services.panic import clear_panic, panic
from portal.customer.forms import ThresholdBoundsForm
from portal.soc.forms import AuditFilterForm, ClearPanicForm, PanicForm
from portal.views import (
    ReasonForm,
    act_on_mitigation,
    form_problems,
    role_required,
    save_prefix_thresholds,
    viewer_required,
)
from tenants.customer.choices import ProtectedPrefixStatusChoices
from tenants.customer.models import ProtectedPrefix
from tenants.models import Tenant
from tenants.services import (
    ThresholdBounds,
    reject_prefix,
    set_threshold_bounds,
    threshold_bounds,
    verify_prefix,
)

BOARD_STATES = (*states.LIVE_STATES, MitigationStateChoices.WITHDRAWING)
BOARD_ROWS = 100  # the board shows the newest; counts cover all, the API lists the rest
AUDIT_PAGE_SIZE = 50
DECISIONS_SHOWN = 20  # the newest; the timeline and the API have the rest

operator_required = role_required(UserRoleChoices.OPERATOR)
admin_required = role_required(UserRoleChoices.ADMIN)


def _ratio_class(ratio: float) -> str:
    return "bad" if ratio >= 0.9 else "warn" if ratio >= 0.7 else ""


def _centers_with_load() -> list[ScrubbingCenter]:
    """Centers with their live mitigation count (one query) and load ratios ready for the bars."""
    centers = list(
        ScrubbingCenter.objects.annotate(
            live_mitigations=Count("mitigations", filter=Q(mitigations__state__in=BOARD_STATES))
        ).order_by("name")
    )
    for center in centers:
        gbps = center.load_gbps / center.capacity_gbps if center.capacity_gbps else 0.0
        mpps = center.load_mpps / center.capacity_mpps if center.capacity_mpps else 0.0
        center.gbps_pct = min(round(gbps * 100), 100)  # type: ignore[attr-defined]  # display values attached for the template
        center.mpps_pct = min(round(mpps * 100), 100)  # type: ignore[attr-defined]  # display values attached for the template
        center.gbps_class, center.mpps_class = _ratio_class(gbps), _ratio_class(mpps)  # type: ignore[attr-defined]  # display values attached for the template
    return centers  # type: ignore[return-value]  # annotated rows are ScrubbingCenter rows


def _upstreams() -> list[UpstreamPeer]:
    peers = list(UpstreamPeer.objects.select_related("router", "center").order_by("center__name", "name"))
    for peer in peers:
        peer.util_pct = min(round(peer.utilisation * 100), 100)  # type: ignore[attr-defined]  # display values attached for the template
        peer.util_class = _ratio_class(peer.utilisation)  # type: ignore[attr-defined]  # display values attached for the template
    return peers


def _board_context() -> dict[str, Any]:
    """Everything on the board in a fixed number of queries (about eight), independent of the tenant count."""
    state_counts = dict(Mitigation.objects.values_list("state").annotate(n=Count("id")).order_by())
    return {
        "switch": ControlSwitch.objects.filter(pk=1).first(),
        "attacks": list(
            selectors.attacks_for(None).select_related("mitigation").filter(status=AttackStatusChoices.ACTIVE)[
                :BOARD_ROWS
            ]
        ),
        "tenant_count": Tenant.objects.exclude(schema_name="public").count(),
        "state_counts": [(label, value, state_counts.get(value, 0)) for value, label in MitigationStateChoices.choices],
        "mitigations": list(
            selectors.mitigations_for(None)
            .filter(state__in=BOARD_STATES)
            .annotate(action_count=Count("actions", filter=~Q(actions__status="retired")))
            .order_by("-updated_at")[:BOARD_ROWS]
        ),
        "centers": _centers_with_load(),
        "upstreams": _upstreams(),
    }


@viewer_required
def board(request: HttpRequest) -> HttpResponse:
    """The live board across all tenants."""
    return render(request, "soc/board.html", _board_context())


@viewer_required
@never_cache
def board_fragment(request: HttpRequest) -> HttpResponse:
    """The board's panels alone, re-fetched by the page on each live event."""
    return render(request, "soc/_board.html", _board_context())


@dataclass(frozen=True)
class InputRow:
    key: str
    value: str


def flatten_inputs(value: Any, prefix: str = "") -> Iterator[InputRow]:
    """A decision's JSON inputs as key/value rows (nested keys joined with dots), so a person can scan them."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from flatten_inputs(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        for index, item in enumerate(value):
            yield from flatten_inputs(item, f"{prefix}[{index}]")
    else:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        yield InputRow(prefix or "(value)", text)


@dataclass(frozen=True)
class CounterRow:
    """One rule on one router, ready to print."""

    element: str
    at: datetime.datetime | None
    packets: int
    dropped_packets: int
    matched: str
    dropped: str
    last_hit_at: datetime.datetime | None


def counter_rows(rule: story.RuleCounterSummary) -> list[CounterRow]:
    """A rule's per-router rows, each with its current rates (a dash where the last two samples give none)."""
    return [
        CounterRow(e.element, e.at, e.packets, e.dropped_packets,
                   story.rates_text(e.rate.matched_bps, e.rate.matched_pps) if e.rate else "—",
                   story.rates_text(e.rate.dropped_bps, e.rate.dropped_pps) if e.rate else "—",
                   e.last_hit_at)
        for e in rule.elements
    ]


def _story_live_context(mitigation: Mitigation) -> dict[str, Any]:
    """What live events change on the page: the verdict, the traffic graph and the rule counters."""
    verdict = story.latest_verdict(mitigation)
    return {
        "mitigation": mitigation,
        "verdict": verdict,
        "verdict_figures": story.verdict_figures(verdict),
        "series": story.traffic_series(mitigation).as_json(),
        "rules": [(rule, counter_rows(rule), story.rates_text(rule.matched_bps, rule.matched_pps),
                   story.rates_text(rule.dropped_bps, rule.dropped_pps))
                  for rule in story.rule_counters_of(mitigation)],
    }


def _mitigation_context(mitigation: Mitigation, request: HttpRequest) -> dict[str, Any]:
    decisions = list(selectors.decisions_for(None).filter(mitigation=mitigation)[:DECISIONS_SHOWN])
    for decision in decisions:
        decision.candidates = story.candidate_centers(decision)  # type: ignore[attr-defined]  # for the template
        decision.input_rows = list(flatten_inputs(decision.inputs))  # type: ignore[attr-defined]  # for the template
    return {
        **_story_live_context(mitigation),
        "attack": mitigation.attack,
        "actions": selectors.actions_for(None).filter(mitigation=mitigation).prefetch_related("deployments"),
        "decisions": decisions,
        "timeline": story.timeline(mitigation),
        "signals": SignalRecord.objects.filter(attack_id=mitigation.attack_id).order_by("-received_at")[:50],
        "can_act": has_role(request.user, UserRoleChoices.OPERATOR),
        "can_decide": mitigation.state == MitigationStateChoices.AWAITING_APPROVAL,
        "can_withdraw": mitigation.state in states.LIVE_STATES,
        "centers": ScrubbingCenter.objects.order_by("name"),
    }


@viewer_required
@never_cache
def mitigation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A mitigation's story: verdict, timeline, traffic before and after, rule counters, the compared centers.

    `?part=live` answers the verdict, graph and counters alone, re-fetched by the page on this mitigation's
    verdict and center report events."""
    mitigation = get_object_or_404(selectors.mitigations_for(None), pk=pk)
    if request.GET.get("part") == "live":
        return render(request, "soc/_mitigation_live.html", _story_live_context(mitigation))
    return render(request, "soc/mitigation_detail.html", _mitigation_context(mitigation, request))


@viewer_required
def rule_hits(request: HttpRequest) -> HttpResponse:
    """FlowSpec rules of live mitigations that never matched (candidates to drop), and the routers and upstreams
    near their FlowSpec rule limits."""
    stats = story.rule_hit_stats()
    context = {"stats": stats, "older_than_minutes": int(stats.older_than.total_seconds() // 60),
               "near_pct": round(stats.near_ratio * 100)}
    return render(request, "soc/rule_hits.html", context)


@viewer_required
def attack_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """An attack; with a mitigation it is that mitigation's page, else the bare attack (e.g. unattributed)."""
    attack = get_object_or_404(selectors.attacks_for(None), pk=pk)
    mitigation = selectors.mitigations_for(None).filter(attack=attack).first()
    if mitigation is not None:
        return redirect("soc:mitigation", pk=mitigation.pk)
    signals = SignalRecord.objects.filter(attack=attack).order_by("-received_at")[:50]
    return render(request, "soc/attack_detail.html", {"attack": attack, "signals": signals})


def _act(request: HttpRequest, pk: int, verb: str) -> HttpResponse:
    mitigation = get_object_or_404(selectors.mitigations_for(None), pk=pk)
    act_on_mitigation(request, mitigation, verb)
    return redirect("soc:mitigation", pk=mitigation.pk)


@require_POST
@operator_required
def mitigation_approve(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, "approve")


@require_POST
@operator_required
def mitigation_reject(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, "reject")


@require_POST
@operator_required
def mitigation_withdraw(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, "withdraw")


@require_POST
@operator_required
def mitigation_escalate(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, "escalate")


@require_POST
@operator_required
def mitigation_move(request: HttpRequest, pk: int) -> HttpResponse:
    """Move a mitigation to the chosen center; the engine keeps it there and says so in its reason."""
    mitigation = get_object_or_404(selectors.mitigations_for(None), pk=pk)
    form = ReasonForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        center_id = int(request.POST.get("center", ""))
        lifecycle.move_mitigation(mitigation.pk, center_id=center_id, acting_user=request_actor(request), reason=reason)
    except ValueError:
        messages.error(request, "Could not move: choose a center")
    except ValidationProblem as problem:
        messages.error(request, f"Could not move: {problem.message}")
    else:
        messages.success(request, f"Mitigation {mitigation.pk}: moved; the engine replans it now.")
    return redirect("soc:mitigation", pk=mitigation.pk)


@admin_required
def panic_view(request: HttpRequest) -> HttpResponse:
    """The kill switch behind a typed confirmation; clearing it is on the same page."""
    switch = ControlSwitch.current()
    form, clear_form = PanicForm(), ClearPanicForm()
    if request.method == "POST" and "clear" in request.POST:
        clear_form = ClearPanicForm(request.POST)
        if clear_form.is_valid():
            clear_panic(acting_user=request_actor(request), reason=clear_form.cleaned_data["reason"])
            messages.success(request, "Panic cleared: announcements are allowed again.")
            return redirect("soc:panic")
    elif request.method == "POST":
        form = PanicForm(request.POST)
        if form.is_valid():
            report = panic(acting_user=request_actor(request), reason=form.cleaned_data["reason"])
            if report.error:
                messages.error(
                    request, f"Panic set; {report.mitigations} withdrawing; convergence failed: {report.error}"
                )
            else:
                messages.success(request, f"Panic set: {report.mitigations} mitigation(s) withdrawn.")
            return redirect("soc:panic")
    return render(request, "soc/panic.html", {"switch": switch, "form": form, "clear_form": clear_form})


@dataclass(frozen=True)
class PendingPrefix:
    tenant: Tenant
    prefix: ProtectedPrefix


def _pending_prefixes() -> list[PendingPrefix]:
    """Pending prefixes of every tenant: one query per tenant schema, which is why this is not on the board."""
    pending: list[PendingPrefix] = []
    for tenant in Tenant.objects.exclude(schema_name="public").order_by("name"):
        with schema_context(tenant.schema_name):
            rows = list(
                ProtectedPrefix.objects.filter(status=ProtectedPrefixStatusChoices.PENDING).order_by("created_at")
            )
        pending.extend(PendingPrefix(tenant, row) for row in rows)
    return pending


@viewer_required
def prefix_queue(request: HttpRequest) -> HttpResponse:
    context = {
        "pending": _pending_prefixes(),
        "can_verify": has_role(request.user, UserRoleChoices.ADMIN),
        "form": ReasonForm(),
        "tenants": Tenant.objects.exclude(schema_name="public").order_by("name"),
    }
    return render(request, "soc/prefix_queue.html", context)


@viewer_required
def tenant_thresholds(request: HttpRequest, slug: str) -> HttpResponse:
    """A tenant's detection thresholds per prefix, and the bounds within which its own users may set them."""
    tenant = _tenant_by_slug(slug)
    bounds = threshold_bounds(tenant)
    with schema_context(tenant.schema_name):
        prefixes = list(ProtectedPrefix.objects.all())
    context = {
        "tenant": tenant, "prefixes": prefixes, "bounds_form": ThresholdBoundsForm(initial=dataclasses.asdict(bounds)),
        "can_edit": has_role(request.user, UserRoleChoices.ADMIN),
    }
    return render(request, "soc/thresholds.html", context)


@require_POST
@admin_required
def tenant_threshold_bounds(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = _tenant_by_slug(slug)
    form = ThresholdBoundsForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Bounds not changed: {form_problems(form)}")
        return redirect("soc:tenant-thresholds", slug=tenant.slug)
    try:
        set_threshold_bounds(tenant, ThresholdBounds(**form.cleaned_data), acting_user=request_actor(request))
    except ValidationProblem as problem:
        messages.error(request, f"Bounds not changed: {problem.field}: {problem.message}")
    else:
        messages.success(request, f"{tenant.slug}: threshold bounds saved.")
    return redirect("soc:tenant-thresholds", slug=tenant.slug)


@require_POST
@admin_required
def tenant_prefix_thresholds(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    tenant = _tenant_by_slug(slug)
    with schema_context(tenant.schema_name):
        if not ProtectedPrefix.objects.filter(pk=pk).exists():
            raise Http404("no such prefix")
    save_prefix_thresholds(request, tenant, pk)
    return redirect("soc:tenant-thresholds", slug=tenant.slug)


def _tenant_by_slug(slug: str) -> Tenant:
    tenant = Tenant.objects.exclude(schema_name="public").filter(slug=slug).first()
    if tenant is None:
        raise Http404("no such tenant")
    return tenant


@require_POST
@admin_required
def prefix_verify(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    tenant = _tenant_by_slug(slug)
    try:
        prefix = verify_prefix(tenant, pk, acting_user=request_actor(request))
    except ProtectedPrefix.DoesNotExist:
        raise Http404("no such prefix") from None
    except ValidationProblem as problem:
        messages.error(request, f"{tenant.slug}: not verified: {problem.message}")
    else:
        messages.success(request, f"{tenant.slug}: {prefix.prefix} verified.")
    return redirect("soc:prefixes")


@require_POST
@admin_required
def prefix_reject(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    tenant = _tenant_by_slug(slug)
    form = ReasonForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        prefix = reject_prefix(
            tenant, pk, reason=reason or "rejected by the provider", acting_user=request_actor(request)
        )
    except ProtectedPrefix.DoesNotExist:
        raise Http404("no such prefix") from None
    except ValidationProblem as problem:
        messages.error(request, f"{tenant.slug}: not rejected: {problem.message}")
    else:
        messages.success(request, f"{tenant.slug}: {prefix.prefix} rejected.")
    return redirect("soc:prefixes")


# Routers are listed from these columns only, so credentials never even reach the template.
ROUTER_COLUMNS = (
    "id", "name", "vendor", "platform", "role", "center__name", "mgmt_host", "mgmt_port", "flowspec_rule_limit",
    "enabled", "last_seen_at",
)


@require_POST
@operator_required
def element_maintenance(request: HttpRequest) -> HttpResponse:
    """Take a router or speaker out of service, or put it back, with a reason (audited)."""
    element = request.POST.get("element", "")
    kind, _, name = element.partition(":")
    known = (kind == "router" and Router.objects.filter(name=name).exists()) or (
        kind == "speaker" and BgpSpeaker.objects.filter(name=name).exists())
    if not known:
        raise Http404("no such element")
    on = request.POST.get("maintenance") == "on"
    try:
        set_maintenance(element, on=on, reason=request.POST.get("reason", ""), acting_user=request_actor(request))
    except ValidationProblem as problem:
        messages.error(request, f"{name}: {problem.message}")
    else:
        messages.success(request, f"{name}: {'in maintenance' if on else 'back in service'}.")
    return redirect("soc:inventory")


@viewer_required
def inventory(request: HttpRequest) -> HttpResponse:
    """Centers, routers (never their credentials), upstreams and BGP speakers, each in one query."""
    health = {row.element: row for row in ElementHealth.objects.all()}
    routers = list(Router.objects.order_by("name").values(*ROUTER_COLUMNS))
    for router in routers:
        router["health"] = health.get(f"router:{router['name']}")
        router["element"] = f"router:{router['name']}"
    speakers = list(BgpSpeaker.objects.select_related("center").annotate(neighbor_count=Count("neighbors")))
    for speaker in speakers:
        speaker.health = health.get(f"speaker:{speaker.name}")  # type: ignore[attr-defined]  # for the template
        speaker.element = f"speaker:{speaker.name}"  # type: ignore[attr-defined]  # for the template
    context = {
        "centers": _centers_with_load(),
        "routers": routers,
        "upstreams": _upstreams(),
        "speakers": speakers,
        "can_act": has_role(request.user, UserRoleChoices.OPERATOR),
    }
    return render(request, "soc/inventory.html", context)


@viewer_required
def audit_log(request: HttpRequest) -> HttpResponse:
    """The audit log, filtered by tenant, action prefix, actor and date, a page at a time."""
    form = AuditFilterForm(request.GET or None)
    events = form.apply(AuditEvent.objects.all()) if form.is_bound else AuditEvent.objects.all()
    page = Paginator(events, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "page": page,
        "query": query.urlencode(),
        "tenant_slugs": Tenant.objects.exclude(schema_name="public").values_list("slug", flat=True),
    }
    return render(request, "soc/audit.html", context)

