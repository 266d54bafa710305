"""For the SOC: FlowSpec rules that never matched, and receivers near their FlowSpec rule limits."""

from __future__ import annotations

import datetime
from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Count, Max, Min
from django.utils import timezone

from devices.models import Router, UpstreamPeer
from mitigation.choices import ActionKindChoices, ActionStatusChoices, DeploymentStateChoices, MitigationStateChoices
from mitigation.models import Action, Deployment
from mitigation.story.text import route_text

# The states whose actions the network carries (mitigation.services.network.CARRIED_STATES).
CARRIED_STATES = (MitigationStateChoices.APPLYING, MitigationStateChoices.ACTIVE)
NEVER_MATCHED_AFTER = datetime.timedelta(minutes=10)
NEAR_LIMIT = 0.8
RULES_LISTED = 200


@dataclass(frozen=True)
class NeverMatchedRule:
    """A FlowSpec rule of a live mitigation whose counters, read on the routers, never matched a packet."""

    action_id: int
    mitigation_id: int
    tenant: str
    target: str
    rule: str
    installed_at: datetime.datetime
    samples: int
    elements: int
    last_read_at: datetime.datetime


@dataclass(frozen=True)
class RuleLimitUse:
    """FlowSpec rules placed on a router or sent to an upstream, against its limit."""

    kind: str  # router or upstream
    name: str
    rules: int
    limit: int

    @property
    def ratio(self) -> float:
        return self.rules / self.limit if self.limit else 0.0

    @property
    def near(self) -> bool:
        return self.limit > 0 and self.ratio >= NEAR_LIMIT


@dataclass(frozen=True)
class RuleHitStats:
    never_matched: list[NeverMatchedRule]
    limits: list[RuleLimitUse]
    older_than: datetime.timedelta
    near_ratio: float = NEAR_LIMIT

    @property
    def near_limit(self) -> list[RuleLimitUse]:
        return [use for use in self.limits if use.near]


def _never_matched(older_than: datetime.timedelta, now: datetime.datetime, limit: int) -> list[NeverMatchedRule]:
    rows = (
        Action.objects.filter(kind=ActionKindChoices.FLOWSPEC, status=ActionStatusChoices.DESIRED,
                              mitigation__state__in=CARRIED_STATES, created_at__lte=now - older_than)
        .annotate(most=Max("counter_samples__packets"), samples=Count("counter_samples"),
                  elements=Count("counter_samples__element", distinct=True), last_read=Max("counter_samples__at"),
                  first_read=Min("counter_samples__at"))
        .filter(samples__gt=0, most=0)
        .select_related("mitigation__attack", "mitigation__tenant")
        .order_by("created_at", "id")[:limit]
    )
    return [
        NeverMatchedRule(row.pk, row.mitigation_id, row.mitigation.tenant.slug, str(row.mitigation.attack.target),
                         route_text(row.spec), row.created_at, row.samples, row.elements,
                         row.last_read)
        for row in rows
    ]


def _limit_uses() -> list[RuleLimitUse]:
    """Rules each router carries (its present FlowSpec deployments) and each upstream is sent (the carried actions
    that name it), against `Router.flowspec_rule_limit` and `UpstreamPeer.flowspec_rule_limit`."""
    placed = dict(
        Deployment.objects.filter(action__kind=ActionKindChoices.FLOWSPEC, state=DeploymentStateChoices.PRESENT,
                                  element__startswith="router:")
        .values_list("element").annotate(n=Count("action_id", distinct=True)).order_by()
    )
    uses = [RuleLimitUse("router", name, placed.get(f"router:{name}", 0), limit)
            for name, limit in Router.objects.filter(enabled=True).values_list("name", "flowspec_rule_limit")]
    sent: dict[str, int] = defaultdict(int)
    for targets in Action.objects.filter(kind=ActionKindChoices.FLOWSPEC, status=ActionStatusChoices.DESIRED,
                                         mitigation__state__in=CARRIED_STATES).values_list("targets", flat=True):
        for target in targets:
            if target.startswith("peer:"):
                sent[target] += 1
    uses += [RuleLimitUse("upstream", name, sent.get(f"peer:{pk}", 0), limit)
             for pk, name, limit in UpstreamPeer.objects.filter(flowspec_accepted=True).values_list(
                 "pk", "name", "flowspec_rule_limit")]
    return sorted(uses, key=lambda use: (-use.ratio, use.kind, use.name))


def rule_hit_stats(*, older_than: datetime.timedelta = NEVER_MATCHED_AFTER, now: datetime.datetime | None = None,
                   limit: int = RULES_LISTED) -> RuleHitStats:
    """For the SOC: FlowSpec rules of live mitigations installed longer than `older_than` whose counters never
    matched (candidates to drop), and every router and FlowSpec upstream with its rules against its limit."""
    now = now or timezone.now()
    return RuleHitStats(_never_matched(older_than, now, limit), _limit_uses(), older_than)
