"""An attack from few sources (reflection from a handful of amplifiers) is filtered on those sources, aggregated
within the FlowSpec rule budget, and the decision says so; many sources keep rules on the destination alone."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from collector.signals import AttackVector as V
from collector.sources import addresses_covered, aggregate_sources, as_network, common_block
from devices.drivers.base import FlowSpecRule
from mitigation.engine import AppProfile, EngineSettings, Level, plan_mitigations
from mitigation.safety import FLOWSPEC_SOURCE_TOO_BROAD, NEVER_BLOCK, SafetyLimits, validate_action
from tests.mitigation.test_engine import attack, center, snapshot, tenant

NET = snapshot(center(1, "Frankfurt"))
VOIP = tenant(latency={1: 3.0}, profile=AppProfile.VOIP)
AMPLIFIERS = ("100.80.5.16/32", "100.82.5.16/32", "100.84.5.16/32", "100.86.5.16/32", "100.96.0.1/32",
              "100.96.0.2/32")


def rules_of(plan_attack: object, **kw: object) -> tuple[list[FlowSpecRule], str]:
    live = replace(attack(1, vectors=(V.NTP_AMPLIFICATION,)), **kw)  # type: ignore[arg-type]
    mitigation = plan_mitigations(NET, [live], [VOIP], settings=plan_attack).for_attack(1)  # type: ignore[arg-type]
    assert mitigation.level == Level.FLOWSPEC
    return [a.route for a in mitigation.actions if isinstance(a.route, FlowSpecRule)], mitigation.reason


def test_reflection_from_a_handful_of_amplifiers_is_matched_on_them_and_the_reason_says_so() -> None:
    rules, reason = rules_of(EngineSettings(), top_sources=AMPLIFIERS)
    assert sorted(r.source or "" for r in rules) == sorted(AMPLIFIERS)
    assert all(r.source_ports == ((123, 123),) and r.destination == "203.0.113.7/32" for r in rules)
    assert "few sources (6)" in reason and "exactly into 6 blocks" in reason


def test_a_tight_budget_aggregates_the_sources_as_narrowly_as_it_can() -> None:
    nearby = ("198.18.1.1/32", "198.18.1.9/32", "198.18.7.3/32", "198.19.0.1/32")
    rules, reason = rules_of(EngineSettings(source_blocks_max=2), top_sources=nearby)
    assert sorted(r.source or "" for r in rules) == ["198.18.0.0/21", "198.19.0.1/32"]
    assert "aggregated into 2 blocks" in reason
    rules, reason = rules_of(EngineSettings(source_blocks_max=2), top_sources=AMPLIFIERS)
    assert [r.source for r in rules] == [None], "merging them into two blocks needs one wider than a /16"


def test_sources_too_spread_for_the_budget_keep_the_rule_on_the_destination_and_say_so() -> None:
    spread = ("100.64.0.1/32", "198.18.0.1/32", "192.0.2.9/32")
    rules, reason = rules_of(EngineSettings(source_blocks_max=1), top_sources=spread)
    assert [r.source for r in rules] == [None]
    assert "cannot be matched within the FlowSpec rule budget" in reason


def test_the_heaviest_of_many_sources_give_nothing_to_match_on() -> None:
    rules, reason = rules_of(EngineSettings(), top_sources=("100.80.5.16", "100.82.5.16"))
    assert [r.source for r in rules] == [None] and "few sources" not in reason


def test_the_edge_rule_budget_bounds_the_blocks() -> None:
    live = replace(attack(1, vectors=(V.NTP_AMPLIFICATION,)), top_sources=AMPLIFIERS)
    plan = plan_mitigations(NET, [live], [VOIP], rules_in_use={"edge": 2997})
    rules = [a.route for a in plan.for_attack(1).actions if isinstance(a.route, FlowSpecRule)]
    assert 1 <= len(rules) <= 3


def test_safety_refuses_wide_or_never_block_sources() -> None:
    live = replace(attack(1, vectors=(V.NTP_AMPLIFICATION,)), top_sources=AMPLIFIERS)
    action = plan_mitigations(NET, [live], [VOIP]).for_attack(1).actions[0]
    assert isinstance(action.route, FlowSpecRule)
    kwargs = {"tenant_prefixes": VOIP.verified_prefixes, "limits": SafetyLimits()}
    assert validate_action(action, never_block=(), **kwargs) == []  # type: ignore[arg-type]
    blocked = validate_action(action, never_block=(action.route.source or "",), **kwargs)  # type: ignore[arg-type]
    assert [r.code for r in blocked] == [NEVER_BLOCK]
    wide = replace(action, route=replace(action.route, source="100.0.0.0/8"))
    assert [r.code for r in validate_action(wide, never_block=(), **kwargs)] == [FLOWSPEC_SOURCE_TOO_BROAD]  # type: ignore[arg-type]


addresses = st.integers(0, 2**32 - 1).map(lambda n: ipaddress.ip_network(n))


@given(st.lists(addresses, min_size=1, max_size=40), st.integers(1, 10))
def test_aggregation_covers_every_source_within_the_limit_or_refuses(sources: list, limit: int) -> None:  # type: ignore[type-arg]
    blocks = aggregate_sources(sources, limit, widest={4: 0, 6: 0})
    assert blocks is not None and len(blocks) <= limit
    assert all(any(s.subnet_of(b) for b in blocks) for s in sources)
    exact = aggregate_sources(sources, len(sources))
    assert exact is not None and addresses_covered(exact) == len(set(sources)), "with room, nothing is widened"


def test_common_block() -> None:
    assert common_block(as_network("192.0.2.1"), as_network("192.0.2.6")) == as_network("192.0.2.0/29")
    assert common_block(as_network("192.0.2.0/25"), as_network("192.0.2.200")) == as_network("192.0.2.0/24")
