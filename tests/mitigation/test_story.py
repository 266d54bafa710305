"""The read side of a mitigation's story (mitigation.story): rows made with the ORM as the services would leave
them, read back as the SOC and the customer see them. Counter gaps stay gaps; a reinstalled rule starts anew."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from core.audit import record_audit
from core.models import AuditEvent
from devices.models import Router, ScrubbingCenter, UpstreamPeer
from mitigation import story
from mitigation.engine import plan_mitigations
from mitigation.models import (
    Action,
    Attack,
    CenterPrefixSample,
    Decision,
    Deployment,
    Mitigation,
    RuleCounterSample,
    SignalRecord,
    Verdict,
)
from tenants.models import Tenant
from tests.mitigation.test_engine import attack as live_attack
from tests.mitigation.test_engine import center, snapshot, tenant
from tests.support.world import TEST_ACTOR, World

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0) - datetime.timedelta(hours=1)
RULE = {"type": "flowspec", "destination": "203.0.113.10/32", "action": "discard", "protocols": [[17, 17]],
        "source_ports": [[53, 53]]}


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def active_mitigation(owner: Tenant, target: str = "203.0.113.10/32") -> Mitigation:
    attack = Attack.objects.create(tenant=owner, target=target, vectors=["dns_amplification"], bps=40_000_000_000,
                                   pps=4_000_000, started_at=at(0))
    mitigation = Mitigation.objects.create(attack=attack, tenant=owner, state="active", level="flowspec",
                                           reason="FlowSpec at the edge", activated_at=at(60))
    Mitigation.objects.filter(pk=mitigation.pk).update(created_at=at(10))
    mitigation.refresh_from_db()
    return mitigation


def flowspec(mitigation: Mitigation, spec: dict[str, object] | None = None, *, key: str = "rule-1") -> Action:
    action = Action.objects.create(mitigation=mitigation, kind="flowspec", spec=spec or RULE, route_key=key,
                                   targets=["edge"], reason="drop the amplification")
    Action.objects.filter(pk=action.pk).update(created_at=at(20))
    action.refresh_from_db()
    return action


def sample(action: Action, seconds: float, packets: int, size: int, *, element: str = "router:mx-1",
           dropped: tuple[int, int] | None = None) -> None:
    dropped_packets, dropped_bytes = dropped or (packets, size)
    RuleCounterSample.objects.create(action=action, element=element, at=at(seconds), packets=packets, bytes=size,
                                     dropped_packets=dropped_packets, dropped_bytes=dropped_bytes)


class TestTimeline:
    def test_tells_signals_decisions_states_deployments_verdicts_and_escalations_in_order(self, world: World) -> None:
        mitigation = active_mitigation(world.acme)
        for second, phase, bps in [(0, "start", 10e9), *((s, "update", 20e9 + s) for s in range(5, 300, 5)),
                                   (150, "update", 40e9), (400, "end", 0)]:
            signal = SignalRecord.objects.create(attack=mitigation.attack, phase=phase, detector="collector",
                                                 vectors=["dns_amplification"], bps=int(bps), pps=1, actor="tests")
            SignalRecord.objects.filter(pk=signal.pk).update(received_at=at(second + 0.5))
        decision = Decision.objects.create(mitigation=mitigation, level="flowspec", reason="FlowSpec at the edge")
        Decision.objects.filter(pk=decision.pk).update(created_at=at(20))
        action = flowspec(mitigation)
        Deployment.objects.create(action=action, element="router:mx-1", state="present", verified_at=at(50))
        Verdict.objects.create(mitigation=mitigation, at=at(200), outcome="partial", level="flowspec",
                               attack_bps=1_800_000_000, dropped_bps=38_200_000_000, scrubbed_bps=0,
                               threshold_bps=1_000_000_000,
                               summary="FlowSpec dropped 38.2 of 40 Gbps; 1.8 Gbps still reaches 203.0.113.10")
        record_audit(TEST_ACTOR, "mitigation.escalate_by_evidence", tenant_slug="acme", obj=mitigation,
                     reason="FlowSpec leaves 1.8 Gbps")
        AuditEvent.objects.bulk_create([AuditEvent(
            actor_kind="engine", actor="engine", tenant_slug="acme", action="mitigation.converged",
            object_type="mitigation.Mitigation", object_id=str(mitigation.pk), reason="the network carries it",
            diff={"state": ["applying", "active"], "level": "flowspec"})])

        entries = story.timeline(mitigation)
        assert [e.at for e in entries] == sorted(e.at for e in entries)
        signals = [e for e in entries if e.kind == "signal"]
        assert [e.title for e in signals] == ["first signal", "signal: update", "peak", "signal: end"]
        assert "40.0 Gbps" in signals[2].detail
        kinds = {e.kind for e in entries}
        assert {"signal", "decision", "deployment", "verdict", "escalation", "state"} <= kinds
        deployment = next(e for e in entries if e.kind == "deployment")
        assert deployment.element == "router:mx-1" and deployment.title == "FlowSpec present"
        assert any(e.title == "applying → active" for e in entries)
        assert story.timeline(mitigation, limit=3) == entries[-3:]

    def test_a_pulse_wave_shows_its_latest_phase_changes_not_all(self, world: World) -> None:
        mitigation = active_mitigation(world.acme)
        for pulse in range(120):
            signal = SignalRecord.objects.create(attack=mitigation.attack, phase="start" if pulse % 2 == 0 else "end",
                                                 detector="collector", vectors=[], bps=10_000 + pulse, pps=1,
                                                 actor="tests")
            SignalRecord.objects.filter(pk=signal.pk).update(received_at=at(pulse))
        signals = [e for e in story.timeline(mitigation) if e.kind == "signal"]
        assert len(signals) == 1 + story.history.SIGNAL_CHANGES_LIMIT
        assert signals[0].at == at(0) and signals[-1].at == at(119), "the first, then the latest changes"
        assert signals[-1].title == "peak"

    def test_withdrawal_and_end_are_their_own_kinds(self, world: World) -> None:
        mitigation = active_mitigation(world.acme)
        for action, states in (("mitigation.withdraw", ["active", "withdrawing"]),
                               ("mitigation.converged", ["withdrawing", "ended"])):
            AuditEvent.objects.create(actor_kind="user", actor="soc", tenant_slug="acme", action=action,
                                      object_type="mitigation.Mitigation", object_id=str(mitigation.pk),
                                      diff={"state": states})
        assert [e.kind for e in story.timeline(mitigation)] == ["withdrawal", "end"]


class TestRuleCounters:
    def test_rates_come_from_the_last_two_samples(self, world: World) -> None:
        action = flowspec(active_mitigation(world.acme))
        sample(action, 60, 0, 0)
        sample(action, 70, 1_000, 1_000_000)
        sample(action, 80, 3_000, 3_500_000, dropped=(2_900, 3_400_000))
        [rule] = story.rule_counters_of(action.mitigation)
        assert rule.rule == "dst 203.0.113.10/32 proto 17 sport 53 → discard"
        [element] = rule.elements
        assert (element.element, element.packets, element.dropped_bytes) == ("router:mx-1", 3_000, 3_400_000)
        assert element.rate is not None
        assert element.rate.matched_pps == 200 and element.rate.matched_bps == 2_000_000
        assert element.rate.dropped_bps == (3_400_000 - 1_000_000) * 8 / 10
        assert rule.last_hit_at == at(80) and rule.matched_bps == 2_000_000

    def test_a_reinstalled_rule_starts_a_new_run_without_a_negative_rate(self, world: World) -> None:
        action = flowspec(active_mitigation(world.acme))
        sample(action, 60, 5_000, 5_000_000)
        sample(action, 70, 6_000, 6_000_000)
        sample(action, 80, 100, 100_000)  # reinstalled: the router counts from zero again
        [rule] = story.rule_counters_of(action.mitigation)
        assert rule.elements[0].rate is None, "no rate across a reinstall"
        assert rule.last_hit_at == at(80), "the new run matched 100 packets"
        sample(action, 90, 600, 600_000)
        rates = story.counter_rates([story.Sample(at(s), p, p * 1000, p, p * 1000)
                                     for s, p in ((60, 5_000), (70, 6_000), (80, 100), (90, 600))])
        assert [(r.at, r.matched_pps) for r in rates] == [(at(70), 100), (at(90), 50)]
        latest = story.rule_counters_of(action.mitigation)[0].elements[0].rate
        assert latest is not None and latest.matched_pps == 50

    def test_a_rule_that_never_matched_has_no_last_hit(self, world: World) -> None:
        action = flowspec(active_mitigation(world.acme))
        sample(action, 60, 0, 0)
        sample(action, 70, 0, 0)
        [rule] = story.rule_counters_of(action.mitigation)
        assert rule.last_hit_at is None and rule.matched_bps == 0

    def test_a_rule_without_samples_is_listed_with_no_figures(self, world: World) -> None:
        action = flowspec(active_mitigation(world.acme))
        [rule] = story.rule_counters_of(action.mitigation)
        assert rule.elements == [] and rule.matched_bps is None and rule.last_hit_at is None


class TestTrafficSeries:
    def test_gaps_stay_gaps_and_routers_add_up(self, world: World) -> None:
        mitigation = active_mitigation(world.acme)
        action = flowspec(mitigation)
        for second in (60, 70, 80, 90):
            signal = SignalRecord.objects.create(attack=mitigation.attack, phase="update", detector="collector",
                                                 vectors=[], bps=40_000_000_000, pps=1, actor="tests")
            SignalRecord.objects.filter(pk=signal.pk).update(received_at=at(second))
        # mx-1 read every 10 s at 1 Gbps dropped, except 100..140 s when it could not be read.
        for index, second in enumerate((60, 70, 80, 90, 150, 160)):
            size = (index if second < 150 else index + 6) * 1_250_000_000
            sample(action, second, size // 1000, size)
        # mx-2 read at 70 and 80 only, at 2 Gbps.
        sample(action, 70, 0, 0, element="router:mx-2")
        sample(action, 80, 2_500_000, 2_500_000_000, element="router:mx-2")
        CenterPrefixSample.objects.create(center=ScrubbingCenter.objects.create(
            slug="fra-story", name="Frankfurt", capacity_gbps=400, capacity_mpps=200),
            mitigation=mitigation, prefix="203.0.113.0/24", at=at(90), received_bps=5, dropped_bps=4, clean_bps=1)
        Mitigation.objects.filter(pk=mitigation.pk).update(ended_at=at(200))
        mitigation.refresh_from_db()

        series = story.traffic_series(mitigation)
        assert series.bucket_s == 10 and series.start == at(0)

        def value(name: str, second: int) -> float | None:
            return getattr(series, name)[second // 10]

        assert value("attack_bps", 60) == 40e9
        assert value("attack_bps", 120) is None, "no signal: no value, not zero"
        assert value("dropped_bps", 70) == 1e9 and value("dropped_bps", 80) == 3e9, "mx-1 and mx-2 add up"
        assert value("dropped_bps", 90) == 1e9
        for second in (100, 110, 120, 130, 140, 150):
            assert value("dropped_bps", second) is None, f"{second}: the gap stays a gap"
        assert value("dropped_bps", 160) == 1e9
        assert value("scrubbed_bps", 90) == 4 and value("clean_bps", 90) == 1
        data = series.as_json()
        assert [s["key"] for s in data["series"]] == ["attack", "dropped", "scrubbed", "clean"]
        assert data["markers"][0] == {"t": 60.0, "label": "mitigation active"}

    def test_a_mitigation_without_figures_is_empty(self, world: World) -> None:
        assert story.traffic_series(active_mitigation(world.acme)).empty


class TestCandidateCenters:
    def test_a_real_planner_decision_compares_its_centers(self, world: World) -> None:
        fra = ScrubbingCenter.objects.create(slug="fra-c", name="Frankfurt", capacity_gbps=100, capacity_mpps=100)
        ams = ScrubbingCenter.objects.create(slug="ams-c", name="Amsterdam", capacity_gbps=100, capacity_mpps=100)
        par = ScrubbingCenter.objects.create(slug="par-c", name="Paris", capacity_gbps=100, capacity_mpps=100)
        net = snapshot(center(fra.pk, "Frankfurt"), center(ams.pk, "Amsterdam"), center(par.pk, "Paris"))
        policy = tenant(latency={fra.pk: 5.0, ams.pk: 25.0, par.pk: 80.0}, latency_threshold_ms=40.0)
        planned = plan_mitigations(net, [live_attack(1, gbps=30)], [policy]).for_attack(1)
        assert planned.center_id == fra.pk
        mitigation = active_mitigation(world.acme)
        decision = Decision.objects.create(mitigation=mitigation, level=planned.level.value, center=fra,
                                           reason=planned.reason, inputs=planned.inputs, cost=planned.cost)

        rows = {row.name: row for row in story.candidate_centers(decision)}
        assert set(rows) == {"Frankfurt", "Amsterdam", "Paris"}
        assert rows["Frankfurt"].chosen and rows["Frankfurt"].why == "chosen"
        assert rows["Frankfurt"].latency_ms == 5.0 and rows["Frankfurt"].threshold_ms == 40.0
        assert rows["Frankfurt"].within_threshold and rows["Frankfurt"].headroom_gbps is not None
        assert rows["Amsterdam"].why.startswith("costs more")
        assert rows["Paris"].why == "latency over the tenant's threshold" and rows["Paris"].within_threshold is False

    def test_an_old_decision_without_candidates_or_fields_degrades(self, world: World) -> None:
        mitigation = active_mitigation(world.acme)
        old = Decision.objects.create(mitigation=mitigation, level="flowspec", reason="old", inputs={"attack": {}})
        assert story.candidate_centers(old) == []
        sparse = Decision.objects.create(mitigation=mitigation, level="flowspec", reason="old",
                                         inputs={"candidates": [{"name": "Frankfurt"}, "junk"]})
        [row] = story.candidate_centers(sparse)
        assert (row.name, row.chosen, row.latency_ms, row.cost, row.within_threshold) == (
            "Frankfurt", False, None, None, None)
        assert row.why == "FlowSpec was the better option"


class TestRuleHitStats:
    def test_lists_rules_that_never_matched_and_receivers_near_their_limit(self, world: World) -> None:
        mitigation = active_mitigation(world.acme)
        silent = flowspec(mitigation)
        busy = flowspec(mitigation, {**RULE, "destination_ports": [[80, 80]]}, key="rule-2")
        fresh = flowspec(mitigation, {**RULE, "destination_ports": [[443, 443]]}, key="rule-3")
        Action.objects.filter(pk=fresh.pk).update(created_at=timezone.now())
        unread = flowspec(mitigation, {**RULE, "destination_ports": [[25, 25]]}, key="rule-4")
        for action in (silent, fresh):
            sample(action, 60, 0, 0)
            sample(action, 70, 0, 0, element="router:mx-2")
        sample(busy, 60, 10, 1000)
        router = Router.objects.create(name="mx-story", vendor="juniper", platform="junos", mgmt_host="192.0.2.9",
                                       username="u", flowspec_rule_limit=4)
        for action in (silent, busy, fresh, unread):
            Deployment.objects.create(action=action, element="router:mx-story", state="present")
        peer = UpstreamPeer.objects.create(name="transit-story", isp="T", asn=64501, router=router,
                                           center=ScrubbingCenter.objects.create(
                                               slug="s-story", name="S", capacity_gbps=1, capacity_mpps=1),
                                           neighbor_address="192.0.2.2", capacity_gbps=10, flowspec_accepted=True,
                                           flowspec_rule_limit=100)
        Action.objects.filter(pk=busy.pk).update(targets=["edge", f"peer:{peer.pk}"])

        stats = story.rule_hit_stats()
        [never] = stats.never_matched
        assert (never.action_id, never.samples, never.elements) == (silent.pk, 2, 2)
        assert never.rule.endswith("→ discard") and never.target == "203.0.113.10/32"
        uses = {use.name: use for use in stats.limits}
        assert (uses["mx-story"].rules, uses["mx-story"].limit, uses["mx-story"].near) == (4, 4, True)
        assert (uses["transit-story"].rules, uses["transit-story"].near) == (1, False)
        assert [use.name for use in stats.near_limit] == ["mx-story"]

    def test_rules_of_ended_mitigations_are_not_candidates(self, world: World) -> None:
        mitigation = active_mitigation(world.acme)
        action = flowspec(mitigation)
        sample(action, 60, 0, 0)
        Mitigation.objects.filter(pk=mitigation.pk).update(state="ended")
        assert story.rule_hit_stats().never_matched == []


def test_a_rule_reads_in_one_line_and_without_the_providers_internals_for_customers() -> None:
    spec = {"type": "flowspec", "destination": "203.0.113.10/32", "action": "redirect", "redirect_target": "65010:666",
            "protocols": [[6, 6]], "destination_ports": [[80, 80], [8000, 8080]], "tcp_flags": ["syn"]}
    assert story.route_text(spec) == "dst 203.0.113.10/32 proto 6 dport 80,8000-8080 tcp-flags syn → redirect 65010:666"
    assert story.route_text(spec, internals=False).endswith("→ redirect")
    assert story.route_text({**spec, "action": "rate-limit", "rate_bps": 10_000_000}).endswith("→ rate-limit 10.0 Mbps")
    diversion = {"type": "unicast", "prefix": "203.0.113.0/24", "next_hop": "192.0.2.10"}
    assert story.route_text(diversion) == "203.0.113.0/24 via 192.0.2.10"
    assert story.route_text(diversion, internals=False) == "203.0.113.0/24"
