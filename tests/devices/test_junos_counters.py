"""Per-rule FlowSpec counters read with the real PyEZ from the Junos emulator, after traffic went through the
emulated data plane; and the Junos term names rules are shown under."""

from __future__ import annotations

from typing import Any

import pytest

from devices.drivers.base import DeviceIntent, FlowSpecRule, RuleCounters, UnsupportedError
from devices.drivers.junos import JunosDriver, junos_term_name, render_statements
from devices.drivers.napalm_driver import NapalmDriver
from netsim.dataplane import DataPlane, EdgeRouter, Stream
from netsim.junos import JunosEmulator
from netsim.junos.config import statements_from_set, tree_from_statements
from netsim.junos.state import flow_routes_from_config
from tests.support.emulators import emulator_fixture

DNS_DISCARD = FlowSpecRule("203.0.113.10/32", "discard", protocols=((17, 17),), source_ports=((53, 53),))
SYN_LIMIT = FlowSpecRule("203.0.113.11/32", "rate-limit", rate_bps=2_000_000, protocols=((6, 6),),
                         tcp_flags=("syn",))
MARK = FlowSpecRule("203.0.113.12/32", "mark", dscp=8, protocols=((6, 6),))
V6_DISCARD = FlowSpecRule("2001:db8::10/128", "discard", protocols=((17, 17),))
NOT_INSTALLED = FlowSpecRule("203.0.113.13/32", "discard")
INTENT = DeviceIntent(flow_rules=(DNS_DISCARD, SYN_LIMIT, MARK, V6_DISCARD))

emulator = emulator_fixture(hostname="edge7", username="sluice", password="secret")


def driver_for(router: JunosEmulator) -> JunosDriver:
    return JunosDriver("127.0.0.1", router.port, "sluice", "secret", timeout=10)


def stream(name: str, destination: str, protocol: int, *, bps: int = 8_000_000, **fields: Any) -> Stream:
    """1,000-byte packets: 8 Mbit/s is 1,000 packets per second."""
    source = "2001:db8:99::7" if ":" in destination else "198.51.100.7"
    return Stream(name, source, destination, protocol, bps, "edge7", packet_size=1000, **fields)


@pytest.fixture
def router(emulator: JunosEmulator) -> JunosEmulator:
    emulator.reset("set system host-name edge7\n")
    return emulator


def test_counters_read_back_what_the_data_plane_counted(router: JunosEmulator) -> None:
    with driver_for(router) as driver:
        driver.stage(INTENT, confirm_minutes=5)
        driver.confirm()
    plane = DataPlane([EdgeRouter("edge7", router)])
    plane.add_stream(stream("dns", "203.0.113.10", 17, source_port=53, attack=True))
    plane.add_stream(stream("syn", "203.0.113.11", 6, tcp_flags=0x02))
    plane.add_stream(stream("web", "203.0.113.12", 6, bps=4_000_000))
    plane.add_stream(stream("udp6", "2001:db8::10", 17))
    plane.tick(1.0)
    plane.tick(1.0)
    with driver_for(router) as driver:
        counters = driver.flowspec_counters([DNS_DISCARD, SYN_LIMIT, MARK, V6_DISCARD, NOT_INSTALLED])
    assert counters == {
        DNS_DISCARD.name: RuleCounters(2000, 2_000_000, 2000, 2_000_000),
        SYN_LIMIT.name: RuleCounters(2000, 2_000_000, 1500, 1_500_000),
        MARK.name: RuleCounters(1000, 1_000_000, 0, 0),
        V6_DISCARD.name: RuleCounters(2000, 2_000_000, 2000, 2_000_000),
    }


def test_a_withdrawn_rule_is_absent_and_a_reinstalled_one_counts_from_zero(router: JunosEmulator) -> None:
    plane = DataPlane([EdgeRouter("edge7", router)])
    plane.add_stream(stream("dns", "203.0.113.10", 17, source_port=53))
    with driver_for(router) as driver:
        driver.stage(INTENT, confirm_minutes=5)
        driver.confirm()
        plane.tick(1.0)
        assert driver.flowspec_counters([DNS_DISCARD])[DNS_DISCARD.name].packets == 1000
        driver.stage(DeviceIntent(flow_rules=(SYN_LIMIT,)), confirm_minutes=5)
        driver.confirm()
        assert driver.flowspec_counters([DNS_DISCARD, SYN_LIMIT]) == {SYN_LIMIT.name: RuleCounters(0, 0, 0, 0)}
        driver.stage(INTENT, confirm_minutes=5)
        driver.confirm()
        assert driver.flowspec_counters([DNS_DISCARD])[DNS_DISCARD.name] == RuleCounters(0, 0, 0, 0)


def test_a_router_without_flow_routes_shows_no_counters(router: JunosEmulator) -> None:
    with driver_for(router) as driver:
        assert driver.flowspec_counters([DNS_DISCARD, V6_DISCARD]) == {}
        assert driver.flowspec_counters([]) == {}


def test_napalm_cannot_read_per_rule_counters(router: JunosEmulator) -> None:
    with pytest.raises(UnsupportedError):
        NapalmDriver("junos", "127.0.0.1", router.port, "sluice", "secret").flowspec_counters([DNS_DISCARD])
    assert not UnsupportedError.transient


NAMED = [
    # Names as they appear in published `show firewall filter __flowspec_default_inet[6]__` captures.
    (FlowSpecRule("172.16.0.0/29", "discard"), "172.16.0.0/29,*"),
    (FlowSpecRule("192.168.2.1/32", "discard", protocols=((1, 1),)), "192.168.2.1,*,proto=1"),
    (FlowSpecRule("10.11.10.10/32", "discard", icmp_types=((8, 8),)), "10.11.10.10,*,icmp-type=8"),
    (FlowSpecRule("134.34.2.128/25", "discard", protocols=((17, 17),), destination_ports=((1026, 65499),),
                  source_ports=((1026, 65499),)),
     "134.34.2.128/25,*,proto=17,dstport>=1026&<=65499,srcport>=1026&<=65499"),
    (FlowSpecRule("11.194.71.7/32", "rate-limit", rate_bps=6_291_456,
                  destination_ports=((70, 80), (50, 50), (40, 40), (60, 60))),
     "11.194.71.7,*,dstport=40,=50,=60,>=70&<=80"),
    (FlowSpecRule("192.168.1.1/32", "discard", protocols=((17, 17),), fragments=("is-fragment",)),
     "192.168.1.1,*,proto=17,frag:02"),
    (FlowSpecRule("10.10.10.10/32", "discard", protocols=((17, 17),), destination_ports=((53, 53),),
                  packet_lengths=((512, 1500),)), "10.10.10.10,*,proto=17,dstport=53,len>=512&<=1500"),
    (FlowSpecRule("0.0.0.0/0", "discard", protocols=((17, 17),)), "0/0,*,proto=17"),
    (FlowSpecRule("3001:4:b::10/128", "discard", source="3001:1:a::10/128"), "3001:4:b::10/128,3001:1:a::10/128"),
    # Assumed forms (see junos_term_name): one `:` operand per TCP flag, a /32 source without its length.
    (FlowSpecRule("203.0.113.11/32", "rate-limit", rate_bps=10_000, protocols=((6, 6),), tcp_flags=("syn", "ack"),
                  source="198.51.100.7/32"), "203.0.113.11,198.51.100.7,proto=6,tcp-flag:02,:10"),
]


@pytest.mark.parametrize(("rule", "name"), NAMED)
def test_junos_term_name(rule: FlowSpecRule, name: str) -> None:
    assert junos_term_name(rule) == name


@pytest.mark.parametrize("rule", [rule for rule, _ in NAMED] + [DNS_DISCARD, SYN_LIMIT, MARK, V6_DISCARD])
def test_the_emulator_names_a_pushed_rule_as_the_driver_does(rule: FlowSpecRule) -> None:
    """netsim may not import the driver, so the emulator has its own naming; this holds the two equal."""
    statements = "\n".join(render_statements(DeviceIntent(flow_rules=(rule,))))
    [route] = flow_routes_from_config(tree_from_statements(statements_from_set(statements)))
    assert route.term_name == junos_term_name(rule)
    if rule.action == "rate-limit":
        assert route.policer_name == f"{(rule.rate_bps or 0) // 1000}K_{junos_term_name(rule)}"
