"""JunosDriver against the emulator over SSH with the real PyEZ: the two-phase push and every way it can fail."""

from __future__ import annotations

import pytest

from devices.drivers.base import (
    CommitError,
    ConfigLoadError,
    ConnectError,
    DeviceIntent,
    DriverTimeoutError,
    FlowSpecRule,
    LockError,
    RenderError,
    UnicastRoute,
    VerifyError,
)
from devices.drivers.junos import JunosDriver, render_statements
from netsim.junos import JunosEmulator
from netsim.polling import wait_for
from tests.support.emulators import emulator_fixture

FOREIGN = (
    "set system host-name edge1\n"
    "set routing-options flow route operator-keep match destination 198.51.100.1/32\n"
    "set routing-options flow route operator-keep then discard\n"
)
INTENT = DeviceIntent(
    flow_rules=(
        FlowSpecRule(destination="203.0.113.10/32", action="discard", protocols=((17, 17),),
                     source_ports=((53, 53),), packet_lengths=((1400, 9216),), fragments=("is-fragment",)),
        FlowSpecRule(destination="203.0.113.11/32", action="rate-limit", rate_bps=10_000_000,
                     protocols=((6, 6),), tcp_flags=("syn",), destination_ports=((80, 80), (443, 443))),
        FlowSpecRule(destination="203.0.113.12/32", action="redirect", redirect_target="65000:666",
                     source="198.51.100.0/24", icmp_types=((8, 8),), icmp_codes=((0, 0),)),
        FlowSpecRule(destination="2001:db8::1/128", action="mark", dscp=8, protocols=((17, 17),)),
    ),
    diversions=(UnicastRoute("203.0.113.0/24", "192.0.2.50", communities=("65000:100",)),),
)



emulator = emulator_fixture(hostname="edge1", username="sluice", password="secret")


@pytest.fixture
def router(emulator: JunosEmulator) -> JunosEmulator:
    emulator.reset(FOREIGN)
    return emulator


def driver_for(router: JunosEmulator, *, timeout: int = 10, password: str = "secret") -> JunosDriver:
    return JunosDriver("127.0.0.1", router.port, "sluice", password, timeout=timeout)


def sluice_lines(router: JunosEmulator) -> list[str]:
    return [line for line in router.committed_set() if "sluice-" in line or "SLUICE-DIVERT" in line]


def assert_untouched(router: JunosEmulator, before: list[str]) -> None:
    """After a failure: committed config as it was, no lock, no pending commit, nothing left in the candidate."""
    assert wait_for(lambda: router.lock_holder() is None)
    assert router.committed_set() == before
    assert not router.commit_pending()
    assert router.candidate_set() == router.committed_set()


def test_stage_then_confirm_installs_the_intent_and_leaves_foreign_config(router: JunosEmulator) -> None:
    with driver_for(router) as driver:
        result = driver.stage(INTENT, confirm_minutes=5)
        assert result.changed and result.commit_pending
        assert "route sluice-" in result.diff
        assert router.commit_pending() and router.lock_holder() == "sluice"
        driver.confirm()
        assert not router.commit_pending() and router.lock_holder() is None
        found = driver.read_intent()
    committed = router.committed_set()
    assert f"set routing-options flow route {INTENT.flow_rules[0].name} then discard" in committed
    assert "set routing-options flow route operator-keep then discard" in committed
    assert ("set routing-instances SLUICE-DIVERT routing-options static route 203.0.113.0/24 next-hop 192.0.2.50"
            in committed)
    assert any(line.endswith("then routing-instance target:65000:666") for line in committed)
    assert any(line.endswith("vrf-target target:65000:666") for line in committed)
    assert {rule.name for rule in found.flow_rules} == {rule.name for rule in INTENT.flow_rules}
    assert found.diversions == INTENT.diversions
    router.advance(3600)
    assert f"set routing-options flow route {INTENT.flow_rules[0].name} then discard" in router.committed_set()


def test_staging_the_same_intent_again_changes_nothing(router: JunosEmulator) -> None:
    with driver_for(router) as driver:
        driver.stage(INTENT)
        driver.confirm()
        revisions = router.rollback_count()
        result = driver.stage(INTENT)
        driver.confirm()
    assert not result.changed and not result.commit_pending and result.diff == ""
    assert router.rollback_count() == revisions
    assert router.lock_holder() is None


def test_only_sluice_owned_config_is_removed(router: JunosEmulator) -> None:
    smaller = DeviceIntent(flow_rules=INTENT.flow_rules[:1])
    with driver_for(router) as driver:
        driver.stage(INTENT)
        driver.confirm()
        result = driver.stage(smaller)
        driver.confirm()
    assert f"route {INTENT.flow_rules[1].name}" in result.diff
    lines = sluice_lines(router)
    assert all(INTENT.flow_rules[0].name in line for line in lines if "flow route" in line)
    assert not any("static route" in line or "sluice-redirect" in line for line in lines)
    assert "set routing-options flow route operator-keep then discard" in router.committed_set()


def test_abort_rolls_back_a_pending_commit(router: JunosEmulator) -> None:
    before = router.committed_set()
    with driver_for(router) as driver:
        driver.stage(INTENT)
        driver.abort()
    assert_untouched(router, before)


def test_abort_without_a_commit_discards_and_unlocks(router: JunosEmulator) -> None:
    before = router.committed_set()
    with driver_for(router) as driver:
        driver.stage(INTENT)
        driver.confirm()
        driver.abort()
    assert router.lock_holder() is None
    assert router.committed_set() != before


def test_an_unconfirmed_stage_rolls_back_by_itself(router: JunosEmulator) -> None:
    before = router.committed_set()
    with driver_for(router) as driver:
        driver.stage(INTENT, confirm_minutes=2)
    assert router.commit_pending()
    router.advance(121)
    assert_untouched(router, before)


def test_dry_run_shows_the_diff_and_changes_nothing(router: JunosEmulator) -> None:
    before = router.committed_set()
    with driver_for(router) as driver:
        diff = driver.dry_run(INTENT)
    assert "[edit" in diff and INTENT.flow_rules[0].name in diff
    assert_untouched(router, before)


@pytest.mark.parametrize("intent", [
    DeviceIntent(flow_rules=(FlowSpecRule(destination="203.0.113.1/32", action="redirect",
                                          redirect_target="65000:1;\ndelete system"),)),
    DeviceIntent(flow_rules=(FlowSpecRule(destination="203.0.113.1/32", action="discard",
                                          destination_ports=((70000, 70001),)),)),
    DeviceIntent(diversions=(UnicastRoute("203.0.113.0/24", "192.0.2.1", communities=("evil community",)),)),
    DeviceIntent(routing_instance="bad name"),
])
def test_render_errors_are_raised_before_any_device_io(router: JunosEmulator, intent: DeviceIntent) -> None:
    with pytest.raises(RenderError):
        render_statements(intent)
    never_opened = driver_for(router)
    with pytest.raises(RenderError):
        never_opened.stage(intent)
    with pytest.raises(RenderError):
        never_opened.dry_run(intent)


def test_refused_login_is_a_connect_error(router: JunosEmulator) -> None:
    router.refuse_login()
    with pytest.raises(ConnectError, match="login refused"):
        driver_for(router).open()
    with pytest.raises(ConnectError, match="login refused"):
        driver_for(router, password="wrong").open()


def test_a_stopped_router_is_a_connect_error() -> None:
    stopped = JunosEmulator(hostname="gone").start()
    port = stopped.port
    stopped.stop()
    with pytest.raises(ConnectError):
        JunosDriver("127.0.0.1", port, "sluice", "sluice", timeout=5).open()


def test_lock_held_by_someone_else(router: JunosEmulator) -> None:
    before = router.committed_set()
    router.hold_lock("alice")
    with driver_for(router) as driver, pytest.raises(LockError, match="alice") as caught:
        driver.stage(INTENT)
    assert caught.value.transient
    router.release_lock()
    assert_untouched(router, before)


def test_commit_error_discards_and_unlocks(router: JunosEmulator) -> None:
    before = router.committed_set()
    router.set_commit_error("mgd: flow route table full")
    with driver_for(router) as driver:
        with pytest.raises(CommitError, match="flow route table full"):
            driver.stage(INTENT)
        assert_untouched(router, before)


def test_validation_hook_rejects_at_commit_check(router: JunosEmulator) -> None:
    before = router.committed_set()
    router.add_validator(lambda lines: "packet-length above MTU" if any("9216" in x for x in lines) else None)
    with driver_for(router) as driver, pytest.raises(CommitError, match="packet-length above MTU"):
        driver.stage(INTENT)
    assert_untouched(router, before)


def test_load_error(router: JunosEmulator) -> None:
    before = router.committed_set()
    router.set_load_error("syntax error: flow routes are not supported here")
    with driver_for(router) as driver, pytest.raises(ConfigLoadError, match="not supported"):
        driver.stage(INTENT)
    assert_untouched(router, before)


def test_session_dropped_mid_commit(router: JunosEmulator) -> None:
    before = router.committed_set()
    router.drop_session_on_commit()
    driver = driver_for(router)
    driver.open()
    with pytest.raises(ConnectError, match="closed"):
        driver.stage(INTENT)
    driver.close()
    assert_untouched(router, before)


def test_slow_commit_times_out(router: JunosEmulator) -> None:
    before = router.committed_set()
    router.set_commit_delay(3)
    driver = driver_for(router, timeout=1)
    driver.open()
    with pytest.raises(DriverTimeoutError) as caught:
        driver.stage(INTENT)
    driver.close()
    assert caught.value.transient
    assert_untouched(router, before)


def test_read_back_mismatch_is_a_verify_error_and_rolls_back(router: JunosEmulator) -> None:
    before = router.committed_set()
    router.set_commit_mangler(lambda lines: [line for line in lines if "static route" not in line])
    with driver_for(router) as driver, pytest.raises(VerifyError):
        driver.stage(INTENT)
    router.set_commit_mangler(None)
    assert_untouched(router, before)


def test_operational_getters(router: JunosEmulator) -> None:
    router.set_bgp_neighbor("192.0.2.1", remote_as=65001, received_prefixes=12, accepted_prefixes=11,
                            advertised_prefixes=4, description="transit-a")
    router.set_bgp_neighbor("192.0.2.2", remote_as=65002, state="Active")
    router.set_interface_counters("xe-1/0/0", rx_octets=10_000, tx_octets=20_000, rx_discards=3)
    with driver_for(router) as driver:
        neighbors = driver.get_bgp_neighbors()
        counters = driver.get_interfaces_counters()
    assert neighbors["192.0.2.1"]["is_up"] is True
    assert neighbors["192.0.2.1"]["remote_as"] == 65001
    assert neighbors["192.0.2.1"]["received_prefixes"] == 12
    assert neighbors["192.0.2.2"]["is_up"] is False
    assert counters["xe-1/0/0"]["rx_octets"] == 10_000
    assert counters["xe-1/0/0"]["tx_octets"] == 20_000
    assert counters["xe-1/0/0"]["rx_discards"] == 3
