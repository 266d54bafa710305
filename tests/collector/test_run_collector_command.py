"""`manage.py run_collector`: verified prefixes and tenant thresholds in, Attack rows out, over real loopback UDP."""

from __future__ import annotations

import re
import signal as os_signals
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import DatabaseError, connections

from collector.prefixes import carpet_multiplier
from collector.signals import AttackSignal, AttackVector, SignalPhase
from devices.models import Router
from mitigation.management.commands.run_collector import (
    SignalRecorder,
    collect,
    default_listen,
    load_prefixes,
    parse_listen,
)
from mitigation.models import Attack
from netsim.flowgen import Scenario, encoder_for
from netsim.polling import wait_for
from tenants.models import TenantPolicy, VerifiedPrefix
from tests.support.processes import ROOT, child_env
from tests.support.world import World

WAIT_LIMIT = 60.0
TARGET = "203.0.113.77"
SAMPLING = 1000




def in_own_connection(work: Callable[[], None]) -> None:
    """Run database work committed outside the test's transaction (the collector's rows are committed too)."""

    def run() -> None:
        try:
            work()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()


def test_listen_defaults_come_from_the_environment() -> None:
    assert default_listen({}) == {"sflow": ("127.0.0.1", 6343), "netflow": ("127.0.0.1", 2055),
                                  "ipfix": ("127.0.0.1", 4739)}  # fmt: skip
    assert default_listen({"SLUICE_NETFLOW_PORT": "9995"})["netflow"] == ("127.0.0.1", 9995)
    assert parse_listen(["ipfix=127.0.0.1:4739", "v6=[::1]:2055"]) == {"ipfix": ("127.0.0.1", 4739),
                                                                        "v6": ("::1", 2055)}  # fmt: skip
    for bad in ("ipfix", "ipfix=127.0.0.1", "=127.0.0.1:1", "x=127.0.0.1:70000"):
        with pytest.raises(ValueError):
            parse_listen([bad])


@pytest.mark.django_db
def test_prefixes_carry_tenant_thresholds_unless_the_prefix_has_its_own(world: World) -> None:
    VerifiedPrefix.objects.filter(prefix="198.51.100.0/24").update(threshold_pps=5_000)
    policy = TenantPolicy.objects.get(tenant=world.acme)
    prefixes = {p.cidr: p for p in load_prefixes()}
    assert {"203.0.113.0/24", "2001:db8:100::/48", "198.51.100.0/24", "2001:db8:200::/48"} <= set(prefixes)
    acme = prefixes["203.0.113.0/24"]
    assert (acme.tenant, acme.host_pps, acme.host_bps) == ("acme", policy.detection_threshold_pps,
                                                           policy.detection_threshold_bps)  # fmt: skip
    assert prefixes["198.51.100.0/24"].tenant == "globex"
    assert prefixes["198.51.100.0/24"].host_pps == 5_000


@pytest.mark.django_db
def test_a_prefix_wide_threshold_scales_with_the_prefix_and_baselines_are_on(world: World) -> None:
    prefixes = {p.cidr: p for p in load_prefixes()}
    v4, v6 = prefixes["203.0.113.0/24"], prefixes["2001:db8:100::/48"]
    assert v4.prefix_pps == v4.host_pps * 16, "a /24 carries sixteen hosts' worth before it is carpet bombing"
    assert v6.prefix_pps == v6.host_pps * 64, "capped for huge prefixes"
    assert v4.baseline_factor == 4.0 and v4.baseline_min_bps == v4.host_bps // 4
    assert carpet_multiplier("203.0.113.7/32") == 1.0 and carpet_multiplier("203.0.113.0/30") == 4.0


def test_database_errors_keep_signals_queued_in_order_and_bounded() -> None:
    recorded: list[AttackSignal] = []
    failing = [True]

    def record(signal: AttackSignal, *, acting_user: object) -> None:
        if failing[0]:
            raise DatabaseError("connection refused")
        recorded.append(signal)

    recorder = SignalRecorder(record=record, max_pending=2, refresh=lambda: None)
    signals = [AttackSignal(target=f"203.0.113.{i}", vectors=(AttackVector.UDP_FLOOD,), bps=1, pps=1,
                            phase=SignalPhase.START) for i in range(3)]  # fmt: skip
    for signal in signals:
        recorder(signal)
    assert recorder.pending == 2 and recorder.stats["dropped"] == 1
    failing[0] = False
    assert recorder.deliver() == 2
    assert recorded == signals[1:]


@pytest.fixture
def loopback_exporter(world: World) -> Iterator[None]:
    """A router whose flow exporter is 127.0.0.1, committed: the collector accepts only listed exporters."""
    name = f"exporter-{uuid.uuid4().hex[:8]}"
    in_own_connection(lambda: Router.objects.create(name=name, vendor="juniper", platform="junos",
                                                    mgmt_host="127.0.0.1", username="sluice",
                                                    exporter_addresses=["127.0.0.1"]))
    yield
    in_own_connection(lambda: Router.objects.filter(name=name).delete())


@pytest.fixture
def collector_thread(world: World, loopback_exporter: None) -> Iterator[tuple[dict[str, tuple[str, int]], SignalRecorder]]:
    stop = threading.Event()
    ready: dict[str, tuple[str, int]] = {}
    recorder = SignalRecorder()
    namespace = f"sluice:flow:test:{uuid.uuid4().hex}"
    thread = threading.Thread(
        target=collect,
        kwargs={"listen": {"ipfix": ("127.0.0.1", 0), "sflow": ("127.0.0.1", 0)}, "redis_url": _redis_url(),
                "stop_event": stop, "namespace": namespace, "recorder": recorder, "on_ready": ready.update},
        daemon=True,
    )  # fmt: skip
    thread.start()
    assert wait_for(lambda: len(ready) == 2, timeout=WAIT_LIMIT)
    try:
        yield ready, recorder
    finally:
        stop.set()
        thread.join(30)
        in_own_connection(lambda: Attack.objects.filter(target=f"{TARGET}/32").delete())


def _redis_url() -> str:
    from django.conf import settings

    return settings.REDIS_URL


@pytest.mark.django_db
def test_dns_amplification_at_20x_the_tenant_threshold_becomes_an_attack(
    world: World, collector_thread: tuple[dict[str, tuple[str, int]], SignalRecorder]
) -> None:
    addresses, recorder = collector_thread
    threshold_pps = TenantPolicy.objects.get(tenant=world.acme).detection_threshold_pps
    records_per_second = 20 * threshold_pps // SAMPLING
    scenario = Scenario("dns_amplification", target=TARGET, attack_start=0, attack_end=1e9, attack_share=1.0)
    packets = encoder_for("ipfix", sampling=SAMPLING).encode(scenario.records(0.5, records_per_second // 10))

    def attack_recorded() -> bool:
        # A tenth of a second of attack per poll: the collector sees 20x the threshold per second.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for packet in packets:
                sender.sendto(packet, addresses["ipfix"])
        return Attack.objects.filter(target=f"{TARGET}/32", vectors__contains=["dns_amplification"]).exists()

    assert wait_for(attack_recorded, timeout=WAIT_LIMIT), f"no attack recorded; recorder {dict(recorder.stats)}"
    attack = Attack.objects.get(target=f"{TARGET}/32")
    assert attack.tenant_id == world.acme.id
    # The row is visible as soon as record_signal commits, a moment before the recorder counts it.
    assert wait_for(lambda: recorder.stats["recorded"] >= 1, timeout=WAIT_LIMIT)
    assert recorder.pending == 0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.django_db
def test_two_collector_processes_share_one_port_and_record_the_attack_once(world: World, tmp_path: Path,
                                                                          loopback_exporter: None) -> None:
    target = "203.0.113.78"
    port = free_udp_port()
    log_path = tmp_path / "collector.log"
    command = [sys.executable, "manage.py", "run_collector", "--processes=2", f"--listen=ipfix=127.0.0.1:{port}",
               f"--namespace=sluice:flow:test:{uuid.uuid4().hex}"]  # fmt: skip
    threshold_pps = TenantPolicy.objects.get(tenant=world.acme).detection_threshold_pps
    scenario = Scenario("dns_amplification", target=target, attack_start=0, attack_end=1e9, attack_share=1.0)
    encoder = encoder_for("ipfix", sampling=SAMPLING)
    encoder.template_every = 1  # whichever process a sender lands on learns the templates from its first packet
    packets = encoder.encode(scenario.records(0.5, 20 * threshold_pps // SAMPLING // 10))
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(16)]  # 16 exporters' source ports
    with open(log_path, "wb") as log:
        supervisor = subprocess.Popen(command, cwd=ROOT, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: log_path.read_text().count("listening on") == 2, timeout=WAIT_LIMIT), log_path.read_text()

        def attack_recorded() -> bool:
            for index, packet in enumerate(packets):
                senders[index % len(senders)].sendto(packet, ("127.0.0.1", port))
            return Attack.objects.filter(target=f"{target}/32").exists()

        assert wait_for(attack_recorded, timeout=WAIT_LIMIT), log_path.read_text()
    finally:
        for sender in senders:
            sender.close()
        supervisor.send_signal(os_signals.SIGTERM)
        supervisor.wait(60)
        in_own_connection(lambda: Attack.objects.filter(target=f"{target}/32").delete())
    output = log_path.read_text()
    records = [int(m) for m in re.findall(r"^stopped: .*\brecords=(\d+)", output, flags=re.MULTILINE)]
    assert len(records) == 2 and all(r > 0 for r in records), output  # both processes took a share
    assert "stopped every collector process" in output
    assert supervisor.returncode == 0
