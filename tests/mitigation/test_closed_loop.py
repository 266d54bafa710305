"""The closed loop end to end on the emulated data plane, with the real collector, planner, ExaBGP speaker, BIRD
and the Junos emulator read through PyEZ.

Traffic enters the lab's edge router, which filters it with the FlowSpec routes its BIRD receiver holds and diverts
what Sluice diverts; the flows it exports after the filters go to the collector, whose signals go to Sluice; the
router's filter counters are read as a real router's would be, and the scrubbing center reports what reaches it.
Each test steps the control plane as the reconcile loop and the closed-loop job do (`cycle`). The collector writes
its aggregates to Redis under a namespace of this module's own, where the closed loop reads the flow records'
evidence of what the router dropped.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from core.actors import Actor
from core.models import AuditEvent
from core.redis import redis_client
from devices.models import Router
from mitigation.models import Mitigation, RuleCounterSample, Verdict
from mitigation.services.lifecycle import lifecycle_tick
from mitigation.services.network import converge_network
from mitigation.services.planning import plan_attacks
from mitigation.services.verdicts import closed_loop_tick, read_rule_counters
from netsim.junos import JunosEmulator
from netsim.polling import wait_for
from tenants.services import ProfileInput, update_service_profile
from tests.support.closed_loop import ClosedLoopLab, closed_loop_lab
from tests.support.lab import refresh_telemetry, running_lab
from tests.support.processes import free_port
from tests.support.world import World

GBPS = 1_000_000_000
THRESHOLD_BPS, THRESHOLD_PPS = 100_000_000, 20_000
FAST = override_settings(SLUICE_VERDICT_SETTLE_SECONDS=2, SLUICE_ESCALATE_CONFIRM_SECONDS=2,
                         SLUICE_COUNTER_POLL_SECONDS=1)


@pytest.fixture(scope="module")
def loop(world: World, tmp_path_factory: pytest.TempPathFactory, django_db_blocker: Any,
         monkeypatch_module: pytest.MonkeyPatch) -> Iterator[ClosedLoopLab]:
    # This test is the scheduler: jobs the services send after commit would only pile up in the broker.
    monkeypatch_module.setattr("mitigation.jobs.enqueue", lambda name: None)
    base = tmp_path_factory.mktemp("closed-loop")
    namespace = f"test:flow:{uuid.uuid4().hex}"
    # The lab's lifetime is nested inside database access and the namespace the collector writes to.
    with django_db_blocker.unblock(), override_settings(SLUICE_FLOW_NAMESPACE=namespace):  # noqa: SIM117
        with running_lab(base, bird_address="127.0.32.1", speaker_address="127.0.32.254") as lab:
            actor = Actor("system", "tests")
            update_service_profile(world.acme, ProfileInput(latency_threshold_ms=40, application_profile="web",
                                   hold_down_minutes=0, detection_threshold_bps=THRESHOLD_BPS,
                                   detection_threshold_pps=THRESHOLD_PPS), acting_user=actor)
            update_service_profile(world.globex, ProfileInput(latency_threshold_ms=40, application_profile="gaming",
                                   hold_down_minutes=0, detection_threshold_bps=THRESHOLD_BPS,
                                   detection_threshold_pps=THRESHOLD_PPS), acting_user=actor)
            with closed_loop_lab(lab) as running:
                yield running
    keys = list(redis_client().scan_iter(f"{namespace}:*"))
    if keys:
        redis_client().delete(*keys)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def cycle(loop: ClosedLoopLab) -> None:
    """One turn of the control plane: signals, planning, convergence, the appliances' reports, the closed loop
    (counters and verdicts), the lifecycle's timers, and convergence of what they changed."""
    loop.record_signals()
    refresh_telemetry()
    plan_attacks(full=False)
    converge_network()
    loop.report_centers()
    closed_loop_tick()
    lifecycle_tick()
    plan_attacks(full=False)
    converge_network()


def until(loop: ClosedLoopLab, predicate: Any, what: str, timeout: float = 60) -> Any:
    def step() -> Any:
        cycle(loop)
        return predicate()

    try:
        return wait_for(step, timeout=timeout, what=what, interval=0.3)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{story()}") from error


def story() -> str:
    """What the mitigations went through, for a failure's message."""
    lines = []
    for mitigation in Mitigation.objects.order_by("pk"):
        lines.append(f"mitigation {mitigation.pk} {mitigation.attack.target} {mitigation.state} {mitigation.level} "
                     f"override={mitigation.override_level} vectors={mitigation.attack.vectors}")
        lines += [f"  audit {a.action}: {a.reason}" for a in AuditEvent.objects.filter(
            object_id=str(mitigation.pk)).order_by("pk")]
        lines += [f"  action {a.status} {a.kind} {a.spec.get('source_ports')} {a.spec.get('source')}"
                  for a in mitigation.actions.all()]
        lines += [f"  verdict {v.outcome}: {v.summary}" for v in mitigation.verdicts.all()]
    return "\n".join(lines)


def mitigation_of(target: str) -> Mitigation | None:
    return Mitigation.objects.filter(attack__target=target).order_by("-pk").first()


def flows_to(loop: ClosedLoopLab, host: str) -> list[Any]:
    bird = loop.plane.routers["lab-edge-1"].bird
    assert bird is not None
    return [flow for flow in bird.flows(4).values() if flow.destination in {host, f"{host}/32"}]


@FAST
def test_a_discard_is_judged_effective_from_counters_and_held_while_they_rise(
    loop: ClosedLoopLab, django_db_blocker: Any
) -> None:
    target = "203.0.113.10"
    with django_db_blocker.unblock():
        loop.add("dns-amp", target, bps=GBPS, source_port=53)
        mitigation = until(loop, lambda: (m := mitigation_of(f"{target}/32")) and m.state == "active" and m,
                           "FlowSpec mitigation active")
        assert mitigation.level == "flowspec", mitigation.reason
        assert flows_to(loop, target), "the discard is in BIRD"
        until(loop, lambda: Mitigation.objects.get(pk=mitigation.pk).verdict == "effective", "verdict effective")
        verdict = Verdict.objects.filter(mitigation=mitigation, outcome="effective").last()
        assert verdict is not None and verdict.dropped_bps > 0.8 * GBPS, verdict
        assert "FlowSpec dropped" in verdict.summary
        # The discard hides the attack from the flows: the collector ends it, and the hold-down (0 here) passes.
        # The counters still rise, so the mitigation stays, and says why.
        until(loop, lambda: AuditEvent.objects.filter(action="mitigation.hold_extended",
                                                      object_id=str(mitigation.pk)).exists(),
              "hold extended on the counters' evidence")
        for _ in range(3):
            cycle(loop)
        assert Mitigation.objects.get(pk=mitigation.pk).state == "active"
        assert flows_to(loop, target), "the rule stays while it drops the attack"
        # The attack stops: the counters stop rising, and the mitigation is withdrawn everywhere.
        loop.plane.remove_stream("dns-amp")
        until(loop, lambda: Mitigation.objects.get(pk=mitigation.pk).state == "ended", "withdrawn once it stopped")
        assert not flows_to(loop, target)


@FAST
# Refinement comes from the detectors naming the new vector; escalation waits longer here so that a slow machine
# cannot make the refined rule race a diversion (both would mitigate; this test is about the first).
@override_settings(SLUICE_ESCALATE_CONFIRM_SECONDS=30)
def test_an_attack_that_changes_its_source_port_is_judged_partial_and_the_rule_refined(
    loop: ClosedLoopLab, django_db_blocker: Any
) -> None:
    target = "203.0.113.20"
    with django_db_blocker.unblock():
        loop.add("dns-amp-2", target, bps=GBPS, source_port=53)
        mitigation = until(loop, lambda: (m := mitigation_of(f"{target}/32")) and m.state == "active"
                           and m.verdict == "effective" and m, "effective against the DNS reflection")
        loop.add("ntp-amp-2", target, bps=GBPS, source_port=123)
        until(loop, lambda: Verdict.objects.filter(mitigation=mitigation, outcome="partial").exists(),
              "partial while the NTP part still reaches the target")
        partial = Verdict.objects.filter(mitigation=mitigation, outcome="partial").first()
        assert partial is not None and partial.dropped_bps > 0 and f"still reaches {target}" in partial.summary
        until(loop, lambda: any(f.ranges("sport") == ((123, 123),) for f in flows_to(loop, target)),
              "the rule refined to the new source port")
        until(loop, lambda: Mitigation.objects.get(pk=mitigation.pk).verdict == "effective", "effective again")
        loop.plane.remove_stream("dns-amp-2")
        loop.plane.remove_stream("ntp-amp-2")
        until(loop, lambda: Mitigation.objects.get(pk=mitigation.pk).state == "ended", "withdrawn")


@FAST
def test_an_attack_edge_filtering_cannot_hold_is_escalated_to_diversion_and_the_center_confirms_it(
    loop: ClosedLoopLab, django_db_blocker: Any
) -> None:
    target = "203.0.113.30"
    with django_db_blocker.unblock():
        # A UDP flood on a web shop: the edge drops UDP to every port but QUIC's (443). This one floods 443 itself,
        # so the rule goes in, matches nothing, and the flood still reaches the target.
        loop.add("quic-flood", target, bps=3 * GBPS, destination_port=443, packet_size=1200)
        loop.add("shoppers", target, bps=20_000_000, protocol=6, destination_port=443, packet_size=600,
                 attack=False, source="192.0.2.201")
        mitigation = until(loop, lambda: (m := mitigation_of(f"{target}/32")) and m.state == "active" and m,
                           "mitigation active")
        assert mitigation.level == "flowspec", mitigation.reason
        until(loop, lambda: Verdict.objects.filter(mitigation=mitigation, outcome="ineffective").exists(),
              "judged ineffective")
        until(loop, lambda: (m := Mitigation.objects.get(pk=mitigation.pk)).level == "diversion"
              and m.state == "active", "escalated to diversion")
        audit = AuditEvent.objects.get(action="mitigation.escalate_by_evidence", object_id=str(mitigation.pk))
        assert "escalated from flowspec to diversion" in audit.reason and f"still reaches {target}" in audit.reason
        until(loop, lambda: Mitigation.objects.get(pk=mitigation.pk).center_samples.filter(dropped_bps__gt=0).exists(),
              "the center reports scrubbing the diverted prefix")
        until(loop, lambda: Mitigation.objects.get(pk=mitigation.pk).verdict == "effective", "effective at the center")
        verdict = Verdict.objects.filter(mitigation=mitigation, outcome="effective").last()
        assert verdict is not None and verdict.scrubbed_bps > 2 * GBPS
        assert "scrubbing center dropped" in verdict.summary
        # Effective now: no step back down while the attack lasts, however quiet the target looks.
        for _ in range(3):
            cycle(loop)
        assert Mitigation.objects.get(pk=mitigation.pk).level == "diversion"
        loop.plane.remove_stream("quic-flood")
        loop.plane.remove_stream("shoppers")
        until(loop, lambda: Mitigation.objects.get(pk=mitigation.pk).state == "ended", "withdrawn")


def flow_updates(loop: ClosedLoopLab) -> tuple[int, int]:
    """BIRD's count of FlowSpec UPDATEs received from the speaker: (announcements, withdrawals)."""
    bird = loop.plane.routers["lab-edge-1"].bird
    assert bird is not None
    text = bird.cli(f"show protocols all {bird.protocol_name(bird.peers[0])}")
    channel = text.split("Channel flow4", 1)[1].split("Channel ", 1)[0]
    updates = re.search(r"Import updates:\s+(\d+)", channel)
    withdraws = re.search(r"Import withdraws:\s+(\d+)", channel)
    assert updates and withdraws, channel
    return int(updates.group(1)), int(withdraws.group(1))


@FAST
def test_a_router_that_cannot_be_read_leaves_a_gap_and_moves_nothing(
    loop: ClosedLoopLab, django_db_blocker: Any
) -> None:
    """A second edge router whose management address refuses connections: its counters are a gap, the healthy
    router's counters still judge the mitigation, and BIRD sees the rule announced once, never withdrawn, for as
    long as the fault lasts."""
    target = "203.0.113.40"
    with django_db_blocker.unblock():
        broken = Router.objects.create(name="lab-edge-dead", vendor="juniper", platform="junos", role="edge",
                                       mgmt_host="127.0.0.1", mgmt_port=free_port(), username="sluice",
                                       password="lab-secret")
        try:
            before = flow_updates(loop)
            loop.add("dns-amp-4", target, bps=GBPS, source_port=53)
            mitigation = until(loop, lambda: (m := mitigation_of(f"{target}/32")) and m.state == "active"
                               and m.verdict == "effective" and m, "effective with one router unreadable")
            for _ in range(5):
                cycle(loop)
            assert not RuleCounterSample.objects.filter(element="router:lab-edge-dead").exists(), "a gap, not a zero"
            assert RuleCounterSample.objects.filter(action__mitigation=mitigation,
                                                    element="router:lab-edge-1").exists()
            announced, withdrawn = (now - was for now, was in zip(flow_updates(loop), before, strict=True))
            assert (announced, withdrawn) == (1, 0), story()
            assert Mitigation.objects.get(pk=mitigation.pk).state == "active"
        finally:
            loop.plane.remove_stream("dns-amp-4")
            broken.delete()
        until(loop, lambda: Mitigation.objects.get(pk=mitigation.pk).state == "ended", "withdrawn")


@FAST
def test_a_router_that_hangs_on_the_counter_read_holds_up_no_other(
    loop: ClosedLoopLab, django_db_blocker: Any
) -> None:
    """The read returns while the hanging router still hangs: its series gets a gap, the healthy one a sample."""
    target = "203.0.113.50"
    with django_db_blocker.unblock():
        loop.add("dns-amp-5", target, bps=GBPS, source_port=53)
        mitigation = until(loop, lambda: (m := mitigation_of(f"{target}/32")) and m.state == "active" and m,
                           "mitigation active")
        with JunosEmulator(hostname="lab-edge-hung", username="sluice", password="lab-secret") as hung:
            hung.hang_on("get-firewall-filter-information")
            router = Router.objects.create(name="lab-edge-hung", vendor="juniper", platform="junos", role="edge",
                                           mgmt_host="127.0.0.1", mgmt_port=hung.port, username="sluice",
                                           password="lab-secret")
            try:
                before = RuleCounterSample.objects.filter(element="router:lab-edge-1").count()
                unread = read_rule_counters()
                assert hung.state.faults.hang_rpcs, "returned while the router still hangs"
                assert "router:lab-edge-hung" in unread, unread  # its driver's timeout, or the read's own
                assert RuleCounterSample.objects.filter(element="router:lab-edge-1").count() > before
                assert not RuleCounterSample.objects.filter(element="router:lab-edge-hung").exists()
            finally:
                hung.hang_on()
                router.delete()
        loop.plane.remove_stream("dns-amp-5")
        until(loop, lambda: Mitigation.objects.get(pk=mitigation.pk).state == "ended", "withdrawn")


@FAST
def test_flow_records_alone_keep_a_discard_in_place_while_the_router_drops_the_attack(
    loop: ClosedLoopLab, django_db_blocker: Any
) -> None:
    """The router's filter counters cannot be read (the counter RPC hangs), but its flow export marks what the
    discard drops (forwardingStatus): the collector sees the attack end behind the filter, the flow records show
    the target's traffic still dropped, and they alone keep the mitigation from being withdrawn until the attack
    stops."""
    target = "203.0.113.60"
    emulator = loop.plane.routers["lab-edge-1"].emulator
    emulator.hang_on("get-firewall-filter-information")
    try:
        with django_db_blocker.unblock():
            loop.add("dns-amp-6", target, bps=GBPS, source_port=53)
            mitigation = until(loop, lambda: (m := mitigation_of(f"{target}/32")) and m.state == "active" and m,
                               "FlowSpec mitigation active")
            assert mitigation.level == "flowspec", mitigation.reason
            until(loop, lambda: AuditEvent.objects.filter(
                action="mitigation.hold_extended", object_id=str(mitigation.pk),
                reason__contains="the network's flow records show").exists(),
                "hold extended on the flow records' evidence")
            for _ in range(3):
                cycle(loop)
            assert Mitigation.objects.get(pk=mitigation.pk).state == "active", story()
            assert flows_to(loop, target), "the rule stays while the flows show it dropping the attack"
            assert not RuleCounterSample.objects.filter(action__mitigation=mitigation).exists(), "no counters read"
            verdict = Verdict.objects.filter(mitigation=mitigation).last()
            assert verdict is not None and verdict.evidence["network_dropped_bps"] > 0.5 * GBPS, verdict.evidence
            assert "flow records show" in verdict.summary and f"toward {target} dropped" in verdict.summary
            loop.plane.remove_stream("dns-amp-6")
            until(loop, lambda: Mitigation.objects.get(pk=mitigation.pk).state == "ended", "withdrawn once it stopped")
            assert not flows_to(loop, target)
    finally:
        emulator.hang_on()

