"""Specification of the route-engineering engine: what `plan_mitigations` must decide, and why.

Pure logic: no servers, no database. Property-based tests at the end throw random networks, tenants and attacks
at the planner and check that nothing it plans leaves the tenant's verified space or fails a validator.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.signals import AttackVector as V
from devices.drivers.base import BLACKHOLE_COMMUNITY, FlowSpecRule, UnicastRoute
from mitigation.engine import (
    EDGE_TARGET,
    ActionKind,
    AppProfile,
    EngineSettings,
    Level,
    LiveAttack,
    NetworkSnapshot,
    PlanResult,
    PolicyInput,
    PreviousPlan,
    ScrubbingCenterState,
    UpstreamPeerState,
    plan_mitigations,
)
from mitigation.safety import SafetyLimits, validate_plan

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ALL_ACTIONS = frozenset(ActionKind)


def center(cid: int, name: str, cap: float = 100.0, load: float = 0.0, **kw: object) -> ScrubbingCenterState:
    defaults: dict[str, object] = {
        "region": "eu", "capacity_mpps": cap, "load_mpps": 0.0, "next_hop_v4": f"10.255.{cid}.1",
        "next_hop_v6": f"2001:db8:ffff:{cid}::1", "redirect_target": f"64500:{cid}",
    }
    defaults.update(kw)
    return ScrubbingCenterState(cid, name, capacity_gbps=cap, load_gbps=load, **defaults)  # type: ignore[arg-type]


def peer(pid: int, cid: int, util: float = 0.2, cap: float = 400.0, **kw: object) -> UpstreamPeerState:
    defaults: dict[str, object] = {"isp": f"ISP{pid}", "asn": 64600 + pid, "neighbor_address": f"172.16.0.{pid}"}
    defaults.update(kw)
    return UpstreamPeerState(pid, cid, capacity_gbps=cap, utilisation=util, **defaults)  # type: ignore[arg-type]


def snapshot(*centers: ScrubbingCenterState, peers: tuple[UpstreamPeerState, ...] | None = None) -> NetworkSnapshot:
    if peers is None:
        peers = tuple(peer(c.id * 10 + 1, c.id) for c in centers)
    return NetworkSnapshot(tuple(centers), peers, NOW)


def tenant(tid: int = 1, prefixes: tuple[str, ...] = ("203.0.112.0/22", "2001:db8:100::/40"),
           latency: dict[int, float] | None = None, **kw: object) -> PolicyInput:
    return PolicyInput(tid, f"tenant-{tid}", prefixes, latency_ms=latency or {}, **kw)  # type: ignore[arg-type]


def attack(aid: int, target: str = "203.0.113.7", gbps: float = 10.0, vectors: tuple[V, ...] = (V.SYN_FLOOD,),
           tid: int = 1, mpps: float = 1.0) -> LiveAttack:
    return LiveAttack(aid, tid, target, vectors, int(gbps * 1e9), int(mpps * 1e6))


def kinds(plan: PlanResult, attack_id: int) -> list[ActionKind]:
    return [a.kind for a in plan.for_attack(attack_id).actions]


def assert_safe(plan: PlanResult, policies: list[PolicyInput], net: NetworkSnapshot,
                never_block: tuple[str, ...] = (), edge_cap: int = 3000) -> None:
    """Every action of the plan passes the validators, rule caps counted across the whole plan."""
    caps = {EDGE_TARGET: edge_cap, **{p.target: p.flowspec_rule_limit if p.flowspec_accepted else 0
                                      for p in net.peers}}
    found = validate_plan(plan.mitigations, tenant_prefixes={p.tenant_id: p.verified_prefixes for p in policies},
                          never_block=never_block, limits=SafetyLimits(target_caps=caps, default_cap=0))
    assert found == []


class TestCapacity:
    def test_no_center_is_planned_beyond_capacity_when_a_feasible_assignment_exists(self) -> None:
        net = snapshot(center(1, "Frankfurt"), center(2, "Amsterdam"))
        policy = tenant(latency={1: 5.0, 2: 25.0})
        attacks = [attack(1, "203.0.113.1", 60), attack(2, "203.0.112.2", 50), attack(3, "203.0.114.3", 40)]
        plan = plan_mitigations(net, attacks, [policy])
        assert all(m.level == Level.DIVERSION for m in plan.mitigations)
        for load in plan.center_loads.values():
            assert load.load_gbps <= load.capacity_gbps * 0.95
        assert sorted(load.attacks for load in plan.center_loads.values()) == [1, 2]

    def test_current_load_and_mpps_count(self) -> None:
        net = snapshot(center(1, "Frankfurt", load=80.0), center(2, "Amsterdam", cap=200.0, capacity_mpps=5.0))
        policy = tenant(latency={1: 5.0, 2: 5.0})
        plan = plan_mitigations(net, [attack(1, gbps=20, mpps=10)], [policy])
        m = plan.for_attack(1)
        assert m.level != Level.DIVERSION
        assert "Frankfurt: over capacity" in m.reason and "Amsterdam: over capacity" in m.reason

    def test_an_attack_bigger_than_any_center_is_not_diverted(self) -> None:
        net = snapshot(center(1, "Frankfurt"), center(2, "Amsterdam"))
        plan = plan_mitigations(net, [attack(1, gbps=500)], [tenant(latency={1: 5.0, 2: 5.0})])
        assert plan.for_attack(1).level == Level.NONE
        assert plan.for_attack(1).actions == ()
        assert all(load.attacks == 0 for load in plan.center_loads.values())

    def test_headroom_is_discounted_when_load_data_is_stale_and_unhealthy_when_too_old(self) -> None:
        net = snapshot(center(1, "Frankfurt", stale=True), center(2, "Amsterdam", data_age_s=3600.0))
        plan = plan_mitigations(net, [attack(1, gbps=60)], [tenant(latency={1: 5.0, 2: 5.0})])
        reason = plan.for_attack(1).reason
        assert plan.for_attack(1).level == Level.NONE
        assert "Frankfurt: over capacity" in reason and "Amsterdam: unhealthy" in reason
        assert plan_mitigations(net, [attack(1, gbps=30)], [tenant(latency={1: 5.0})]).for_attack(1).center_id == 1

    def test_an_upstream_with_stale_figures_is_discounted_not_taken_for_down(self) -> None:
        """A telemetry poll that comes late under load makes figures stale; the upstream is still there."""
        net = snapshot(center(1, "Frankfurt"), peers=(peer(11, 1, util=0.0, cap=100.0, stale=True),))
        small = plan_mitigations(net, [attack(1, gbps=30)], [tenant(latency={1: 5.0})]).for_attack(1)
        assert small.level == Level.DIVERSION and small.center_id == 1
        big = plan_mitigations(net, [attack(1, gbps=60)], [tenant(latency={1: 5.0})]).for_attack(1)
        assert big.center_id is None, "half of what a fresh poll would promise, not all of it"

    def test_a_center_whose_upstreams_are_all_saturated_or_down_is_not_used(self) -> None:
        peers = (peer(11, 1, util=0.97), peer(12, 1, session_up=False), peer(21, 2))
        net = snapshot(center(1, "Frankfurt"), center(2, "Amsterdam"), peers=peers)
        plan = plan_mitigations(net, [attack(1)], [tenant(latency={1: 2.0, 2: 30.0})])
        assert plan.for_attack(1).center_id == 2
        assert "Frankfurt: no healthy upstream" in plan.for_attack(1).reason


class TestSharedDiversionPrefix:
    """Attacks on hosts of one /24 are diverted by announcing that /24: it can lead to one center only."""

    def test_attacks_in_one_prefix_go_to_the_same_center_and_count_together(self) -> None:
        net = snapshot(center(1, "Frankfurt"), center(2, "Amsterdam"))
        policy = tenant(latency={1: 5.0, 2: 25.0})
        attacks = [attack(1, "203.0.113.1", 40), attack(2, "203.0.113.2", 30), attack(3, "203.0.114.3", 40)]
        plan = plan_mitigations(net, attacks, [policy])
        one, two = plan.for_attack(1), plan.for_attack(2)
        assert one.level == two.level == Level.DIVERSION
        assert one.center_id == two.center_id
        routes = {a.route for m in (one, two) for a in m.actions if a.kind == ActionKind.DIVERSION}
        assert {r.prefix for r in routes} == {"203.0.113.0/24"} and len({r.next_hop for r in routes}) == 1
        assert "planned together with attack 2 on 203.0.113.2/32" in one.reason
        assert "70 Gbps together" in one.reason
        loads = plan.center_loads[one.center_id]
        assert loads.load_gbps <= loads.capacity_gbps * 0.95

    def test_when_no_center_has_room_for_all_of_them_none_is_diverted_half_way(self) -> None:
        net = snapshot(center(1, "Frankfurt"), center(2, "Amsterdam"))
        attacks = [attack(1, "203.0.113.1", 60), attack(2, "203.0.113.2", 50)]
        plan = plan_mitigations(net, attacks, [tenant(latency={1: 5.0, 2: 25.0})])
        assert {m.center_id for m in plan.mitigations} == {None}
        assert all("110 Gbps together" in m.reason for m in plan.mitigations)

    def test_attacks_in_different_prefixes_are_planned_independently(self) -> None:
        net = snapshot(center(1, "Frankfurt"), center(2, "Amsterdam"))
        attacks = [attack(1, "203.0.113.1", 60), attack(2, "203.0.112.2", 50)]
        plan = plan_mitigations(net, attacks, [tenant(latency={1: 5.0, 2: 25.0})])
        assert {m.center_id for m in plan.mitigations} == {1, 2}
        assert not any("planned together" in m.reason for m in plan.mitigations)


class TestLatency:
    def test_a_center_beyond_the_threshold_is_never_chosen(self) -> None:
        net = snapshot(center(1, "Frankfurt", cap=400.0), center(2, "Amsterdam"))
        policy = tenant(latency={1: 45.0, 2: 18.0}, latency_threshold_ms=20.0)
        m = plan_mitigations(net, [attack(1)], [policy]).for_attack(1)
        assert m.center_id == 2
        assert "Frankfurt: 45 ms is over the 20 ms threshold" in m.reason
        assert "Amsterdam:" in m.reason and "20 ms threshold" in m.reason

    def test_per_center_and_per_region_thresholds_override_the_default(self) -> None:
        net = snapshot(center(1, "Frankfurt", region="eu"), center(2, "Ashburn", region="us"))
        base = tenant(latency={1: 30.0, 2: 10.0}, latency_threshold_ms=50.0)
        assert plan_mitigations(net, [attack(1)], [base]).for_attack(1).center_id == 2
        by_region = replace(base, region_thresholds_ms={"us": 5.0})
        assert plan_mitigations(net, [attack(1)], [by_region]).for_attack(1).center_id == 1
        by_center = replace(by_region, center_thresholds_ms={1: 20.0})
        assert plan_mitigations(net, [attack(1)], [by_center]).for_attack(1).level == Level.NONE

    def test_a_center_without_a_latency_measurement_is_not_chosen(self) -> None:
        net = snapshot(center(1, "Frankfurt"))
        m = plan_mitigations(net, [attack(1)], [tenant(latency={})]).for_attack(1)
        assert m.level == Level.NONE and "no latency measurement" in m.reason

    def test_the_nearest_center_is_preferred_among_feasible_ones(self) -> None:
        net = snapshot(center(1, "Frankfurt"), center(2, "Amsterdam"))
        assert plan_mitigations(net, [attack(1)], [tenant(latency={1: 30.0, 2: 4.0})]).for_attack(1).center_id == 2


class TestProfiles:
    NET = snapshot(center(1, "Frankfurt"), center(2, "Singapore"))

    def test_gaming_prefers_flowspec_at_the_edge_over_a_distant_center(self) -> None:
        policy = tenant(latency={1: 60.0, 2: 70.0}, latency_threshold_ms=80.0, profile=AppProfile.GAMING)
        m = plan_mitigations(self.NET, [attack(1, vectors=(V.SYN_FLOOD,))], [policy]).for_attack(1)
        assert m.level == Level.FLOWSPEC
        rule = m.actions[0].route
        assert isinstance(rule, FlowSpecRule) and rule.action == "rate-limit" and rule.tcp_flags == ("syn",)

    def test_gaming_uses_a_near_center_for_what_flowspec_cannot_filter_cleanly(self) -> None:
        policy = tenant(latency={1: 3.0}, profile=AppProfile.GAMING)
        assert plan_mitigations(self.NET, [attack(1, vectors=(V.SYN_FLOOD,))], [policy]).for_attack(1).center_id == 1

    def test_voip_amplification_is_dropped_at_the_edge(self) -> None:
        policy = tenant(latency={1: 3.0}, profile=AppProfile.VOIP)
        m = plan_mitigations(self.NET, [attack(1, vectors=(V.NTP_AMPLIFICATION,))], [policy]).for_attack(1)
        assert m.level == Level.FLOWSPEC
        rule = m.actions[0].route
        assert isinstance(rule, FlowSpecRule) and rule.source_ports == ((123, 123),) and rule.action == "discard"

    def test_web_is_diverted_for_a_syn_flood(self) -> None:
        policy = tenant(latency={1: 30.0}, profile=AppProfile.WEB)
        m = plan_mitigations(self.NET, [attack(1, vectors=(V.SYN_FLOOD,))], [policy]).for_attack(1)
        assert m.level == Level.DIVERSION and kinds(plan_mitigations(self.NET, [attack(1)], [policy]), 1) == [
            ActionKind.DIVERSION]

    def test_dns_is_diverted_with_amplification_filters_that_keep_some_answers(self) -> None:
        policy = tenant(latency={1: 10.0}, profile=AppProfile.DNS)
        vectors = (V.DNS_AMPLIFICATION, V.MEMCACHED_AMPLIFICATION)
        m = plan_mitigations(self.NET, [attack(1, vectors=vectors)], [policy]).for_attack(1)
        assert m.level == Level.DIVERSION
        rules = {r.route.source_ports[0][0]: r.route for r in m.actions if isinstance(r.route, FlowSpecRule)}
        assert rules[53].action == "rate-limit" and rules[53].protocols == ((17, 17),)
        assert rules[11211].action == "discard"

    def test_generic_udp_flood_cannot_be_filtered_so_it_is_diverted(self) -> None:
        policy = tenant(latency={1: 10.0}, profile=AppProfile.GENERIC)
        assert plan_mitigations(self.NET, [attack(1, vectors=(V.UDP_FLOOD,))], [policy]).for_attack(1).center_id == 1

    def test_a_huge_filterable_attack_is_escalated_to_a_center(self) -> None:
        net = snapshot(center(1, "Frankfurt", cap=1000.0, capacity_mpps=1000.0), peers=(peer(11, 1, cap=2000.0),))
        policy = tenant(latency={1: 10.0}, profile=AppProfile.WEB)
        small = plan_mitigations(net, [attack(1, gbps=20, vectors=(V.NTP_AMPLIFICATION,))], [policy])
        huge = plan_mitigations(net, [attack(1, gbps=400, vectors=(V.NTP_AMPLIFICATION,))], [policy])
        assert small.for_attack(1).level == Level.FLOWSPEC and huge.for_attack(1).level == Level.DIVERSION


class TestUpstreams:
    def test_saturated_and_stale_upstreams_get_prepends_and_down_ones_nothing(self) -> None:
        peers = (peer(11, 1, util=0.3), peer(12, 1, util=0.95, prepend_community="174:3003"),
                 peer(13, 1, stale=True), peer(14, 1, session_up=False), peer(21, 2))
        net = snapshot(center(1, "Frankfurt"), center(2, "Amsterdam"), peers=peers)
        m = plan_mitigations(net, [attack(1)], [tenant(latency={1: 5.0})]).for_attack(1)
        routes = {a.targets: a.route for a in m.actions}
        assert set(routes) == {("peer:11",), ("peer:12",), ("peer:13",)}
        plain, busy, stale = routes[("peer:11",)], routes[("peer:12",)], routes[("peer:13",)]
        assert isinstance(plain, UnicastRoute) and plain.as_path_prepend == 0 and plain.prefix == "203.0.113.0/24"
        assert plain.next_hop == "10.255.1.1" and plain.neighbors == ("172.16.0.11",)
        assert isinstance(busy, UnicastRoute) and busy.as_path_prepend == 3 and busy.communities == ("174:3003",)
        assert isinstance(stale, UnicastRoute) and stale.as_path_prepend == 3
        assert "session down" in m.reason

    def test_flowspec_goes_to_upstreams_that_accept_it_within_their_limit(self) -> None:
        peers = (peer(11, 1, flowspec_accepted=True, flowspec_rule_limit=1), peer(12, 1))
        net = snapshot(center(1, "Frankfurt"), peers=peers)
        policy = tenant(latency={1: 5.0}, profile=AppProfile.WEB)
        attacks = [attack(1, "203.0.113.1", vectors=(V.NTP_AMPLIFICATION,)),
                   attack(2, "203.0.113.2", vectors=(V.NTP_AMPLIFICATION,))]
        plan = plan_mitigations(net, attacks, [policy])
        assert [a.targets for m in plan.mitigations for a in m.actions] == [(EDGE_TARGET, "peer:11"), (EDGE_TARGET,)]
        assert_safe(plan, [policy], net)


class TestLadderAndRtbh:
    NET = snapshot(center(1, "Frankfurt"), peers=(peer(11, 1, blackhole_community="174:666"),
                                                  peer(12, 1, blackhole_community="3356:9999")))

    def test_rtbh_is_the_last_resort_when_allowed(self) -> None:
        policy = tenant(latency={1: 5.0}, allowed_actions=ALL_ACTIONS)
        m = plan_mitigations(self.NET, [attack(1, gbps=500)], [policy]).for_attack(1)
        assert m.level == Level.RTBH and "last resort" in m.reason
        routes = [a.route for a in m.actions]
        assert all(isinstance(r, UnicastRoute) and BLACKHOLE_COMMUNITY in r.communities for r in routes)
        assert {c for r in routes for c in r.communities} == {BLACKHOLE_COMMUNITY, "174:666", "3356:9999"}
        assert all(r.prefix == "203.0.113.7/32" for r in routes)
        assert_safe(plan_mitigations(self.NET, [attack(1, gbps=500)], [policy]), [policy], self.NET)

    def test_no_rtbh_when_the_tenant_does_not_allow_it(self) -> None:
        m = plan_mitigations(self.NET, [attack(1, gbps=500)], [tenant(latency={1: 5.0})]).for_attack(1)
        assert m.level == Level.NONE and m.actions == ()

    def test_no_rtbh_when_a_center_can_take_it(self) -> None:
        policy = tenant(latency={1: 5.0}, allowed_actions=ALL_ACTIONS)
        assert plan_mitigations(self.NET, [attack(1, gbps=50)], [policy]).for_attack(1).level == Level.DIVERSION

    def test_no_rtbh_when_flowspec_filters_it(self) -> None:
        policy = tenant(latency={1: 5.0}, allowed_actions=ALL_ACTIONS, profile=AppProfile.WEB)
        m = plan_mitigations(self.NET, [attack(1, gbps=90, vectors=(V.CLDAP_AMPLIFICATION,))], [policy])
        assert m.for_attack(1).level == Level.FLOWSPEC

    def test_only_the_attack_that_does_not_fit_is_blackholed(self) -> None:
        policy = tenant(latency={1: 5.0}, allowed_actions=ALL_ACTIONS)
        plan = plan_mitigations(self.NET, [attack(1, "203.0.113.1", 60), attack(2, "203.0.114.2", 50)], [policy])
        assert sorted(m.level for m in plan.mitigations) == [Level.DIVERSION, Level.RTBH]
        assert plan.for_attack(1).level == Level.DIVERSION


class TestHysteresis:
    NET = snapshot(center(1, "Frankfurt"), center(2, "Amsterdam"))

    def previous(self, level: Level, center_id: int | None, age_s: float = 60.0) -> list[PreviousPlan]:
        return [PreviousPlan(1, level, center_id, NOW - timedelta(seconds=age_s))]

    def test_a_small_gain_does_not_move_an_attack(self) -> None:
        policy = tenant(latency={1: 10.0, 2: 14.0})
        assert plan_mitigations(self.NET, [attack(1)], [policy]).for_attack(1).center_id == 1
        m = plan_mitigations(self.NET, [attack(1)], [policy], self.previous(Level.DIVERSION, 2)).for_attack(1)
        assert m.center_id == 2 and "kept" in m.reason

    def test_a_clear_gain_moves_it(self) -> None:
        peers = (peer(11, 1), peer(21, 2), peer(22, 2, util=0.95))
        net = snapshot(center(1, "Frankfurt"), center(2, "Amsterdam"), peers=peers)
        policy = tenant(latency={1: 2.0, 2: 38.0}, latency_threshold_ms=40.0)
        m = plan_mitigations(net, [attack(1, gbps=5)], [policy], self.previous(Level.DIVERSION, 2)).for_attack(1)
        assert m.center_id == 1 and "moved" in m.reason

    def test_the_previous_attack_load_is_not_counted_twice(self) -> None:
        net = snapshot(center(1, "Frankfurt", load=70.0), center(2, "Amsterdam"))
        policy = tenant(latency={1: 10.0, 2: 14.0})
        m = plan_mitigations(net, [attack(1, gbps=60)], [policy], self.previous(Level.DIVERSION, 1)).for_attack(1)
        assert m.center_id == 1
        assert plan_mitigations(net, [attack(1, gbps=60)], [policy]).for_attack(1).center_id == 2

    def test_escalation_is_immediate(self) -> None:
        policy = tenant(latency={1: 10.0}, profile=AppProfile.WEB)
        prev = self.previous(Level.FLOWSPEC, None, age_s=5.0)
        m = plan_mitigations(self.NET, [attack(1, vectors=(V.SYN_FLOOD,))], [policy], prev).for_attack(1)
        assert m.level == Level.DIVERSION

    def test_de_escalation_waits_for_the_hold_down(self) -> None:
        policy = tenant(latency={1: 10.0}, profile=AppProfile.WEB)
        amplification = [attack(1, vectors=(V.NTP_AMPLIFICATION,))]
        assert plan_mitigations(self.NET, amplification, [policy]).for_attack(1).level == Level.FLOWSPEC
        recent = plan_mitigations(self.NET, amplification, [policy], self.previous(Level.DIVERSION, 1, 30.0))
        assert recent.for_attack(1).level == Level.DIVERSION
        cheap = EngineSettings(deescalate_penalty=0.0)
        old = plan_mitigations(self.NET, amplification, [policy], self.previous(Level.DIVERSION, 1, 3600.0),
                               settings=cheap)
        assert old.for_attack(1).level == Level.FLOWSPEC

    def test_rtbh_is_left_as_soon_as_a_center_can_take_the_attack(self) -> None:
        policy = tenant(latency={1: 10.0}, allowed_actions=ALL_ACTIONS)
        m = plan_mitigations(self.NET, [attack(1)], [policy], self.previous(Level.RTBH, None, 10.0)).for_attack(1)
        assert m.level == Level.DIVERSION

    def test_a_center_that_failed_is_left_at_once(self) -> None:
        net = snapshot(center(1, "Frankfurt"), center(2, "Amsterdam", healthy=False))
        policy = tenant(latency={1: 10.0, 2: 5.0})
        m = plan_mitigations(net, [attack(1)], [policy], self.previous(Level.DIVERSION, 2, 5.0)).for_attack(1)
        assert m.center_id == 1


class TestPrefixes:
    NET = snapshot(center(1, "Frankfurt"))

    def test_ipv6_is_diverted_as_a_48_to_the_ipv6_next_hop(self) -> None:
        m = plan_mitigations(self.NET, [attack(1, "2001:db8:100:7::1")], [tenant(latency={1: 5.0})]).for_attack(1)
        route = m.actions[0].route
        assert isinstance(route, UnicastRoute) and route.prefix == "2001:db8:100::/48"
        assert route.next_hop == "2001:db8:ffff:1::1"

    def test_a_center_without_an_ipv6_next_hop_cannot_take_ipv6(self) -> None:
        net = snapshot(center(1, "Frankfurt", next_hop_v6=None), center(2, "Amsterdam"))
        m = plan_mitigations(net, [attack(1, "2001:db8:100::1")], [tenant(latency={1: 5.0, 2: 20.0})])
        assert m.for_attack(1).center_id == 2

    def test_ipv6_rtbh_is_a_host_route(self) -> None:
        policy = tenant(latency={1: 5.0}, allowed_actions=ALL_ACTIONS)
        m = plan_mitigations(self.NET, [attack(1, "2001:db8:100::9", gbps=500)], [policy]).for_attack(1)
        assert m.level == Level.RTBH and m.actions[0].route.prefix == "2001:db8:100::9/128"  # type: ignore[union-attr]

    def test_a_wide_target_is_diverted_whole_but_never_wider_than_verified(self) -> None:
        m = plan_mitigations(self.NET, [attack(1, "203.0.112.0/23")], [tenant(latency={1: 5.0})]).for_attack(1)
        assert m.actions[0].route.prefix == "203.0.112.0/23"  # type: ignore[union-attr]

    def test_a_verified_prefix_longer_than_24_falls_back_to_flowspec_redirect(self) -> None:
        policy = tenant(prefixes=("203.0.113.128/25",), latency={1: 5.0})
        plan = plan_mitigations(self.NET, [attack(1, "203.0.113.130")], [policy])
        m = plan.for_attack(1)
        assert m.level == Level.DIVERSION and "longer than /24" in m.reason
        assert all(isinstance(a.route, FlowSpecRule) and a.route.redirect_target == "64500:1" for a in m.actions)
        assert len(m.actions) == 2
        assert_safe(plan, [policy], self.NET)

    def test_without_flowspec_a_too_long_verified_prefix_is_not_diverted_and_says_so(self) -> None:
        policy = tenant(prefixes=("203.0.113.128/25",), latency={1: 5.0},
                        allowed_actions=frozenset({ActionKind.DIVERSION}))
        m = plan_mitigations(self.NET, [attack(1, "203.0.113.130")], [policy]).for_attack(1)
        assert m.level == Level.NONE and "cannot be diverted" in m.reason

    def test_a_target_outside_the_tenants_space_gets_nothing(self) -> None:
        policy = tenant(latency={1: 5.0}, allowed_actions=ALL_ACTIONS)
        m = plan_mitigations(self.NET, [attack(1, "192.0.2.7", gbps=500)], [policy]).for_attack(1)
        assert m.level == Level.NONE and m.actions == () and "outside" in m.reason

    def test_never_block_space_is_never_diverted_or_blackholed(self) -> None:
        policy = tenant(latency={1: 5.0}, allowed_actions=ALL_ACTIONS)
        never = ("203.0.113.53/32",)
        hit = plan_mitigations(self.NET, [attack(1, "203.0.113.53")], [policy], never_block=never).for_attack(1)
        assert hit.actions == () and "never-block" in hit.reason
        near = plan_mitigations(self.NET, [attack(1, "203.0.113.7")], [policy], never_block=never)
        assert all(isinstance(a.route, FlowSpecRule) for a in near.for_attack(1).actions)
        assert_safe(near, [policy], self.NET, never)


class TestExplanations:
    def test_reason_and_inputs_tell_the_story(self) -> None:
        net = snapshot(center(1, "Frankfurt", load=40.0), center(2, "Amsterdam", load=90.0))
        m = plan_mitigations(net, [attack(1, gbps=20)], [tenant(latency={1: 9.0, 2: 3.0}, latency_threshold_ms=40)])
        m = m.for_attack(1)
        assert m.reason.startswith("divert to Frankfurt")
        assert "Frankfurt: 55 Gbps headroom, 9 ms against a 40 ms threshold" in m.reason
        assert "Amsterdam: over capacity" in m.reason
        json.dumps(m.inputs)
        assert m.inputs["diversion_prefix"] == "203.0.113.0/24"
        assert m.inputs["candidates"][0]["name"] == "Frankfurt"  # type: ignore[index]
        assert all(a.reason for a in m.actions)

    def test_plan_result_totals(self) -> None:
        net = snapshot(center(1, "Frankfurt", load=10.0))
        plan = plan_mitigations(net, [attack(1, gbps=20, mpps=2)], [tenant(latency={1: 9.0})])
        assert plan.center_loads[1].load_gbps == pytest.approx(30.0) and plan.center_loads[1].attacks == 1
        assert plan.total_cost == pytest.approx(sum(m.cost for m in plan.mitigations))


# Property-based: random networks, tenants and attacks.

PROFILES = st.sampled_from(tuple(AppProfile))
GBPS = st.one_of(st.floats(0.01, 5), st.floats(5, 50), st.floats(50, 300))
VECTORS = st.lists(st.sampled_from(tuple(V)), min_size=0, max_size=3, unique=True).map(tuple)


@st.composite
def verified_prefix(draw: st.DrawFn, index: int) -> str:
    if draw(st.booleans()):
        length = draw(st.integers(16, 28))
        return str(ipaddress.ip_network(f"{10 + index}.{draw(st.integers(0, 255))}.0.0/{length}", strict=False))
    length = draw(st.integers(32, 56))
    return str(ipaddress.ip_network(f"2001:{0xd00 + index:x}::/{length}", strict=False))


def inside(draw: st.DrawFn, prefix: str) -> str:
    net = ipaddress.ip_network(prefix)
    host_bits = net.max_prefixlen - net.prefixlen
    address = net.network_address + draw(st.integers(0, 2 ** min(host_bits, 64) - 1))
    length = draw(st.sampled_from((net.max_prefixlen, net.max_prefixlen, max(net.prefixlen, net.max_prefixlen - 8))))
    return str(ipaddress.ip_network(f"{address}/{length}", strict=False))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[NetworkSnapshot, list[PolicyInput], list[LiveAttack], tuple[str, ...],
                                        list[PreviousPlan], EngineSettings]:
    n_centers = draw(st.integers(1, 5))
    caps = [draw(st.sampled_from((20.0, 100.0, 400.0))) for _ in range(n_centers)]
    centers = [center(i, f"c{i}", cap=cap, load=cap * draw(st.floats(0, 1.2)),
                      healthy=draw(st.integers(0, 4)) > 0, stale=draw(st.integers(0, 4)) == 0,
                      next_hop_v6=draw(st.sampled_from((None, f"2001:db8:ffff:{i}::1"))),
                      redirect_target=draw(st.sampled_from((None, f"64500:{i}"))))
               for i, cap in enumerate(caps, start=1)]
    peers = tuple(peer(10 * c.id + k, c.id, util=draw(st.floats(0, 1)), session_up=draw(st.integers(0, 4)) > 0,
                       stale=draw(st.integers(0, 4)) == 0, flowspec_accepted=draw(st.booleans()),
                       flowspec_rule_limit=draw(st.integers(0, 5)),
                       blackhole_community=draw(st.sampled_from((None, f"{64600 + k}:666"))),
                       prepend_community=draw(st.sampled_from((None, f"{64600 + k}:3003"))))
                  for c in centers for k in range(draw(st.integers(0, 3)) or 1))
    policies = []
    for t in range(1, draw(st.integers(1, 4)) + 1):
        prefixes = tuple(draw(verified_prefix(t * 3 + k)) for k in range(draw(st.integers(1, 2))))
        policies.append(tenant(
            t, prefixes, latency={c.id: draw(st.floats(1, 100)) for c in centers if draw(st.integers(0, 4)) > 0},
            latency_threshold_ms=draw(st.floats(20, 100)), profile=draw(PROFILES),
            allowed_actions=frozenset(draw(st.sets(st.sampled_from(tuple(ActionKind))))),
        ))
    attacks = []
    for a in range(1, draw(st.integers(1, 12)) + 1):
        policy = draw(st.sampled_from(policies))
        target = inside(draw, draw(st.sampled_from(policy.verified_prefixes)))
        if draw(st.integers(0, 9)) == 0:
            target = draw(st.sampled_from(("192.0.2.9", "2001:db8:dead::1")))
        attacks.append(attack(a, target, gbps=draw(GBPS), vectors=draw(VECTORS),
                              tid=policy.tenant_id, mpps=draw(st.floats(0.01, 5))))
    never_block = tuple(draw(st.lists(st.sampled_from([a.target for a in attacks] + ["198.51.100.0/24"]),
                                      max_size=2)))
    previous = [PreviousPlan(a.id, draw(st.sampled_from(tuple(Level))), draw(st.sampled_from([None, 1, 2])),
                             NOW - timedelta(seconds=draw(st.floats(0, 1000)))) for a in attacks if draw(st.booleans())]
    settings_ = EngineSettings(edge_rule_cap=draw(st.integers(0, 20)))
    return NetworkSnapshot(tuple(centers), peers, NOW), policies, attacks, never_block, previous, settings_


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_no_planned_action_ever_leaves_the_tenants_space_or_fails_a_validator(scenario: tuple) -> None:  # type: ignore[type-arg]
    net, policies, attacks, never_block, previous, engine_settings = scenario
    plan = plan_mitigations(net, attacks, policies, previous, never_block=never_block, settings=engine_settings)
    assert [m.attack_id for m in plan.mitigations] == [a.id for a in attacks]
    by_tenant = {p.tenant_id: p for p in policies}
    for m in plan.mitigations:
        verified = [ipaddress.ip_network(p) for p in by_tenant[m.tenant_id].verified_prefixes]
        allowed = by_tenant[m.tenant_id].allowed_actions
        for action in m.actions:
            route = action.route
            prefix = ipaddress.ip_network(route.destination if isinstance(route, FlowSpecRule) else route.prefix)
            assert any(prefix.version == v.version and prefix.subnet_of(v) for v in verified)  # type: ignore[arg-type]
            assert action.kind in allowed
            assert not any(prefix.overlaps(ipaddress.ip_network(n)) for n in never_block  # type: ignore[arg-type]
                           if ipaddress.ip_network(n).version == prefix.version)
        assert "refused by safety" not in m.reason
        assert (m.level == Level.NONE) == (not m.actions)
        assert (m.center_id is not None) == (m.level == Level.DIVERSION)
        json.dumps(m.inputs)
    assert_safe(plan, policies, net, never_block, engine_settings.edge_rule_cap)


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_centers_are_never_planned_beyond_their_headroom(scenario: tuple) -> None:  # type: ignore[type-arg]
    net, policies, attacks, never_block, _, engine_settings = scenario
    plan = plan_mitigations(net, attacks, policies, never_block=never_block, settings=engine_settings)
    for c in net.centers:
        added = sum(a.gbps for a in attacks if plan.for_attack(a.id).center_id == c.id)
        usable = max(c.capacity_gbps * (1 - engine_settings.headroom_reserve) - c.load_gbps, 0.0)
        assert added <= usable * (engine_settings.stale_headroom_factor if c.stale else 1.0) + 1e-6


@given(scenarios())
def test_no_prefix_is_ever_diverted_to_two_centers(scenario: tuple) -> None:  # type: ignore[type-arg]
    net, policies, attacks, never_block, previous, engine_settings = scenario
    plan = plan_mitigations(net, attacks, policies, previous, never_block=never_block, settings=engine_settings)
    diverted = [(ipaddress.ip_network(a.route.prefix), a.route.next_hop)
                for m in plan.mitigations for a in m.actions if a.kind == ActionKind.DIVERSION]  # fmt: skip
    for prefix, hop in diverted:
        assert all(other_hop == hop for other, other_hop in diverted if other.overlaps(prefix))  # type: ignore[arg-type]


def test_a_thousand_attacks_are_all_planned() -> None:
    """How fast is bench/engine_scale.py's figure (engine_plan_1000_p50); here only that every attack is planned."""
    centers = [center(i, f"c{i}", cap=400.0, load=50.0) for i in range(1, 31)]
    peers = tuple(peer(i, (i % 30) + 1) for i in range(1, 121))
    net = NetworkSnapshot(tuple(centers), peers, NOW)
    policies = [tenant(t, (f"10.{t}.0.0/16",), latency={c.id: float(c.id) for c in centers},
                       profile=tuple(AppProfile)[t % 6]) for t in range(1, 101)]
    attacks = [attack(i, f"10.{i % 100 + 1}.{i % 250}.{i % 200 + 1}", gbps=2.0, tid=i % 100 + 1,
                      vectors=(tuple(V)[i % 15],)) for i in range(1000)]
    plan = plan_mitigations(net, attacks, policies)
    assert all(m.level != Level.NONE for m in plan.mitigations if m.inputs["filter_quality"] != "none"
               or m.inputs["diversion_prefix"])
