"""Apply, verify, withdraw and reconcile against the real speaker, BIRD and the emulated Junos router.

These tests drive the services directly (no worker), with committed data, so that each step's effect on the
network can be checked before the next one.
"""

from __future__ import annotations

import datetime
import io
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from collector.signals import AttackSignal, SignalPhase
from core.actors import Actor
from core.models import AuditEvent
from devices.health import retry_now
from devices.models import BgpSpeaker, ElementHealth, Router
from mitigation.management.commands.run_speaker import hold_speaker
from mitigation.models import Attack, ControlSwitch, Deployment, Mitigation, NeverBlockPrefix
from mitigation.services.lifecycle import approve_mitigation, lifecycle_tick, reject_mitigation
from mitigation.services.network import converge_network
from mitigation.services.planning import plan_attacks
from mitigation.services.signals import record_signal
from netsim.polling import wait_for
from tenants.models import Tenant
from tenants.services import ProfileInput, update_service_profile
from tests.support.lab import Lab, refresh_telemetry, running_lab
from tests.support.processes import free_port
from tests.support.world import World

DETECTOR = Actor("detector", "tests")
OPERATOR = Actor("user", "soc")
PREFIX = "203.0.113.0/24"


@pytest.fixture(scope="module")
def lab(world: World, tmp_path_factory: pytest.TempPathFactory, django_db_blocker: Any) -> Iterator[Lab]:
    with django_db_blocker.unblock(), running_lab(tmp_path_factory.mktemp("lab"), bird_address="127.0.32.1",
                     speaker_address="127.0.32.254") as running:
        yield running


@pytest.fixture
def db_committed(lab: Lab, world: World, django_db_blocker: Any) -> Iterator[None]:
    """Committed database access for one test, with the network and the rows cleaned afterwards."""
    with django_db_blocker.unblock():
        refresh_telemetry()
        set_profile(world, "automatic")
        yield
        lab.emulator.clear_faults()
        ElementHealth.objects.all().delete()
        Attack.objects.all().delete()
        ControlSwitch.objects.update(panic=False)
        converge_network()


def set_profile(world: World, mode: str, hold_down_minutes: int = 0) -> None:
    update_service_profile(
        world.acme,
        ProfileInput(latency_threshold_ms=40, application_profile="web", allowed_actions=("diversion",),
                     automation_mode=mode, approval_window_minutes=5, hold_down_minutes=hold_down_minutes),
        acting_user=Actor("system", "tests"),
    )


def signal(phase: str = "start", target: str = "203.0.113.77") -> Attack | None:
    return record_signal(AttackSignal(target=target, vectors=("udp_flood",), bps=30_000_000_000, pps=4_000_000,
                                      phase=SignalPhase(phase), detector="tests"), acting_user=DETECTOR)


def in_bird(lab: Lab) -> bool:
    return PREFIX in lab.bird.unicast(4)


def mitigate(lab: Lab) -> Mitigation:
    attack = signal()
    assert attack is not None
    plan_attacks()
    converge_network()
    wait_for(lambda: in_bird(lab), timeout=20, what="diversion in BIRD")
    return Mitigation.objects.get(attack=attack)


@pytest.mark.usefixtures("db_committed")
def test_apply_then_end_withdraws_everywhere(lab: Lab) -> None:
    mitigation = mitigate(lab)
    assert mitigation.state == "active" and mitigation.level == "diversion"
    assert lab.router_has(PREFIX)
    assert Deployment.objects.filter(action__mitigation=mitigation, state="present").count() >= 2
    signal("end")
    lifecycle_tick()
    converge_network()
    wait_for(lambda: not in_bird(lab), timeout=20, what="withdrawal from BIRD")
    assert not lab.router_has(PREFIX)
    mitigation.refresh_from_db()
    assert mitigation.state == "ended"
    assert not Deployment.objects.filter(action__mitigation=mitigation, state="present").exists()


def bird_updates(lab: Lab) -> tuple[int, int]:
    """BIRD's count of IPv4 unicast UPDATEs received from the speaker: (announcements, withdrawals)."""
    text = lab.bird.cli(f"show protocols all {lab.bird.protocol_name(lab.bird.peers[0])}")
    channel = text.split("Channel ipv4", 1)[1].split("Channel ", 1)[0]
    updates = re.search(r"Import updates:\s+(\d+)", channel)
    withdraws = re.search(r"Import withdraws:\s+(\d+)", channel)
    assert updates and withdraws, channel
    return int(updates.group(1)), int(withdraws.group(1))


@pytest.fixture
def broken_router(db_committed: None) -> Iterator[Router]:
    """A second edge router whose management address refuses connections (nothing listens on its port)."""
    router = Router.objects.create(name="lab-edge-broken", vendor="juniper", platform="junos", role="edge",
                                   mgmt_host="127.0.0.1", mgmt_port=free_port(), username="sluice",
                                   password="lab-secret")
    yield router
    router.delete()
    ElementHealth.objects.all().delete()


def test_a_router_whose_commit_fails_is_contained_and_recovers(lab: Lab, db_committed: None) -> None:
    before = lab.emulator.committed_set()
    lab.emulator.set_commit_error("simulated commit failure")
    attack = signal()
    plan_attacks()
    report = converge_network()
    assert "simulated commit failure" in report.failed["router:lab-edge-1"]
    assert lab.emulator.committed_set() == before, "the failed router keeps its configuration"
    assert lab.emulator.lock_holder() is None
    wait_for(lambda: in_bird(lab), timeout=10, what="the speaker's announcement, kept")
    health = ElementHealth.objects.get(element="router:lab-edge-1")
    assert health.state == "commit_failed" and health.failures == 1 and health.next_retry_at is not None
    mitigation = Mitigation.objects.get(attack=attack)
    assert mitigation.state == "active" and mitigation.last_error.startswith("degraded: lab-edge-1 commit_failed")
    assert converge_network().failed == {"router:lab-edge-1": "skipped until its retry time"}, "backoff"
    lab.emulator.clear_faults()
    retry_now("router:lab-edge-1", acting_user=OPERATOR)
    converge_network()
    assert lab.router_has(PREFIX) and in_bird(lab)
    assert ElementHealth.objects.get(element="router:lab-edge-1").state == "ok"
    assert Mitigation.objects.get(attack=attack).last_error == ""


def test_an_unreachable_router_never_flaps_the_speaker_nor_holds_back_the_healthy_one(
    lab: Lab, broken_router: Router,
) -> None:
    announced, withdrawn = bird_updates(lab)
    attack = signal()
    plan_attacks()
    for _ in range(4):  # reconcile cycles while the fault lasts, retries forced past the backoff
        report = converge_network()
        ElementHealth.objects.update(next_retry_at=None)
        assert "router:lab-edge-broken" in report.failed
    wait_for(lambda: in_bird(lab), timeout=10)
    assert bird_updates(lab) == (announced + 1, withdrawn), "one announcement, no withdrawal over the fault"
    assert lab.router_has(PREFIX), "the healthy router's committed configuration carries the diversion"
    mitigation = Mitigation.objects.get(attack=attack)
    assert mitigation.state == "active" and "lab-edge-broken unreachable since" in mitigation.last_error
    assert ElementHealth.objects.get(element="router:lab-edge-broken").state == "unreachable"
    assert not Deployment.objects.filter(element="router:lab-edge-broken", state="present").exists()


@pytest.mark.usefixtures("db_committed")
def test_a_router_down_during_the_withdrawal_keeps_no_orphan_when_it_returns(lab: Lab) -> None:
    mitigation = mitigate(lab)
    assert lab.router_has(PREFIX)
    lab.emulator.go_down()
    try:
        signal("end")
        lifecycle_tick()
        report = converge_network()
        assert "router:lab-edge-1" in report.failed
        wait_for(lambda: not in_bird(lab), timeout=20, what="the speaker withdrew while the router is down")
        assert ElementHealth.objects.get(element="router:lab-edge-1").state == "unreachable"
        assert lab.router_has(PREFIX), "the router could not be reached: it still carries the diversion"
        assert converge_network().failed == {"router:lab-edge-1": "skipped until its retry time"}, "backoff"
    finally:
        lab.emulator.go_down(False)
    health = ElementHealth.objects.get(element="router:lab-edge-1")
    assert health.next_retry_at is not None and health.next_retry_at > timezone.now(), "still in its backoff"
    converge_network()  # the next reconcile cycle: its management port answers again, so it is due now
    assert not lab.router_has(PREFIX), "back, it is converged: the rule no longer desired is gone"
    assert ElementHealth.objects.get(element="router:lab-edge-1").state == "ok"
    mitigation.refresh_from_db()
    assert mitigation.state == "ended"
    assert not Deployment.objects.filter(element="router:lab-edge-1", state="present").exists()


@pytest.mark.usefixtures("db_committed")
def test_a_router_that_refuses_the_login_keeps_its_backoff(lab: Lab) -> None:
    # Its port accepts connections: probing it says nothing new, and a login retried every cycle could lock the
    # account. Only a router whose port was closed is retried as soon as the port answers again.
    lab.emulator.refuse_login()
    signal()
    plan_attacks()
    assert "login refused" in converge_network().failed["router:lab-edge-1"]
    health = ElementHealth.objects.get(element="router:lab-edge-1")
    assert health.state == "failed" and health.next_retry_at is not None
    assert converge_network().failed == {"router:lab-edge-1": "skipped until its retry time"}
    assert ElementHealth.objects.get(element="router:lab-edge-1").failures == 1


def test_the_kill_switch_with_a_router_down_withdraws_from_every_reachable_element(
    lab: Lab, broken_router: Router,
) -> None:
    mitigate(lab)
    out = io.StringIO()
    with pytest.raises(CommandError, match="lab-edge-broken"):
        call_command("sluice_panic", "--reason", "test", stdout=out)
    wait_for(lambda: not in_bird(lab), timeout=20, what="the speaker withdrew")
    assert not lab.router_has(PREFIX), "the healthy router is clean, not rolled back to a configuration with rules"
    status = io.StringIO()
    call_command("sluice_panic", "--status", stdout=status)
    assert "Kill switch: ON" in status.getvalue()
    assert "router:lab-edge-1" not in status.getvalue() and "speaker:" not in status.getvalue()


@pytest.mark.usefixtures("db_committed")
def test_reconcile_repairs_drift_on_the_router_and_after_a_speaker_restart(lab: Lab) -> None:
    mitigate(lab)
    lab.emulator.reset("\n".join(line for line in lab.emulator.committed_set() if PREFIX not in line))
    assert not lab.router_has(PREFIX)
    lab.speaker.kill()
    wait_for(lambda: (lab.speaker.pid is not None and not in_bird(lab)) or in_bird(lab), timeout=20)
    report = converge_network()
    assert "router:lab-edge-1" in report.changed_elements
    assert lab.router_has(PREFIX)
    wait_for(lambda: in_bird(lab), timeout=30, what="route back in BIRD after the speaker restart")


@pytest.mark.usefixtures("db_committed")
def test_converging_twice_changes_nothing_the_second_time(lab: Lab) -> None:
    mitigate(lab)
    assert converge_network().changed_elements == ()


@pytest.mark.usefixtures("db_committed")
def test_manual_approval_announces_nothing_until_approved(lab: Lab, world: World) -> None:
    set_profile(world, "manual")
    attack = signal()
    plan_attacks()
    mitigation = Mitigation.objects.get(attack=attack)
    assert mitigation.state == "awaiting_approval"
    converge_network()
    assert not in_bird(lab) and not lab.router_has(PREFIX)
    approve_mitigation(mitigation.pk, acting_user=OPERATOR)
    converge_network()
    wait_for(lambda: in_bird(lab), timeout=20)
    assert Mitigation.objects.get(pk=mitigation.pk).approved_by == str(OPERATOR)
    assert AuditEvent.objects.filter(action="mitigation.approve", object_id=str(mitigation.pk)).exists()


@pytest.mark.usefixtures("db_committed")
def test_automatic_unless_rejected_applies_after_the_window(lab: Lab, world: World) -> None:
    set_profile(world, "auto_unless_rejected")
    attack = signal()
    plan_attacks()
    mitigation = Mitigation.objects.get(attack=attack)
    assert mitigation.state == "awaiting_approval" and mitigation.approval_deadline is not None
    assert lifecycle_tick()["approved"] == 0
    assert lifecycle_tick(now=timezone.now() + datetime.timedelta(minutes=6))["approved"] == 1
    converge_network()
    assert Mitigation.objects.get(pk=mitigation.pk).state == "active"


@pytest.mark.usefixtures("db_committed")
def test_a_rejected_mitigation_is_never_applied(lab: Lab, world: World) -> None:
    set_profile(world, "auto_unless_rejected")
    attack = signal()
    plan_attacks()
    mitigation = Mitigation.objects.get(attack=attack)
    reject_mitigation(mitigation.pk, acting_user=Actor("user", "admin", "acme"), reason="we handle it")
    lifecycle_tick(now=timezone.now() + datetime.timedelta(minutes=6))
    converge_network()
    assert Mitigation.objects.get(pk=mitigation.pk).state == "rejected"
    assert not in_bird(lab)


@pytest.mark.usefixtures("db_committed")
def test_hold_down_keeps_the_diversion_until_it_passes(lab: Lab, world: World) -> None:
    set_profile(world, "automatic", hold_down_minutes=5)
    mitigation = mitigate(lab)
    signal("end")
    lifecycle_tick()
    converge_network()
    assert in_bird(lab), "withdrawn before the hold-down passed"
    signal("start")  # the attack comes back during the hold-down: the hold-down is cancelled
    mitigation.refresh_from_db()
    assert mitigation.hold_down_until is None
    signal("end")
    lifecycle_tick(now=timezone.now() + datetime.timedelta(minutes=6))
    converge_network()
    wait_for(lambda: not in_bird(lab), timeout=20)
    assert Mitigation.objects.get(pk=mitigation.pk).state == "ended"


@pytest.mark.usefixtures("db_committed")
def test_an_unattributed_target_is_recorded_and_never_announced(lab: Lab) -> None:
    attack = signal(target="192.0.2.99")
    assert attack is not None and attack.unattributed
    assert not Mitigation.objects.filter(attack=attack).exists()
    plan_attacks()
    converge_network()
    assert lab.bird.unicast(4) == {}


@pytest.mark.usefixtures("db_committed")
def test_the_kill_switch_withdraws_everything_even_without_redis(lab: Lab, settings: Any) -> None:
    mitigate(lab)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: Redis is "down"
    out = io.StringIO()
    call_command("sluice_panic", "--reason", "test", stdout=out)
    assert "Kill switch on" in out.getvalue()
    wait_for(lambda: not in_bird(lab), timeout=20, what="everything withdrawn")
    assert not lab.router_has(PREFIX)
    assert ControlSwitch.current().panic
    assert AuditEvent.objects.filter(action="panic").exists()
    signal("start", target="203.0.113.78")
    plan_attacks()
    converge_network(require_locks=False)
    assert not in_bird(lab), "nothing is announced while the kill switch is on"


@pytest.mark.usefixtures("db_committed")
def test_a_speaker_restarted_while_the_switch_is_on_announces_nothing(lab: Lab) -> None:
    mitigate(lab)
    # The switch went on while this speaker could not be reached: its journal still lists the diversion.
    ControlSwitch.objects.update(panic=True)
    hold_speaker(BgpSpeaker.objects.get(name="lab-speaker"))
    restarts, log_size = lab.speaker.restarts, lab.speaker.log_path.stat().st_size

    def replay_decision() -> str:
        with lab.speaker.log_path.open() as log:
            log.seek(log_size)
            text = log.read()
        return next((line for line in text.splitlines() if "journal is not replayed" in line
                     or "replayed " in line), "")

    lab.speaker.kill()
    wait_for(lambda: lab.speaker.restarts > restarts and lab.speaker.pid is not None, timeout=20)
    lab.speaker.wait_ready()
    decision = wait_for(replay_decision, timeout=20, what="the restarted speaker's replay decision")
    assert "kill switch on: the journal is not replayed" in decision
    lab.bird.wait_established(timeout=30)
    assert not in_bird(lab), "the journal was replayed under the kill switch"
    ControlSwitch.objects.update(panic=False)
    hold_speaker(BgpSpeaker.objects.get(name="lab-speaker"))
    assert not (BgpSpeaker.objects.get(name="lab-speaker").workdir / "hold").exists()


@pytest.mark.usefixtures("db_committed")
def test_an_action_that_became_unsafe_is_retired_and_withdrawn_at_the_next_push(lab: Lab) -> None:
    mitigation = mitigate(lab)
    entry = NeverBlockPrefix.objects.create(prefix=PREFIX, reason="the customer's resolver lives here")
    try:
        converge_network()
        wait_for(lambda: not in_bird(lab), timeout=20, what="the now unsafe diversion withdrawn")
        assert not lab.router_has(PREFIX)
        action = mitigation.actions.get(kind="diversion")
        assert action.status == "retired" and action.refusal_code == "never_block"
        assert "at apply time" in action.refusal_reason
        assert AuditEvent.objects.filter(action="action.retired", object_id=str(action.pk)).exists()
    finally:
        entry.delete()


@pytest.mark.usefixtures("db_committed")
def test_a_suspended_tenants_routes_are_withdrawn(lab: Lab, world: World) -> None:
    mitigation = mitigate(lab)
    Tenant.objects.filter(pk=world.acme.pk).update(status="suspended")
    try:
        converge_network()
        wait_for(lambda: not in_bird(lab), timeout=20, what="the suspended tenant's diversion withdrawn")
        assert mitigation.actions.get(kind="diversion").refusal_code == "tenant_suspended"
    finally:
        Tenant.objects.filter(pk=world.acme.pk).update(status="active")


def test_a_router_that_hangs_mid_commit_is_bounded_by_the_push_timeout(
    lab: Lab, db_committed: None, settings: Any,
) -> None:
    settings.SLUICE_PUSH_TIMEOUT_S = 2
    before = lab.emulator.committed_set()
    lab.emulator.hang_on("commit-configuration")
    attack = signal()
    plan_attacks()
    report = converge_network()  # returns although the router never answers its commit
    assert "did not finish its push within 2 s" in report.failed["router:lab-edge-1"]
    assert ElementHealth.objects.get(element="router:lab-edge-1").state == "timeout"
    wait_for(lambda: in_bird(lab), timeout=10, what="the speaker's announcement, not held back")
    assert Mitigation.objects.get(attack=attack).last_error.startswith("degraded: lab-edge-1 timeout")
    assert lab.emulator.committed_set() == before, "the hung commit applied nothing"
    lab.emulator.clear_faults()
    wait_for(lambda: lab.emulator.lock_holder() is None, timeout=40, what="the abandoned push to let go")
    retry_now("router:lab-edge-1", acting_user=OPERATOR)
    converge_network()
    assert lab.router_has(PREFIX)
    assert ElementHealth.objects.get(element="router:lab-edge-1").state == "ok"
