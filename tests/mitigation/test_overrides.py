"""SOC overrides: move a mitigation to another center, escalate it; planning keeps the operator's choice."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from collector.signals import AttackSignal
from core.actors import CLOSED_LOOP, Actor
from core.errors import ValidationProblem
from core.models import AuditEvent
from devices.models import ScrubbingCenter, UpstreamPeer
from mitigation.models import Mitigation, NeverBlockPrefix
from mitigation.services.lifecycle import escalate_mitigation, move_mitigation
from mitigation.services.planning import plan_attacks
from mitigation.services.signals import record_signal
from tenants.services import ProfileInput, update_service_profile
from tests.support.world import World

pytestmark = pytest.mark.django_db
OPERATOR = Actor("user", "soc")


def demo_network(world: World, allowed_actions: tuple[str, ...]) -> None:
    """The demo network, healthy, with fresh telemetry; Acme's web profile allows these actions."""
    call_command("load_network", "netsim/demo-network.yaml", stdout=io.StringIO())
    now = timezone.now()
    ScrubbingCenter.objects.update(load_gbps=10, load_mpps=5, load_updated_at=now, healthy=True)
    UpstreamPeer.objects.update(session_state="established", telemetry_updated_at=now, utilisation=0.2)
    update_service_profile(world.acme, ProfileInput(latency_threshold_ms=40, application_profile="web",
                           allowed_actions=allowed_actions), acting_user=Actor("system", "t"))


@pytest.fixture
def planned(world: World) -> Mitigation:
    demo_network(world, ("flowspec", "diversion", "rtbh"))
    attack = record_signal(AttackSignal(target="203.0.113.90", vectors=("syn_flood",), bps=20_000_000_000,
                                        pps=3_000_000), acting_user=Actor("detector", "t"))
    plan_attacks()
    return Mitigation.objects.get(attack=attack)


def test_a_moved_mitigation_is_planned_at_the_operators_center(planned: Mitigation) -> None:
    other = ScrubbingCenter.objects.exclude(pk=planned.center_id).order_by("-capacity_gbps").first()
    move_mitigation(planned.pk, center_id=other.pk, acting_user=OPERATOR, reason="Frankfurt maintenance")
    plan_attacks()
    planned.refresh_from_db()
    assert planned.center_id == other.pk and planned.level == "diversion"
    assert planned.reason.startswith("Operator override by user:soc")
    assert planned.decisions.first().reason.startswith("Operator override")
    assert AuditEvent.objects.filter(action="mitigation.move", reason="Frankfurt maintenance").exists()


def test_escalation_climbs_the_ladder_and_stops_at_the_top(planned: Mitigation) -> None:
    start = planned.level
    escalate_mitigation(planned.pk, acting_user=OPERATOR)
    plan_attacks()
    planned.refresh_from_db()
    ladder = ["none", "flowspec", "diversion", "rtbh"]
    assert ladder.index(planned.override_level) == ladder.index(start) + 1
    while planned.override_level != "rtbh":
        escalate_mitigation(planned.pk, acting_user=OPERATOR)
        planned.refresh_from_db()
    plan_attacks()
    planned.refresh_from_db()
    assert planned.level == "rtbh"
    assert all("65535:666" in a.spec["communities"] for a in planned.actions.filter(status="desired"))
    with pytest.raises(ValidationProblem, match="top of the ladder"):
        escalate_mitigation(planned.pk, acting_user=OPERATOR)


def test_an_escalation_the_engine_cannot_make_keeps_the_plan_that_holds(world: World) -> None:
    # Found live in the demo: the closed loop escalated a FlowSpec mitigation to diversion, diverting the /24 would
    # cover a never-block entry, and the plan became "none": the working discard was withdrawn.
    demo_network(world, ("flowspec", "diversion"))
    NeverBlockPrefix.objects.create(prefix="203.0.113.53/32", reason="resolver")
    attack = record_signal(AttackSignal(target="203.0.113.10", vectors=("dns_amplification",), bps=20_000_000_000,
                                        pps=2_000_000, top_sources=("198.18.0.1/32", "198.18.0.2/31")),
                           acting_user=Actor("detector", "t"))
    plan_attacks()
    mitigation = Mitigation.objects.get(attack=attack)
    assert mitigation.level == "flowspec"
    rules = set(mitigation.actions.filter(status="desired").values_list("pk", flat=True))
    assert rules
    Mitigation.objects.filter(pk=mitigation.pk).update(override_level="diversion", override_by=str(CLOSED_LOOP),
                                                       replan=True)
    plan_attacks()
    plan_attacks()
    mitigation.refresh_from_db()
    assert mitigation.level == "flowspec" and mitigation.state != "planned"
    assert set(mitigation.actions.filter(status="desired").values_list("pk", flat=True)) == rules
    assert mitigation.reason.startswith("Escalation to diversion by the closed loop is not possible, so flowspec "
                                        "stays.")
    assert "never-block" in mitigation.reason
    assert mitigation.decisions.filter(reason=mitigation.reason).count() == 1, "said once, not at every run"


def test_moving_to_a_missing_center_is_refused(planned: Mitigation) -> None:
    with pytest.raises(ValidationProblem, match="no such scrubbing center"):
        move_mitigation(planned.pk, center_id=999_999, acting_user=OPERATOR)


def test_the_soc_page_and_the_api_move_and_escalate(planned: Mitigation, world: World) -> None:
    from django.test import Client

    from core.accounts.models import ApiToken, User
    from tests.support.world import OPERATOR_PASSWORD, login_with_code

    client = Client(HTTP_HOST="localhost")
    login_with_code(client, "soc", OPERATOR_PASSWORD)
    page = client.get(f"/soc/mitigations/{planned.pk}/")
    assert b"Escalate" in page.content and b"Move" in page.content
    other = ScrubbingCenter.objects.exclude(pk=planned.center_id).first()
    assert client.post(f"/soc/mitigations/{planned.pk}/move/", {"center": other.pk}).status_code == 302
    planned.refresh_from_db()
    assert planned.override_center_id == other.pk
    key, prefix, digest = ApiToken.generate_key()
    ApiToken.objects.create(user=User.objects.get(username="soc"), name="t", key_prefix=prefix, key_hash=digest,
                            scopes=["read", "write"])
    api = Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Token {key}")
    assert api.post(f"/api/v1/mitigations/{planned.pk}/escalate/", {}, content_type="application/json"
                    ).status_code == 202
    assert api.post(f"/api/v1/mitigations/{planned.pk}/move/", {"center": "nowhere"},
                    content_type="application/json").status_code == 400
