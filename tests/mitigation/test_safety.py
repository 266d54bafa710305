"""Specification of the safety validators: each rule refuses what it must and accepts good input."""

from __future__ import annotations

import pytest

from devices.drivers.base import BLACKHOLE_COMMUNITY, FlowSpecRule, UnicastRoute
from mitigation import safety
from mitigation.engine.types import EDGE_TARGET, ActionKind, Level, PlannedAction, PlannedMitigation
from mitigation.safety import (
    RTBH_TOO_SHORT,
    SafetyError,
    SafetyLimits,
    check_action,
    matches_bgp,
    validate_action,
    validate_plan,
)

TENANT = ("203.0.112.0/22", "2001:db8:100::/40")
NEVER_BLOCK = ("198.51.100.53/32", "2001:db8:ffff::/48")
LIMITS = SafetyLimits(target_caps={EDGE_TARGET: 10, "peer:1": 2})
UDP_PORTS_BUT_BGP = ((0, 178), (180, 65535))


def codes(action: PlannedAction, *, tenant: tuple[str, ...] = TENANT, limits: SafetyLimits = LIMITS) -> set[str]:
    refusals = validate_action(action, tenant_prefixes=tenant, never_block=NEVER_BLOCK, limits=limits)
    assert all(r.message for r in refusals), "every refusal explains itself"
    return {r.code for r in refusals}


def diversion(prefix: str, next_hop: str = "10.0.0.1", **kwargs: object) -> PlannedAction:
    return PlannedAction(ActionKind.DIVERSION, UnicastRoute(prefix, next_hop, **kwargs), ("peer:1",), "test")


def rtbh(
    prefix: str, next_hop: str = "192.0.2.1", communities: tuple[str, ...] = (BLACKHOLE_COMMUNITY,)
) -> PlannedAction:
    route = UnicastRoute(prefix, next_hop, communities=communities)
    return PlannedAction(ActionKind.RTBH, route, (EDGE_TARGET,), "t")


def flow(destination: str = "203.0.113.7/32", action: str = "discard", targets: tuple[str, ...] = (EDGE_TARGET,),
         **kwargs: object) -> PlannedAction:
    rule = FlowSpecRule(destination, action, **kwargs)  # type: ignore[arg-type]
    return PlannedAction(ActionKind.FLOWSPEC, rule, targets, "test")


UDP_NTP = {"protocols": ((17, 17),), "source_ports": ((123, 123),)}


class TestTenantSpace:
    @pytest.mark.parametrize("action", [
        diversion("203.0.113.0/24"), rtbh("203.0.113.7/32"), flow(**UDP_NTP),
        diversion("2001:db8:100::/48", "2001:db8::1"), rtbh("2001:db8:100::7/128", "100::1"),
    ])
    def test_accepts_actions_inside_the_tenants_verified_space(self, action: PlannedAction) -> None:
        assert codes(action) == set()

    @pytest.mark.parametrize("action", [
        diversion("192.0.2.0/24"), rtbh("192.0.2.7/32"), flow("192.0.2.7/32", **UDP_NTP),
        diversion("2001:db8:200::/48", "2001:db8::1"),
    ])
    def test_refuses_anything_outside_it(self, action: PlannedAction) -> None:
        assert safety.OUTSIDE_TENANT_SPACE in codes(action)

    def test_a_tenant_without_verified_prefixes_can_announce_nothing(self) -> None:
        assert safety.OUTSIDE_TENANT_SPACE in codes(rtbh("203.0.113.7/32"), tenant=())

    @pytest.mark.parametrize("action", [
        diversion("198.51.100.0/24"), rtbh("198.51.100.53/32"), flow("198.51.100.0/24", **UDP_NTP),
        diversion("2001:db8:ffff::/48", "2001:db8::1"),
    ])
    def test_refuses_anything_touching_the_never_block_list(self, action: PlannedAction) -> None:
        tenant = ("198.51.100.0/22", "2001:db8:ff00::/40")
        assert safety.NEVER_BLOCK in codes(action, tenant=tenant)


class TestDiversion:
    @pytest.mark.parametrize("prefix", ["203.0.113.128/25", "203.0.113.7/32"])
    def test_refuses_ipv4_longer_than_24(self, prefix: str) -> None:
        assert safety.DIVERSION_TOO_LONG in codes(diversion(prefix))

    def test_refuses_ipv6_longer_than_48(self) -> None:
        assert safety.DIVERSION_TOO_LONG in codes(diversion("2001:db8:100::/49", "2001:db8::1"))

    def test_accepts_the_verified_prefix_itself_and_a_24_inside_it(self) -> None:
        assert codes(diversion("203.0.112.0/22")) == set()
        assert codes(diversion("203.0.114.0/24")) == set()

    def test_refuses_a_prefix_shorter_than_the_verified_one(self) -> None:
        found = codes(diversion("203.0.112.0/21"))
        assert {safety.DIVERSION_TOO_SHORT, safety.OUTSIDE_TENANT_SPACE} <= found

    def test_refuses_a_diversion_carrying_the_blackhole_community(self) -> None:
        assert safety.DIVERSION_BLACKHOLE in codes(diversion("203.0.113.0/24", communities=(BLACKHOLE_COMMUNITY,)))

    def test_refuses_a_flowspec_rule_dressed_as_a_diversion(self) -> None:
        action = PlannedAction(ActionKind.DIVERSION, FlowSpecRule("203.0.113.0/24", "discard"), ("peer:1",), "t")
        assert safety.WRONG_ROUTE_TYPE in codes(action)


class TestRtbh:
    def test_host_routes_are_allowed_in_both_families(self) -> None:
        assert codes(rtbh("203.0.113.9/32")) == set()
        assert codes(rtbh("2001:db8:100::9/128", "100::1")) == set()

    def test_requires_the_blackhole_community(self) -> None:
        assert safety.RTBH_COMMUNITY_MISSING in codes(rtbh("203.0.113.9/32", communities=("64500:1",)))

    def test_extra_isp_communities_are_fine(self) -> None:
        assert codes(rtbh("203.0.113.9/32", communities=(BLACKHOLE_COMMUNITY, "3356:9999"))) == set()


class TestFlowSpecBgpProtection:
    def test_a_rule_matching_everything_would_match_bgp(self) -> None:
        assert safety.FLOWSPEC_MATCHES_BGP in codes(flow())

    def test_tcp_with_an_unrestricted_source_port_is_refused(self) -> None:
        assert safety.FLOWSPEC_MATCHES_BGP in codes(flow(protocols=((6, 6),), destination_ports=((80, 80),)))

    def test_a_port_range_spanning_179_is_refused_when_tcp_is_possible(self) -> None:
        rule = {"protocols": ((0, 255),), "destination_ports": ((100, 200),), "source_ports": ((1024, 65535),)}
        assert safety.FLOWSPEC_MATCHES_BGP in codes(flow(**rule))

    def test_tcp_flags_imply_tcp(self) -> None:
        assert safety.FLOWSPEC_MATCHES_BGP in codes(flow(action="rate-limit", rate_bps=1000, tcp_flags=("syn",)))

    def test_tcp_excluding_179_on_both_ports_is_accepted(self) -> None:
        rule = {"protocols": ((6, 6),), "destination_ports": UDP_PORTS_BUT_BGP, "source_ports": UDP_PORTS_BUT_BGP}
        assert codes(flow(**rule)) == set()

    def test_a_discard_of_a_non_tcp_protocol_may_include_port_179(self) -> None:
        assert codes(flow(protocols=((17, 17),), destination_ports=((0, 65535),))) == set()
        assert codes(flow(protocols=((0, 5), (7, 255)))) == set()

    def test_matches_bgp_helper(self) -> None:
        assert matches_bgp(FlowSpecRule("203.0.113.7/32", "discard", protocols=((1, 10),)))
        assert not matches_bgp(FlowSpecRule("203.0.113.7/32", "discard", protocols=((47, 47),)))


class TestFlowSpecRanges:
    @pytest.mark.parametrize("kwargs", [
        {"protocols": ((17, 256),)},
        {"protocols": ((17, 17),), "destination_ports": ((0, 70000),)},
        {"protocols": ((17, 17),), "source_ports": ((500, 400),)},
        {"protocols": ((17, 17),), "packet_lengths": ((1400, 9217),)},
        {"protocols": ((1, 1),), "icmp_types": ((0, 300),)},
        {"protocols": ((1, 1),), "icmp_codes": ((-1, 3),)},
    ])
    def test_refuses_values_outside_their_field(self, kwargs: dict[str, object]) -> None:
        assert safety.FLOWSPEC_RANGE in codes(flow(**kwargs))

    def test_accepts_the_edges_of_each_range(self) -> None:
        rule = {"protocols": ((17, 17),), "destination_ports": ((0, 65535),), "packet_lengths": ((0, 9216),)}
        assert codes(flow(**rule)) == set()
        assert codes(flow(protocols=((1, 1),), icmp_types=((0, 255),), icmp_codes=((0, 255),))) == set()

    def test_dscp_and_rate_bounds(self) -> None:
        assert safety.FLOWSPEC_RANGE in codes(flow(action="mark", dscp=64, protocols=((17, 17),)))
        assert codes(flow(action="mark", dscp=63, protocols=((17, 17),))) == set()
        assert safety.FLOWSPEC_RANGE in codes(flow(action="rate-limit", rate_bps=-1, protocols=((17, 17),)))
        assert codes(flow(action="rate-limit", rate_bps=0, protocols=((17, 17),))) == set()

    def test_redirect_needs_a_route_target(self) -> None:
        assert safety.FLOWSPEC_RANGE in codes(flow(action="redirect", redirect_target="vrf-a", protocols=((17, 17),)))
        assert codes(flow(action="redirect", redirect_target="64500:100", protocols=((17, 17),))) == set()

    def test_tcp_flags_on_a_rule_that_excludes_tcp_are_inconsistent(self) -> None:
        assert safety.FLOWSPEC_INCONSISTENT in codes(flow(protocols=((17, 17),), tcp_flags=("syn",)))


class TestFlowSpecBreadth:
    def test_destination_no_wider_than_the_verified_prefix(self) -> None:
        assert safety.OUTSIDE_TENANT_SPACE in codes(flow("203.0.112.0/21", **UDP_NTP))
        assert codes(flow("203.0.112.0/22", **UDP_NTP)) == set()

    def test_destination_no_wider_than_the_absolute_cap(self) -> None:
        found = codes(flow("10.0.0.0/12", **UDP_NTP), tenant=("10.0.0.0/8",))
        assert found == {safety.FLOWSPEC_TOO_BROAD}
        found = codes(flow("2001:db0::/30", **UDP_NTP), tenant=("2001:db0::/29",))
        assert found == {safety.FLOWSPEC_TOO_BROAD}


class TestRuleCaps:
    def test_refuses_a_rule_beyond_a_routers_cap(self) -> None:
        full = SafetyLimits(target_caps={EDGE_TARGET: 10}, rules_in_use={EDGE_TARGET: 10})
        assert safety.RULE_CAP in codes(flow(**UDP_NTP), limits=full)
        room = SafetyLimits(target_caps={EDGE_TARGET: 10}, rules_in_use={EDGE_TARGET: 9})
        assert codes(flow(**UDP_NTP), limits=room) == set()

    def test_each_upstream_has_its_own_cap(self) -> None:
        limits = SafetyLimits(target_caps={EDGE_TARGET: 10, "peer:1": 2}, rules_in_use={"peer:1": 2})
        assert safety.RULE_CAP in codes(flow(targets=(EDGE_TARGET, "peer:1"), **UDP_NTP), limits=limits)
        assert codes(flow(targets=(EDGE_TARGET, "peer:2"), **UDP_NTP), limits=limits) == set()

    def test_validate_plan_counts_rules_across_attacks(self) -> None:
        actions = tuple(flow(f"203.0.113.{i}/32", targets=(EDGE_TARGET, "peer:1"), **UDP_NTP) for i in range(3))
        plan = [PlannedMitigation(1, 7, None, Level.FLOWSPEC, actions, "r", {}, 1.0)]
        found = validate_plan(plan, tenant_prefixes={7: TENANT}, never_block=NEVER_BLOCK, limits=LIMITS)
        assert [(attack, r.code) for attack, _, r in found] == [(1, safety.RULE_CAP)]
        assert found[0][1] is actions[2]


class TestGeneral:
    def test_an_action_without_receivers_is_refused(self) -> None:
        action = PlannedAction(ActionKind.RTBH, UnicastRoute("203.0.113.7/32", "192.0.2.1",
                                                             communities=(BLACKHOLE_COMMUNITY,)), (), "t")
        assert safety.NO_TARGETS in codes(action)

    def test_check_action_raises_with_every_refusal(self) -> None:
        with pytest.raises(SafetyError) as caught:
            check_action(flow("192.0.2.7/32"), tenant_prefixes=TENANT, never_block=NEVER_BLOCK, limits=LIMITS)
        found = {r.code for r in caught.value.refusals}
        assert {safety.OUTSIDE_TENANT_SPACE, safety.FLOWSPEC_MATCHES_BGP} <= found
        assert "179" in str(caught.value)

    def test_check_action_passes_good_input_silently(self) -> None:
        check_action(flow(**UDP_NTP), tenant_prefixes=TENANT, never_block=NEVER_BLOCK, limits=LIMITS)


@pytest.mark.parametrize(("prefix", "refused"), [
    ("203.0.113.0/24", False), ("203.0.112.0/23", True), ("203.0.113.9/32", False),
    ("2001:db8:100::/48", False), ("2001:db8:100::/47", True),
])
def test_rtbh_never_blackholes_more_than_a_slash_24_or_48(prefix: str, refused: bool) -> None:
    next_hop = "2001:db8::1" if ":" in prefix else "192.0.2.1"
    assert (RTBH_TOO_SHORT in codes(rtbh(prefix, next_hop))) is refused
