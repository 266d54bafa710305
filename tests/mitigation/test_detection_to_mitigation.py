"""What detection knows reaches the mitigation: a reflection attack from a handful of amplifiers, seen by the
flow collector, is filtered on those amplifiers and the decision says so; a pulse wave is one attack with one
mitigation. Signals come from the collector's real path on a labelled stream; planning is the real service."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from collector.signals import AttackSignal, AttackVector
from core.actors import Actor
from devices.models import ScrubbingCenter, UpstreamPeer
from mitigation.models import Attack, Mitigation
from mitigation.services import signals
from mitigation.services.planning import plan_attacks
from netsim.flowgen.labelled import labelled_scenarios, replay_sluice
from tenants.services import ProfileInput, update_service_profile
from tests.support.world import World

pytestmark = pytest.mark.django_db
COLLECTOR = Actor("detector", "sluice-flow")
THRESHOLD_PPS = 2_000


@pytest.fixture
def network(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signals, "_schedule_planning", lambda: None)
    call_command("load_network", "netsim/demo-network.yaml", stdout=io.StringIO())
    now = timezone.now()
    ScrubbingCenter.objects.update(load_gbps=10, load_mpps=5, load_updated_at=now, healthy=True)
    UpstreamPeer.objects.update(session_state="established", telemetry_updated_at=now, utilisation=0.2)
    update_service_profile(world.acme, ProfileInput(latency_threshold_ms=40, application_profile="voip",
                           allowed_actions=("flowspec", "diversion")), acting_user=Actor("system", "tests"))


def collector_signals(name: str) -> list[AttackSignal]:
    chosen = labelled_scenarios(THRESHOLD_PPS, prefixes=["203.0.113.0/24"] * 64)
    return replay_sluice(next(s for s in chosen if s.name == name), THRESHOLD_PPS)


def test_reflection_from_a_handful_of_amplifiers_is_filtered_on_them(network: None) -> None:
    emitted = collector_signals("ntp_amplification_5x")
    start = emitted[0]
    for signal in emitted[:-1]:  # the attack still runs when planning looks at it
        signals.record_signal(signal, acting_user=COLLECTOR)
    attack = Attack.objects.get(target="203.0.113.10/32")
    assert sorted(attack.top_sources) == sorted(start.top_sources) and len(attack.top_sources) == 6
    plan_attacks()
    mitigation = Mitigation.objects.get(attack=attack)
    assert mitigation.level == "flowspec", mitigation.reason
    assert "few sources (6)" in mitigation.reason
    rules = [a.spec for a in mitigation.actions.filter(kind="flowspec")]
    assert rules and {r["source"] for r in rules} == set(start.top_sources)
    assert all(r["source_ports"] == [[123, 123]] for r in rules), rules


def test_a_pulse_wave_is_one_attack_with_one_mitigation(network: None) -> None:
    emitted = collector_signals("pulse_wave")
    for signal in emitted:
        signals.record_signal(signal, acting_user=COLLECTOR)
        plan_attacks()
    attacks = Attack.objects.filter(target="203.0.113.10/32")
    assert attacks.count() == 1 and attacks.get().vectors == [AttackVector.SYN_FLOOD.value]
    assert Mitigation.objects.filter(attack__in=attacks).count() == 1
