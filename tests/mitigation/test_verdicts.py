"""The closed loop's judgement: verdicts from counters, center reports and the detectors' view; escalation by
evidence with hysteresis; no withdrawal while the rules still drop the attack; a returning attack remembers.

These tests write the evidence as rows (the reading of real routers is tested against the Junos emulator in
tests/devices/test_junos_counters.py and end to end in tests/mitigation/test_closed_loop.py), and what the flow
records say the network dropped as a real collector writes it into Redis (`network_drops`).
"""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.utils import timezone

from collector import RedisStore
from core.actors import CLOSED_LOOP
from core.models import AuditEvent
from core.redis import redis_client
from devices.drivers.base import FlowSpecRule
from devices.models import ScrubbingCenter
from mitigation.choices import MitigationLevelChoices as L
from mitigation.choices import MitigationStateChoices as S
from mitigation.choices import VerdictChoices as V
from mitigation.models import Action, Attack, CenterPrefixSample, Mitigation, RuleCounterSample, Verdict
from mitigation.routes import route_key, route_to_spec
from mitigation.services import verdicts
from mitigation.services.lifecycle import lifecycle_tick
from netsim.flowgen import FlowRecord, IpfixEncoder
from netsim.flowgen.encoders import DROPPED_BY_ACL
from tenants.models import TenantPolicy
from tests.collector.helpers import Harness, customer_prefix
from tests.support.world import World

GBPS = 1_000_000_000
NetworkDrops = Callable[..., None]


def _mitigation(world: World, target: str = "203.0.113.10/32", *, level: str = L.FLOWSPEC, age_s: float = 30,
                bps: int = 0, ended: bool = False, reported_before: int = 0) -> Mitigation:
    """A mitigation `age_s` old. `bps`: what a detector reported since it went in; `reported_before`: what one
    reported before it went in, and nothing since."""
    now = timezone.now()
    since = now - datetime.timedelta(seconds=age_s)
    attack = Attack.objects.create(tenant=world.acme, target=target, bps=bps or reported_before,
                                   vectors=["dns_amplification"], end_signalled_at=now if ended else None,
                                   last_signal_at=now if bps else since - datetime.timedelta(seconds=1))
    return Mitigation.objects.create(attack=attack, tenant=world.acme, state=S.ACTIVE, level=level,
                                     activated_at=since, level_since=since,
                                     hold_down_until=now + datetime.timedelta(minutes=5) if ended else None)


def _rule(mitigation: Mitigation) -> Action:
    rule = FlowSpecRule(destination=str(mitigation.attack.target), action="discard", protocols=((17, 17),),
                        source_ports=((53, 53),))
    return Action.objects.create(mitigation=mitigation, kind="flowspec", spec=route_to_spec(rule),
                                 route_key=route_key(rule), targets=["edge"])


def _counts(action: Action, element: str, *points: tuple[float, int]) -> None:
    """Cumulative dropped bytes at (seconds ago, bytes) points, as a discard rule's counters read them."""
    now = timezone.now()
    for ago, octets in points:
        RuleCounterSample.objects.create(action=action, element=element, at=now - datetime.timedelta(seconds=ago),
                                         packets=octets // 1000, bytes=octets, dropped_packets=octets // 1000,
                                         dropped_bytes=octets)


def _threshold(world: World, bps: int) -> None:
    TenantPolicy.objects.filter(tenant=world.acme).update(detection_threshold_bps=bps)


@pytest.fixture
def network_drops(settings: Any) -> Iterator[NetworkDrops]:
    """`network_drops(target, bps, ago=[...])`: an exporter reports `bps` (a multiple of 1.2 Mbps) toward `target`
    dropped by an ACL (IPFIX with forwardingStatus, 1,500-byte packets sampled 1:100) in each of the seconds `ago`
    seconds before the test began, through a real collector into this test's own namespace of the aggregates in
    Redis."""
    namespace = settings.SLUICE_FLOW_NAMESPACE = f"test:flow:{uuid.uuid4().hex}"
    harness = Harness([customer_prefix()], store=RedisStore(redis_client(), namespace))
    encoder = IpfixEncoder(sampling=100, forwarding_status=True)
    began = int(time.time())

    def export(target: str, bps: int, *, ago: list[int]) -> None:
        packets = bps // (8 * 1500 * 100)
        record = FlowRecord("198.51.100.7", target, 17, 53, 40000, bytes=1500 * packets, packets=packets)
        for seconds in ago:
            harness.collector.ingest_packets(encoder.encode([record], DROPPED_BY_ACL), now=began - seconds)
        harness.collector.flush()
        assert harness.collector.stats["records_dropped_by_network"] > 0 and not harness.signals

    yield export
    keys = list(redis_client().scan_iter(f"{namespace}:*"))
    if keys:
        redis_client().delete(*keys)


@pytest.mark.django_db
def test_a_discard_that_drops_the_attack_is_judged_effective_from_its_counters(world: World) -> None:
    _threshold(world, GBPS)
    mitigation = _mitigation(world, ended=True)
    action = _rule(mitigation)
    # Two routers each drop 2.5 Gbps: 2.5e9 / 8 bytes per second, read 2 s apart.
    for element in ("router:edge-fra-1", "router:edge-ams-1"):
        _counts(action, element, (2.0, 10 * GBPS), (0.0, 10 * GBPS + GBPS * 5 // 8))
    verdicts.judge_mitigations()
    mitigation.refresh_from_db()
    assert mitigation.verdict == V.EFFECTIVE
    assert "FlowSpec dropped 5.0 Gbps of 5.0 Gbps" in mitigation.verdict_summary
    verdict = Verdict.objects.get(mitigation=mitigation)
    assert verdict.dropped_bps == 5 * GBPS and verdict.attack_bps == 0


@pytest.mark.django_db
def test_what_still_reaches_the_target_makes_it_partial_or_ineffective(world: World) -> None:
    _threshold(world, GBPS)
    partial = _mitigation(world, "203.0.113.11/32", bps=2 * GBPS)
    _counts(_rule(partial), "router:edge-fra-1", (2.0, 0), (0.0, 2 * GBPS * 8 // 8))  # 8 Gbps dropped
    ineffective = _mitigation(world, "203.0.113.12/32", bps=3 * GBPS)
    _counts(_rule(ineffective), "router:edge-fra-1", (2.0, 0), (0.0, 1000))  # next to nothing
    verdicts.judge_mitigations()
    partial.refresh_from_db()
    ineffective.refresh_from_db()
    assert partial.verdict == V.PARTIAL
    assert "FlowSpec dropped 8.0 Gbps of 10.0 Gbps; 2.0 Gbps still reaches 203.0.113.11" in partial.verdict_summary
    assert ineffective.verdict == V.INEFFECTIVE


@pytest.mark.django_db
def test_what_the_flow_records_show_dropped_counts_as_dropped(world: World, network_drops: NetworkDrops) -> None:
    """No counters at all: the exporters' flows mark the target's traffic dropped while 2 Gbps still reach it
    (partial, not ineffective). Of the seconds in the window, two drop 12 Gbps toward it, one has flow records of
    the prefix but none dropped toward it (a zero), the others none at all (gaps, left out): 8 Gbps."""
    _threshold(world, GBPS)
    mitigation = _mitigation(world, bps=2 * GBPS)
    _rule(mitigation)
    network_drops("203.0.113.10", 12 * GBPS, ago=[1, 3])
    network_drops("203.0.113.99", 6 * GBPS, ago=[2])
    verdicts.judge_mitigations()
    mitigation.refresh_from_db()
    assert mitigation.verdict == V.PARTIAL, mitigation.verdict_summary
    assert mitigation.verdict_summary == ("The network's flow records show 8.0 Gbps toward 203.0.113.10 dropped; "
                                          "2.0 Gbps still reaches 203.0.113.10 (threshold 1.0 Gbps)")
    verdict = Verdict.objects.get(mitigation=mitigation)
    assert verdict.evidence["network_dropped_bps"] == 8 * GBPS and verdict.evidence["flows_read"] is True
    assert verdict.dropped_bps == 0 and not verdict.evidence["counters_read"]
    # Without the flows' word the same mitigation is ineffective.
    found = verdicts.gather([mitigation], now=timezone.now() + datetime.timedelta(minutes=1))[mitigation.pk]
    assert not found.flows_read and verdicts.outcome_of(found) == V.INEFFECTIVE


@pytest.mark.django_db
def test_flow_records_and_counters_see_the_same_drops_once(world: World, network_drops: NetworkDrops) -> None:
    _threshold(world, GBPS)
    mitigation = _mitigation(world, bps=2 * GBPS)
    _counts(_rule(mitigation), "router:edge-fra-1", (2.0, 0), (0.0, 2 * GBPS * 8 // 8))  # 8 Gbps dropped
    network_drops("203.0.113.10", 12 * GBPS, ago=[1, 2])
    verdicts.judge_mitigations()
    mitigation.refresh_from_db()
    assert mitigation.verdict == V.PARTIAL
    assert mitigation.verdict_summary.startswith(
        "FlowSpec dropped 8.0 Gbps of 14.0 Gbps; the network's flow records show 12.0 Gbps toward 203.0.113.10 "
        "dropped; 2.0 Gbps still reaches")


@pytest.mark.django_db
def test_no_withdrawal_while_the_flow_records_show_the_attack_dropped(
    world: World, network_drops: NetworkDrops, settings: Any
) -> None:
    """The router's counters cannot be read (none in the window, long past the settle time); its flows still
    say the target's traffic is being dropped, so the mitigation stays until they stop saying so."""
    _threshold(world, GBPS)
    mitigation = _mitigation(world, ended=True, age_s=60)
    _rule(mitigation)
    Mitigation.objects.filter(pk=mitigation.pk).update(hold_down_until=timezone.now() - datetime.timedelta(seconds=1))
    network_drops("203.0.113.10", 2_400_000_000, ago=[1, 2, 3])
    assert lifecycle_tick()["held"] == 1
    mitigation.refresh_from_db()
    assert mitigation.state == S.ACTIVE
    audit = AuditEvent.objects.get(action="mitigation.hold_extended", object_id=str(mitigation.pk))
    assert "the network's flow records show 2.4 Gbps toward 203.0.113.10 dropped" in audit.reason
    # The flow records stop: a gap, not a zero, and no evidence; the next hold-down's end withdraws.
    keys = list(redis_client().scan_iter(f"{settings.SLUICE_FLOW_NAMESPACE}:*"))
    redis_client().delete(*keys)
    Mitigation.objects.filter(pk=mitigation.pk).update(hold_down_until=timezone.now() - datetime.timedelta(seconds=1))
    lifecycle_tick()
    mitigation.refresh_from_db()
    assert mitigation.state == S.WITHDRAWING


@pytest.mark.django_db
def test_a_gap_stays_a_gap_and_a_reinstalled_rule_starts_a_new_run(world: World) -> None:
    _threshold(world, GBPS)
    mitigation = _mitigation(world, bps=2 * GBPS)
    action = _rule(mitigation)
    _counts(action, "router:edge-fra-1", (2.0, 5 * GBPS), (0.0, 1000))  # went down: reinstalled, no rate
    _counts(action, "router:edge-ams-1", (0.0, 5 * GBPS))  # one sample: no rate yet
    found = verdicts.gather([Mitigation.objects.select_related("attack").get(pk=mitigation.pk)],
                            now=timezone.now())[mitigation.pk]
    assert not found.counters_read and found.dropped_bps == 0
    assert verdicts.outcome_of(found) == V.INEFFECTIVE  # the detectors still see 2 Gbps over a 1 Gbps threshold


@pytest.mark.django_db
def test_a_figure_from_before_the_plan_is_no_evidence_against_it(world: World) -> None:
    # Found live in the demo: the collector reported 25.7 Gbps, then the discard hid the attack from it, so it
    # reported nothing more until its hold time ran out. The attack's figure was still 25.7 Gbps; judged by it,
    # the discard dropping all of it was "partial" and the closed loop escalated.
    _threshold(world, GBPS)
    TenantPolicy.objects.filter(tenant=world.acme).update(allowed_actions=["flowspec", "diversion"])
    mitigation = _mitigation(world, reported_before=25 * GBPS)
    _counts(_rule(mitigation), "router:edge-fra-1", (2.0, 0), (0.0, 5 * GBPS // 8 * 2))  # 5 Gbps dropped
    for _ in range(2):
        verdicts.judge_mitigations()
        Verdict.objects.filter(mitigation=mitigation).update(at=timezone.now() - datetime.timedelta(seconds=5))
    mitigation.refresh_from_db()
    assert mitigation.verdict == V.EFFECTIVE
    assert "FlowSpec dropped 5.0 Gbps" in mitigation.verdict_summary
    assert "not seen it reach 203.0.113.10 over its threshold of 1.0 Gbps since its FlowSpec plan went in" in (
        mitigation.verdict_summary)
    assert not mitigation.override_level


@pytest.mark.django_db
def test_nothing_is_judged_before_the_settle_time_or_without_evidence(world: World) -> None:
    young = _mitigation(world, "203.0.113.13/32", age_s=1, bps=5 * GBPS)
    blind = _mitigation(world, "203.0.113.14/32")  # no figures, no counters, no end
    verdicts.judge_mitigations()
    assert not Verdict.objects.filter(mitigation=young).exists()
    blind.refresh_from_db()
    assert blind.verdict == V.UNKNOWN


@pytest.mark.django_db
def test_an_ineffective_mitigation_escalates_one_step_once_the_evidence_held(world: World) -> None:
    _threshold(world, GBPS)
    TenantPolicy.objects.filter(tenant=world.acme).update(allowed_actions=["flowspec", "diversion"])
    mitigation = _mitigation(world, bps=3 * GBPS)
    _rule(mitigation)
    verdicts.judge_mitigations()
    mitigation.refresh_from_db()
    assert mitigation.verdict == V.INEFFECTIVE and not mitigation.override_level, "one verdict is not evidence yet"
    Verdict.objects.filter(mitigation=mitigation).update(at=timezone.now() - datetime.timedelta(seconds=5))
    verdicts.judge_mitigations()
    mitigation.refresh_from_db()
    assert mitigation.override_level == L.DIVERSION and mitigation.replan
    audit = AuditEvent.objects.get(action="mitigation.escalate_by_evidence", object_id=str(mitigation.pk))
    assert "escalated from flowspec to diversion" in audit.reason and "still reaches 203.0.113.10" in audit.reason
    # At diversion, the tenant allows nothing further: no second step, however long it stays ineffective.
    Mitigation.objects.filter(pk=mitigation.pk).update(level=L.DIVERSION)
    Verdict.objects.filter(mitigation=mitigation).update(at=timezone.now() - datetime.timedelta(seconds=5))
    verdicts.judge_mitigations()
    mitigation.refresh_from_db()
    assert mitigation.override_level == L.DIVERSION
    assert AuditEvent.objects.filter(action="mitigation.escalate_by_evidence").count() == 1


@pytest.mark.django_db
def test_an_effective_verdict_in_between_resets_the_evidence(world: World) -> None:
    _threshold(world, GBPS)
    TenantPolicy.objects.filter(tenant=world.acme).update(allowed_actions=["flowspec", "diversion"])
    mitigation = _mitigation(world, bps=3 * GBPS)
    now = timezone.now()
    for ago, outcome in ((8, V.INEFFECTIVE), (5, V.EFFECTIVE), (1, V.INEFFECTIVE)):
        Verdict.objects.create(mitigation=mitigation, at=now - datetime.timedelta(seconds=ago), outcome=outcome,
                               level=L.FLOWSPEC, attack_bps=0, dropped_bps=0, scrubbed_bps=0, threshold_bps=GBPS,
                               summary="")
    verdicts.judge_mitigations()
    mitigation.refresh_from_db()
    assert not mitigation.override_level


@pytest.mark.django_db
def test_the_center_reports_count_as_evidence(world: World) -> None:
    _threshold(world, GBPS)
    center = ScrubbingCenter.objects.create(slug="fra", name="Frankfurt", capacity_gbps=800, capacity_mpps=600,
                                            diversion_next_hop_v4="192.0.2.10")
    mitigation = _mitigation(world, level=L.DIVERSION, bps=200_000_000)
    Mitigation.objects.filter(pk=mitigation.pk).update(center=center)
    CenterPrefixSample.objects.create(center=center, mitigation=mitigation, prefix="203.0.113.0/24",
                                      received_bps=40 * GBPS, dropped_bps=38 * GBPS, clean_bps=2 * GBPS)
    verdicts.judge_mitigations()
    mitigation.refresh_from_db()
    assert mitigation.verdict == V.EFFECTIVE
    assert "The scrubbing center dropped 38.0 Gbps and returned 2.0 Gbps clean" in mitigation.verdict_summary


@pytest.mark.django_db
def test_a_redirect_into_the_center_is_judged_by_what_the_center_drops(world: World) -> None:
    # The detectors last reported before the redirect went in; the redirect's counters match without dropping.
    _threshold(world, GBPS)
    center = ScrubbingCenter.objects.create(slug="fra", name="Frankfurt", capacity_gbps=800, capacity_mpps=600,
                                            diversion_next_hop_v4="192.0.2.10")
    mitigation = _mitigation(world, level=L.DIVERSION, reported_before=60 * GBPS)
    Mitigation.objects.filter(pk=mitigation.pk).update(center=center)
    rule = FlowSpecRule(destination="203.0.113.10/32", action="redirect", redirect_target="65010:100",
                        protocols=((6, 6),))
    action = Action.objects.create(mitigation=mitigation, kind="flowspec", spec=route_to_spec(rule),
                                   route_key=route_key(rule), targets=["edge"])
    now = timezone.now()
    for ago, octets in ((2.0, 0), (0.0, 15 * GBPS)):  # 60 Gbps matched over 2 s, nothing dropped at the edge
        RuleCounterSample.objects.create(action=action, element="router:edge-fra-1", at=now - datetime.timedelta(
            seconds=ago), packets=octets // 1000, bytes=octets, dropped_packets=0, dropped_bytes=0)
    verdicts.judge_mitigations()
    mitigation.refresh_from_db()
    assert mitigation.verdict == V.UNKNOWN, "sent to the center, nothing known dropped yet"
    assert mitigation.verdict_summary.startswith("FlowSpec sent 60.0 Gbps to the scrubbing center")
    CenterPrefixSample.objects.create(center=center, mitigation=mitigation, prefix="203.0.113.10/32",
                                      received_bps=60 * GBPS, dropped_bps=59 * GBPS, clean_bps=GBPS)
    Verdict.objects.all().update(at=timezone.now() - datetime.timedelta(minutes=2))
    verdicts.judge_mitigations()
    mitigation.refresh_from_db()
    assert mitigation.verdict == V.EFFECTIVE
    assert "the scrubbing center dropped 59.0 Gbps and returned 1.0 Gbps clean" in mitigation.verdict_summary


@pytest.mark.django_db
def test_no_withdrawal_while_the_rules_still_drop_the_attack(world: World) -> None:
    _threshold(world, GBPS)
    mitigation = _mitigation(world, ended=True)
    Mitigation.objects.filter(pk=mitigation.pk).update(hold_down_until=timezone.now() - datetime.timedelta(seconds=1))
    action = _rule(mitigation)
    _counts(action, "router:edge-fra-1", (2.0, 0), (0.0, 2 * GBPS * 2 // 8))  # 2 Gbps still dropped
    moved = lifecycle_tick()
    mitigation.refresh_from_db()
    assert moved["held"] == 1 and mitigation.state == S.ACTIVE
    assert mitigation.hold_down_until > timezone.now()
    assert AuditEvent.objects.filter(action="mitigation.hold_extended", object_id=str(mitigation.pk)).exists()
    # The counters stop rising: the attack is over, and the next hold-down's end withdraws.
    RuleCounterSample.objects.all().delete()
    _counts(action, "router:edge-fra-1", (2.0, 10 * GBPS), (0.0, 10 * GBPS))
    Mitigation.objects.filter(pk=mitigation.pk).update(hold_down_until=timezone.now() - datetime.timedelta(seconds=1))
    lifecycle_tick()
    mitigation.refresh_from_db()
    assert mitigation.state == S.WITHDRAWING


@pytest.mark.django_db
def test_a_returning_attack_starts_from_the_level_that_proved_effective(world: World) -> None:
    old = _mitigation(world)
    Mitigation.objects.filter(pk=old.pk).update(state=S.ENDED, ended_at=timezone.now(), override_level=L.DIVERSION,
                                                override_by=str(CLOSED_LOOP), level=L.DIVERSION)
    Attack.objects.filter(pk=old.attack_id).update(status="ended")
    Verdict.objects.create(mitigation=old, outcome=V.EFFECTIVE, level=L.DIVERSION, attack_bps=0, dropped_bps=0,
                           scrubbed_bps=9 * GBPS, threshold_bps=GBPS, summary="the scrubbing center dropped 9.0 Gbps")
    attack = Attack.objects.create(tenant=world.acme, target="203.0.113.10/32", bps=5 * GBPS)
    new = Mitigation.objects.create(attack=attack, tenant=world.acme)
    why = verdicts.start_from_last_effective(new)
    new.refresh_from_db()
    assert new.override_level == L.DIVERSION
    assert f"proved effective in mitigation {old.pk}" in why
    # Another target remembers nothing.
    other = Mitigation.objects.create(attack=Attack.objects.create(tenant=world.acme, target="203.0.113.99/32"),
                                      tenant=world.acme)
    assert verdicts.start_from_last_effective(other) == "" and not other.override_level


@pytest.mark.django_db
def test_a_fresh_mitigation_is_not_withdrawn_before_its_counters_were_read(world: World) -> None:
    """A discard can hide the attack from the detectors within seconds: the end waits for the counters, and is
    judged by them, or by the detectors alone once the settle time passed without any."""
    _threshold(world, GBPS)
    young = _mitigation(world, "203.0.113.15/32", ended=True, age_s=3)
    old = _mitigation(world, "203.0.113.16/32", ended=True, age_s=60)
    for mitigation in (young, old):
        _rule(mitigation)
    Mitigation.objects.update(hold_down_until=timezone.now() - datetime.timedelta(seconds=1))
    lifecycle_tick()
    young.refresh_from_db()
    old.refresh_from_db()
    assert young.state == S.ACTIVE and old.state == S.WITHDRAWING
    audit = AuditEvent.objects.get(action="mitigation.hold_extended", object_id=str(young.pk))
    assert "counters or center reports have not been read" in audit.reason
    # A mitigation nothing will report on (a diversion to a center that sends no per-prefix reports) is not held.
    quiet = _mitigation(world, "203.0.113.17/32", level=L.DIVERSION, ended=True, age_s=3)
    Mitigation.objects.filter(pk=quiet.pk).update(hold_down_until=timezone.now() - datetime.timedelta(seconds=1))
    lifecycle_tick()
    quiet.refresh_from_db()
    assert quiet.state == S.WITHDRAWING


@pytest.mark.django_db
def test_a_long_hold_is_audited_once_not_at_every_cycle(world: World) -> None:
    _threshold(world, GBPS)
    mitigation = _mitigation(world, ended=True)
    action = _rule(mitigation)
    for round_ in range(3):
        RuleCounterSample.objects.all().delete()
        _counts(action, "router:edge-fra-1", (2.0, round_ * GBPS), (0.0, round_ * GBPS + GBPS // 2))
        Mitigation.objects.filter(pk=mitigation.pk).update(
            hold_down_until=timezone.now() - datetime.timedelta(seconds=1))
        assert lifecycle_tick()["held"] == 1
    assert AuditEvent.objects.filter(action="mitigation.hold_extended", object_id=str(mitigation.pk)).count() == 1
