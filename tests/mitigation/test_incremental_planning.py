"""Incremental planning: a signal plans its own attack (and those sharing its diversion prefix) around the others,
which keep their places and whose load and rules are counted; a change of the network makes the run a full one."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from collector.signals import AttackSignal
from core.actors import Actor
from devices.models import ScrubbingCenter, UpstreamPeer
from mitigation.models import Action, Decision, Mitigation
from mitigation.services.gate import retire_unsafe
from mitigation.services.planning import _incremental_scope, plan_attacks
from mitigation.services.signals import record_signal
from tenants.models import Tenant
from tenants.services import ProfileInput, update_service_profile
from tests.support.world import World

pytestmark = pytest.mark.django_db
SYSTEM = Actor("system", "tests")
DETECTOR = Actor("detector", "tests")


@pytest.fixture
def network(world: World) -> World:
    """The demo network with only Frankfurt able to take diversions, at 100 Gbps, reporting no load yet."""
    call_command("load_network", "netsim/demo-network.yaml", stdout=io.StringIO())
    now = timezone.now()
    ScrubbingCenter.objects.update(load_gbps=0, load_mpps=0, load_updated_at=now, healthy=False)
    ScrubbingCenter.objects.filter(slug="fra").update(healthy=True, capacity_gbps=100, capacity_mpps=100)
    UpstreamPeer.objects.update(session_state="established", telemetry_updated_at=now, utilisation=0.1)
    for tenant in (world.acme, world.globex):
        update_service_profile(tenant, ProfileInput(latency_threshold_ms=100, application_profile="web",
                               allowed_actions=("flowspec", "diversion")), acting_user=SYSTEM)
    return world


def attack(target: str, gbps: float) -> Mitigation:
    found = record_signal(AttackSignal(target=target, vectors=("syn_flood",), bps=int(gbps * 1e9), pps=2_000_000),
                          acting_user=DETECTOR)
    assert found is not None
    return Mitigation.objects.get(attack=found)


def test_a_new_attack_is_fitted_around_the_diversions_others_hold(network: World) -> None:
    held = attack("203.0.113.10", 60)
    plan_attacks(full=True)
    held.refresh_from_db()
    assert held.level == "diversion" and held.center.slug == "fra"
    decisions = Decision.objects.filter(mitigation=held).count()

    new = attack("198.51.100.10", 60)
    plan_attacks(full=False)
    new.refresh_from_db()
    held.refresh_from_db()
    # Frankfurt reports no load yet, but the 60 Gbps it was given stays counted: 40 Gbps are left, not 100.
    assert new.level != "diversion", new.reason
    assert "Frankfurt: over capacity (needs 60.0 Gbps / 2.0 Mpps, 35.0 Gbps" in new.reason
    assert held.center.slug == "fra" and Decision.objects.filter(mitigation=held).count() == decisions, \
        "the attack planned before keeps its place and gets no new decision"


def test_attacks_that_may_share_a_diversion_prefix_are_planned_together(network: World) -> None:
    first = attack("203.0.113.10", 10)
    other_tenant = attack("198.51.100.10", 10)
    plan_attacks(full=True)
    assert _incremental_scope() == []

    second = attack("203.0.113.20", 10)
    assert _incremental_scope() == sorted([first.pk, second.pk]), \
        "the new attack's /24 is also the first one's diversion prefix; the other tenant's is left alone"
    plan_attacks(full=False)
    first.refresh_from_db()
    second.refresh_from_db()
    other_tenant.refresh_from_db()
    assert first.center_id == second.center_id
    assert not Mitigation.objects.filter(replan=True).exists()


def test_a_signal_that_changes_the_attack_asks_for_its_plan_again(network: World) -> None:
    mitigation = attack("203.0.113.10", 10)
    plan_attacks(full=True)
    assert _incremental_scope() == []
    attack("203.0.113.10", 10.5)
    assert _incremental_scope() == [], "a wobble under 10 % asks for nothing"
    attack("203.0.113.10", 30)
    mitigation.refresh_from_db()
    assert mitigation.replan and _incremental_scope() == [mitigation.pk]
    plan_attacks(full=False)
    mitigation.refresh_from_db()
    assert not mitigation.replan


def test_a_change_of_the_network_makes_the_run_full(network: World) -> None:
    mitigation = attack("203.0.113.10", 10)
    plan_attacks(full=True)
    mitigation.refresh_from_db()
    assert mitigation.center.slug == "fra"
    before = Decision.objects.filter(mitigation=mitigation).count()

    plan_attacks(full=False)
    assert Decision.objects.filter(mitigation=mitigation).count() == before, "nothing asked, nothing changed"

    ScrubbingCenter.objects.filter(slug="fra").update(healthy=False)
    ScrubbingCenter.objects.filter(slug="ams").update(healthy=True)
    plan_attacks(full=False)
    mitigation.refresh_from_db()
    assert mitigation.center.slug == "ams", "the unhealthy center is planned around at once, not at the next full run"
    assert Tenant.objects.filter(pk=mitigation.tenant_id).exists()


def test_routes_announced_ahead_are_gated_against_what_every_other_action_uses(network: World, settings: Any) -> None:
    """A plan's new actions are read and checked alone when announced ahead; the tenant's quota still counts the
    actions it already carries, so a route over the quota is never announced (and withdrawn a moment later)."""
    settings.SLUICE_TENANT_QUOTAS = {"diversion": 1}
    first = attack("203.0.113.10", 10)
    plan_attacks(full=True)
    second = attack("2001:db8:100::10", 10)
    plan_attacks(full=False)
    first_action = Action.objects.get(mitigation=first, kind="diversion")
    newest = list(Action.objects.filter(mitigation=second, kind="diversion").select_related("mitigation__tenant"))
    assert [a.status for a in newest] == ["desired"], "planning does not count quotas: the gate does"

    assert retire_unsafe(newest, among_others=True) == []
    newest[0].refresh_from_db()
    first_action.refresh_from_db()
    assert newest[0].status == "retired" and newest[0].refusal_code == "tenant_quota"
    assert first_action.status == "desired", "the action the tenant had first keeps its place"
    second.refresh_from_db()
    assert second.replan, "the mitigation whose action was retired asks for a new plan"
