"""NapalmDriver with NAPALM's real junos driver against the emulator over SSH."""

from __future__ import annotations

import pytest

from devices.drivers.base import (
    CommitError,
    ConfigLoadError,
    ConnectError,
    DeviceIntent,
    FlowSpecRule,
    LockError,
    RenderError,
    UnicastRoute,
)
from devices.drivers.napalm_driver import NapalmDriver
from netsim.junos import JunosEmulator
from netsim.polling import wait_for
from tests.support.emulators import emulator_fixture

BASE = "set system host-name edge2\n"
INTENT = DeviceIntent(
    flow_rules=(
        FlowSpecRule(destination="203.0.113.20/32", action="discard", protocols=((17, 17),),
                     source_ports=((123, 123),)),
        FlowSpecRule(destination="203.0.113.21/32", action="rate-limit", rate_bps=1_000_000),
    ),
    diversions=(UnicastRoute("203.0.113.0/24", "192.0.2.60"),),
)



emulator = emulator_fixture(hostname="edge2", username="napalm", password="secret")


@pytest.fixture
def router(emulator: JunosEmulator) -> JunosEmulator:
    emulator.reset(BASE)
    return emulator


def driver_for(router: JunosEmulator, password: str = "secret") -> NapalmDriver:
    return NapalmDriver("junos", "127.0.0.1", router.port, "napalm", password, timeout=10)


def assert_untouched(router: JunosEmulator, before: list[str]) -> None:
    assert wait_for(lambda: router.lock_holder() is None)
    assert router.committed_set() == before
    assert not router.commit_pending()
    assert router.candidate_set() == router.committed_set()


def test_stage_confirm_and_read_back(router: JunosEmulator) -> None:
    with driver_for(router) as driver:
        result = driver.stage(INTENT, confirm_minutes=3)
        assert result.changed and result.commit_pending and router.commit_pending()
        driver.confirm()
        found = driver.read_intent()
        again = driver.stage(INTENT)
    assert not router.commit_pending() and router.lock_holder() is None
    assert {rule.name for rule in found.flow_rules} == {rule.name for rule in INTENT.flow_rules}
    assert found.diversions == INTENT.diversions
    assert not again.changed
    assert f"set routing-options flow route {INTENT.flow_rules[1].name} then rate-limit 1000000" in (
        router.committed_set())


def test_unconfirmed_commit_reverts_on_the_router_clock(router: JunosEmulator) -> None:
    before = router.committed_set()
    with driver_for(router) as driver:
        driver.stage(INTENT, confirm_minutes=1)
    router.advance(61)
    assert_untouched(router, before)


def test_abort_rolls_back_and_dry_run_discards(router: JunosEmulator) -> None:
    before = router.committed_set()
    with driver_for(router) as driver:
        diff = driver.dry_run(INTENT)
        assert INTENT.flow_rules[0].name in diff
        assert_untouched(router, before)
        driver.stage(INTENT)
        driver.abort()
    assert_untouched(router, before)


def test_commit_error_and_lock_error_leave_the_router_as_it_was(router: JunosEmulator) -> None:
    before = router.committed_set()
    router.set_commit_error("mgd: commit refused")
    with driver_for(router) as driver, pytest.raises(CommitError, match="commit refused"):
        driver.stage(INTENT)
    assert_untouched(router, before)
    router.set_commit_error(None)
    router.hold_lock("bob")
    with driver_for(router) as driver, pytest.raises(LockError):
        driver.stage(INTENT)
    router.release_lock()
    assert_untouched(router, before)


def test_load_error_and_refused_login(router: JunosEmulator) -> None:
    before = router.committed_set()
    router.set_load_error("syntax error")
    with driver_for(router) as driver, pytest.raises(ConfigLoadError):
        driver.stage(INTENT)
    assert_untouched(router, before)
    router.refuse_login()
    with pytest.raises(ConnectError):
        driver_for(router).open()


def test_render_errors_and_unknown_vendors_fail_before_device_io(router: JunosEmulator) -> None:
    bad = DeviceIntent(flow_rules=(FlowSpecRule(destination="203.0.113.1/32", action="mark", dscp=99),))
    with pytest.raises(RenderError):
        driver_for(router).stage(bad)
    with pytest.raises(RenderError, match="no templates"):
        NapalmDriver("eos", "127.0.0.1", router.port, "napalm", "secret").stage(INTENT)


def test_getters(router: JunosEmulator) -> None:
    router.set_bgp_neighbor("192.0.2.9", remote_as=65009, received_prefixes=7, accepted_prefixes=7)
    router.set_interface_counters("ge-0/0/1", rx_octets=555, tx_octets=777)
    with driver_for(router) as driver:
        neighbors = driver.get_bgp_neighbors()
        counters = driver.get_interfaces_counters()
    assert neighbors["192.0.2.9"]["is_up"] is True
    assert neighbors["192.0.2.9"]["remote_as"] == 65009
    assert neighbors["192.0.2.9"]["received_prefixes"] == 7
    assert counters["ge-0/0/1"]["rx_octets"] == 555
    assert counters["ge-0/0/1"]["tx_octets"] == 777
