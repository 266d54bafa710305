"""Telemetry polls with the real PyEZ and NAPALM against the Junos emulator, center load reports, staleness."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.actors import Actor
from core.errors import ValidationProblem
from core.models import AuditEvent
from devices.models import Router, ScrubbingCenter, UpstreamPeer
from devices.services import poll_router_telemetry, record_center_load
from devices.tasks import poll_router_telemetry_task
from mitigation.snapshot import network_snapshot
from netsim.junos import JunosEmulator
from tests.support.emulators import emulator_fixture

pytestmark = pytest.mark.django_db
ACTOR = Actor("system", "tests")


emulator = emulator_fixture(hostname="edge-poll", username="sluice", password="poll-secret")


@pytest.fixture
def network(emulator: JunosEmulator) -> dict[str, object]:
    emulator.clear_faults()
    center = ScrubbingCenter.objects.create(slug="fra", name="Frankfurt", capacity_gbps=400, capacity_mpps=300)
    routers = {
        "pyez": Router.objects.create(name="edge-pyez", vendor="juniper", platform="junos", mgmt_host="127.0.0.1",
                                      mgmt_port=emulator.port, username="sluice", password="poll-secret"),
        "napalm": Router.objects.create(name="edge-napalm", vendor="other", platform="junos", mgmt_host="127.0.0.1",
                                        mgmt_port=emulator.port, username="sluice", password="poll-secret"),
    }
    peers = {}
    for kind, router in routers.items():
        peers[kind] = UpstreamPeer.objects.create(
            name=f"telia-{kind}", isp="Arelion", asn=1299, router=router, center=center,
            neighbor_address="198.51.100.1", interface="xe-0/0/0", capacity_gbps=10)
        peers[kind + "-missing"] = UpstreamPeer.objects.create(
            name=f"gone-{kind}", isp="Cogent", asn=174, router=router, center=center,
            neighbor_address="198.51.100.99", capacity_gbps=10)
    return {"center": center, "routers": routers, "peers": peers}


@pytest.mark.parametrize("kind", ["pyez", "napalm"])
def test_poll_updates_sessions_and_utilisation(emulator: JunosEmulator, network: dict, kind: str) -> None:
    router, peer = network["routers"][kind], network["peers"][kind]
    emulator.set_bgp_neighbor("198.51.100.1", remote_as=1299, state="Established")
    emulator.set_interface_counters("xe-0/0/0", rx_octets=1_000_000, tx_octets=500_000)
    t0 = timezone.now()
    result = poll_router_telemetry(router, now=t0)
    assert result["ok"] and result["up"] == 1
    peer.refresh_from_db()
    assert peer.session_state == "established" and peer.session_up
    assert peer.utilisation == 0.0 and peer.telemetry_updated_at == t0  # a first sample gives no rate yet
    assert UpstreamPeer.objects.get(pk=network["peers"][kind + "-missing"].pk).session_state == "down"

    # 10 s later: 5 GB received = 4 Gbit/s on a 10 Gbit/s link.
    emulator.set_interface_counters("xe-0/0/0", rx_octets=1_000_000 + 5_000_000_000, tx_octets=600_000)
    poll_router_telemetry(router, now=t0 + timedelta(seconds=10))
    peer.refresh_from_db()
    assert peer.utilisation == pytest.approx(0.4)
    router.refresh_from_db()
    assert router.last_seen_at == t0 + timedelta(seconds=10)

    emulator.set_bgp_neighbor("198.51.100.1", remote_as=1299, state="Active")
    emulator.set_interface_counters("xe-0/0/0", rx_octets=10, tx_octets=10)  # counters reset: no figure
    poll_router_telemetry(router, now=t0 + timedelta(seconds=20))
    peer.refresh_from_db()
    assert peer.session_state == ("active" if kind == "pyez" else "down")
    assert peer.utilisation == pytest.approx(0.4)


def test_refused_login_marks_unknown_without_raising(emulator: JunosEmulator, network: dict) -> None:
    emulator.set_bgp_neighbor("198.51.100.1", remote_as=1299, state="Established")
    router, peer = network["routers"]["pyez"], network["peers"]["pyez"]
    poll_router_telemetry(router)
    emulator.refuse_login()
    try:
        result = poll_router_telemetry(router)
    finally:
        emulator.refuse_login(False)
    assert not result["ok"] and result["error"] == "ConnectError"
    peer.refresh_from_db()
    assert peer.session_state == "unknown"


def test_wrong_password_marks_unknown(emulator: JunosEmulator, network: dict) -> None:
    router = network["routers"]["napalm"]
    router.password = "wrong"
    router.save()
    result = poll_router_telemetry(router)
    assert not result["ok"]
    assert set(UpstreamPeer.objects.filter(router=router).values_list("session_state", flat=True)) == {"unknown"}


def test_task_returns_a_small_dict(emulator: JunosEmulator, network: dict) -> None:
    emulator.set_bgp_neighbor("198.51.100.1", remote_as=1299, state="Established")
    result = poll_router_telemetry_task.apply(args=[network["routers"]["pyez"].pk]).get()
    assert result["ok"] and result["router"] == "edge-pyez"
    assert poll_router_telemetry_task.apply(args=[999_999]).get()["ok"] is False


def test_polled_data_goes_stale_after_its_interval(emulator: JunosEmulator, network: dict) -> None:
    emulator.set_bgp_neighbor("198.51.100.1", remote_as=1299, state="Established")
    t0 = timezone.now()
    poll_router_telemetry(network["routers"]["pyez"], now=t0)
    peer = network["peers"]["pyez"]
    state = {p.id: p for p in network_snapshot(t0 + timedelta(seconds=5)).peers}
    assert not state[peer.pk].stale and state[peer.pk].session_up
    state = {p.id: p for p in network_snapshot(t0 + timedelta(seconds=31)).peers}
    assert state[peer.pk].stale


def test_center_load_report_and_staleness(network: dict) -> None:
    center = network["center"]
    t0 = timezone.now()
    record_center_load(center, load_gbps=120.5, load_mpps=40, healthy=True, acting_user=ACTOR, now=t0)
    center.refresh_from_db()
    assert (center.load_gbps, center.load_mpps, center.load_updated_at) == (120.5, 40.0, t0)
    fresh = network_snapshot(t0 + timedelta(seconds=29)).centers[0]
    assert not fresh.stale and fresh.load_gbps == 120.5
    assert network_snapshot(t0 + timedelta(seconds=31)).centers[0].stale
    assert not AuditEvent.objects.filter(action="center.health", object_id=str(center.pk)).exists()
    record_center_load(center, load_gbps=1, load_mpps=1, healthy=False, acting_user=ACTOR)
    assert AuditEvent.objects.filter(action="center.health", object_id=str(center.pk)).count() == 1


@pytest.mark.parametrize(("field", "values"), [("load_gbps", {"load_gbps": -1}), ("load_mpps", {"load_mpps": "x"}),
                                               ("load_gbps", {"load_gbps": float("nan")}),
                                               ("healthy", {"healthy": "yes"})])
def test_bad_load_report_is_refused(network: dict, field: str, values: dict) -> None:
    arguments = {"load_gbps": 1.0, "load_mpps": 1.0, "healthy": True, **values}
    with pytest.raises(ValidationProblem) as refused:
        record_center_load(network["center"], acting_user=ACTOR, **arguments)
    assert refused.value.field == field
    network["center"].refresh_from_db()
    assert network["center"].load_updated_at is None
