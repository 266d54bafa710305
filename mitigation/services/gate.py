"""Safety at the moment of applying: every desired action is checked again when the desired state is built.

What was safe when it was planned may not be now: the prefix was rejected or moved to another tenant, a
never-block entry was added, the tenant was suspended, a router's FlowSpec limit or the tenant's quota is reached.
Such an action is retired with its reason (audited, published) instead of being pushed, so the next convergence
withdraws it; planning runs again for the attack.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from core.actors import ENGINE
from core.audit import record_audit
from core.events import publish
from devices.models import Router
from mitigation import jobs, safety
from mitigation.choices import ActionKindChoices, ActionStatusChoices
from mitigation.engine.types import ActionKind, PlannedAction
from mitigation.models import Action, Mitigation
from mitigation.routes import route_from_spec
from mitigation.services.planning import never_block_list
from tenants.choices import TenantStatusChoices
from tenants.models import VerifiedPrefix

TENANT_SUSPENDED = "tenant_suspended"
QUOTA = "tenant_quota"
DEFAULT_QUOTAS = {ActionKindChoices.FLOWSPEC: 200, ActionKindChoices.DIVERSION: 50, ActionKindChoices.RTBH: 50}


def quotas() -> dict[str, int]:
    """Each tenant's cap on live actions per kind (`SLUICE_TENANT_QUOTAS` overrides the defaults)."""
    return {**DEFAULT_QUOTAS, **getattr(settings, "SLUICE_TENANT_QUOTAS", {})}


def edge_rule_limit() -> int | None:
    """The FlowSpec rules every edge router can hold: the smallest limit among them (None without routers)."""
    limits = Router.objects.filter(enabled=True, role="edge").values_list("flowspec_rule_limit", flat=True)
    return min(limits, default=None)


def retire_unsafe(actions: Sequence[Action], *, among_others: bool = False) -> list[Action]:
    """The actions still safe to apply, oldest first; the others are retired with their reason.

    Checked: the tenant is active; the route is inside a prefix verified for that tenant now and outside the
    never-block list, with the validators' every other rule; the edge routers' FlowSpec rule limit; the tenant's
    quota per kind. `among_others`: these are the newest of the carried actions, so the rules and quotas the
    others use are counted first. Side effects for refused ones: Action rows retired, audit, events, a planning job.
    """
    if not actions:
        return []
    ordered = sorted(actions, key=lambda a: (a.created_at, a.pk))
    tenant_ids = {a.mitigation.tenant_id for a in ordered}
    prefixes: dict[int, list[str]] = defaultdict(list)
    for tenant_id, prefix in VerifiedPrefix.objects.filter(tenant_id__in=tenant_ids).values_list("tenant_id", "prefix"):
        prefixes[tenant_id].append(str(prefix))
    never_block = never_block_list()
    limit = edge_rule_limit()
    caps = {safety.EDGE_TARGET: limit} if limit is not None else {}
    edge_rules, per_tenant = _in_use_besides(ordered, tenant_ids) if among_others else (0, Counter())
    caps_per_kind = quotas()
    safe: list[Action] = []
    refused: list[tuple[Action, str, str]] = []
    for action in ordered:
        tenant = action.mitigation.tenant
        if tenant.status != TenantStatusChoices.ACTIVE:
            refused.append((action, TENANT_SUSPENDED, f"tenant {tenant.slug} is {tenant.status}"))
            continue
        planned = PlannedAction(ActionKind(action.kind), route_from_spec(action.spec), tuple(action.targets), "")
        limits = safety.SafetyLimits(target_caps=caps, rules_in_use={safety.EDGE_TARGET: edge_rules})
        refusals = safety.validate_action(planned, tenant_prefixes=prefixes[tenant.pk], never_block=never_block,
                                          limits=limits)
        if refusals:
            refused.append((action, refusals[0].code, "; ".join(r.message for r in refusals)))
            continue
        key = (tenant.pk, action.kind)
        if per_tenant[key] >= caps_per_kind[action.kind]:
            refused.append((action, QUOTA, f"tenant {tenant.slug} already has {caps_per_kind[action.kind]} live "
                                           f"{action.kind} actions, its quota"))
            continue
        per_tenant[key] += 1
        if action.kind == ActionKindChoices.FLOWSPEC and safety.EDGE_TARGET in action.targets:
            edge_rules += 1
        safe.append(action)
    if refused:
        _retire(refused)
    return safe


def _in_use_besides(actions: Sequence[Action], tenant_ids: set[int]) -> tuple[int, Counter[tuple[int, str]]]:
    """Edge FlowSpec rules, and these tenants' actions per kind, that the other carried actions use."""
    from mitigation.services.network import CARRIED_STATES

    others = Action.objects.filter(status=ActionStatusChoices.DESIRED, mitigation__state__in=CARRIED_STATES).exclude(
        pk__in=[a.pk for a in actions])
    edge_rules = others.filter(kind=ActionKindChoices.FLOWSPEC, targets__contains=[safety.EDGE_TARGET]).count()
    per_tenant: Counter[tuple[int, str]] = Counter()
    for row in others.filter(mitigation__tenant_id__in=tenant_ids).values("mitigation__tenant_id", "kind").annotate(
            n=Count("pk")):
        per_tenant[(row["mitigation__tenant_id"], row["kind"])] = row["n"]
    return edge_rules, per_tenant


def _retire(refused: list[tuple[Action, str, str]]) -> None:
    now = timezone.now()
    with transaction.atomic():
        for action, code, message in refused:
            updated = Action.objects.filter(pk=action.pk, status=ActionStatusChoices.DESIRED).update(
                status=ActionStatusChoices.RETIRED, retired_at=now, refusal_code=code,
                refusal_reason=f"at apply time: {message}",
            )
            if not updated:
                continue
            mitigation = action.mitigation
            Mitigation.objects.filter(pk=mitigation.pk).update(replan=True)
            record_audit(ENGINE, "action.retired", tenant_slug=mitigation.tenant.slug, obj=action,
                         reason=f"no longer safe to apply: {message}", diff={"code": code})
            publish("action.retired", {"mitigation": mitigation.pk, "action": action.pk, "code": code,
                                       "reason": message}, tenant_schema=mitigation.tenant.schema_name)
        jobs.plan_after_commit()
