"""Only known exporters feed detection: the collector's real UDP socket, senders on several loopback addresses.

127.0.0.2 is the listed router; 127.0.0.3 is not listed; 127.0.0.4 is listed with a low maximum sampling rate;
127.0.0.5 is a listed address a forger uses for its flood (UDP sources are easy to spoof). In every test the
listed exporter's own attack must still be detected: the check that the hostile traffic was read (it was sent
first, on the same socket) and that the collector was not blinded by it.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.core.management import CommandError

from collector import run_collector
from collector.decode.netflow5 import MAX_SEQUENCE_STREAMS
from collector.decode.templated import MAX_DOMAINS_PER_EXPORTER, MAX_TEMPLATES_PER_EXPORTER
from collector.signals import AttackSignal, SignalPhase
from mitigation.management.commands.run_collector import load_exporters
from netsim.flowgen import Scenario, encoder_for
from tests.collector.helpers import customer_prefix
from tests.collector.test_listener import wait_for
from tests.devices.test_network_file import demo, run

LISTED, UNLISTED, LOW_CAP, FORGER = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"
EXPORTERS = {LISTED: 65535, LOW_CAP: 100, FORGER: 65535}
SAMPLING = 1000
SPOOFED_TEMPLATES = 100_000


@dataclass
class RunningCollector:
    address: tuple[str, int]
    signals: list[AttackSignal]
    stop: threading.Event
    thread: threading.Thread
    result: list[Counter[str]] = field(default_factory=list)

    def sender(self, source: str) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((source, 0))
        return sock

    def started(self, target: str) -> bool:
        return any(s.phase is SignalPhase.START and s.target == target for s in self.signals)

    def finish(self) -> Counter[str]:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()
        return self.result[0]


@pytest.fixture
def collector() -> Iterator[RunningCollector]:
    signals: list[AttackSignal] = []
    ready: dict[str, tuple[str, int]] = {}
    stop = threading.Event()
    result: list[Counter[str]] = []

    def run() -> None:
        result.append(run_collector(
            listen={"any": ("127.0.0.1", 0)}, prefixes=lambda: [customer_prefix(hold_seconds=1)],
            emit=signals.append, redis_url=None, stop_event=stop, on_ready=ready.update, merge_delay=0.1,
            exporters=lambda: EXPORTERS,
        ))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_for(lambda: bool(ready))
    running = RunningCollector(ready["any"], signals, stop, thread, result)
    yield running
    stop.set()
    thread.join(30)


def attack_packets(target: str, fmt: str = "ipfix", sampling: int = SAMPLING) -> list[bytes]:
    """A tenth of a second of a DNS amplification at 20x the host threshold (after sampling)."""
    scenario = Scenario("dns_amplification", target=target, attack_start=0, attack_end=1e9, attack_share=1.0)
    encoder = encoder_for(fmt, sampling=sampling)
    if hasattr(encoder, "template_every"):
        encoder.template_every = 1
    return encoder.encode(scenario.records(0.5, 20 * 10_000 // SAMPLING // 10))


def detect_listed_while(collector: RunningCollector, hostile: Callable[[], None]) -> bool:
    """Send the hostile traffic, then the listed exporter's attack, until the listed attack is detected."""
    listed_packets = attack_packets("203.0.113.20")
    with collector.sender(LISTED) as listed:
        def round_of_traffic() -> bool:
            hostile()
            for packet in listed_packets:
                listed.sendto(packet, collector.address)
            return collector.started("203.0.113.20/32")

        wait_for(round_of_traffic)
    return collector.started("203.0.113.20/32")


def test_an_unlisted_exporter_raises_no_attack(collector: RunningCollector) -> None:
    packets = attack_packets("203.0.113.10")
    sent = [0]
    with collector.sender(UNLISTED) as unlisted:
        def hostile() -> None:
            for packet in packets:
                unlisted.sendto(packet, collector.address)
            sent[0] += len(packets)

        assert detect_listed_while(collector, hostile), "the listed exporter's attack is detected"
    stats = collector.finish()
    assert not [s for s in collector.signals if s.target == "203.0.113.10/32"]
    assert stats["unlisted_exporter_datagrams"] >= sent[0] - len(packets) > 0


def test_records_claiming_more_than_the_exporters_maximum_sampling_are_dropped(collector: RunningCollector) -> None:
    packets = attack_packets("203.0.113.11", fmt="netflow5")
    with collector.sender(LOW_CAP) as low_cap:
        def hostile() -> None:
            for packet in packets:
                low_cap.sendto(packet, collector.address)

        assert detect_listed_while(collector, hostile)
    stats = collector.finish()
    assert not [s for s in collector.signals if s.target == "203.0.113.11/32"]
    assert stats["sampling_over_limit_records"] > 0


def spoofed_template_packets(count: int) -> list[bytes]:
    """NetFlow v9 template flowsets of one-field templates, spread over many observation domains."""
    per_packet = 170
    packets = []
    for first in range(0, count, per_packet):
        ids = range(first, min(first + per_packet, count))
        body = b"".join(struct.pack(">HHHH", 256 + i % 65000, 1, 8, 4) for i in ids)
        flowset = struct.pack(">HH", 0, 4 + len(body)) + body
        header = struct.pack(">HHIIII", 9, len(ids), 0, 0, first // per_packet, first // per_packet % 5000)
        packets.append(header + flowset)
    return packets


def spoofed_v5_packets(count: int) -> list[bytes]:
    """NetFlow v5 datagrams (outside every monitored prefix) claiming `count` different engine type/id pairs."""
    template = encoder_for("netflow5").encode(
        Scenario("dns_amplification", target="198.18.0.1", attack_start=0, attack_end=1e9, attack_share=1.0)
        .records(0.5, 1))[0]
    return [template[:20] + struct.pack(">BB", i >> 8 & 0xFF, i & 0xFF) + template[22:] for i in range(count)]


def test_a_flood_of_spoofed_templates_keeps_tables_bounded_and_the_listed_exporter_detected(
    collector: RunningCollector,
) -> None:
    flood = spoofed_template_packets(SPOOFED_TEMPLATES) + spoofed_v5_packets(3 * MAX_SEQUENCE_STREAMS)
    sent = [False]
    with collector.sender(FORGER) as forger:
        def hostile() -> None:
            if not sent[0]:
                for packet in flood:
                    forger.sendto(packet, collector.address)
                sent[0] = True

        assert detect_listed_while(collector, hostile), "the flood does not blind the collector"
    stats = collector.finish()
    assert stats["templates_evicted"] >= SPOOFED_TEMPLATES // 2
    assert stats["table_templates"] <= 2 * MAX_TEMPLATES_PER_EXPORTER
    assert stats["table_domains"] <= 2 * MAX_DOMAINS_PER_EXPORTER
    assert stats["table_v5_sequence_streams"] <= MAX_SEQUENCE_STREAMS
    assert stats["sequence_streams_evicted"] > 0


@pytest.mark.django_db
def test_the_network_file_lists_exporters_and_the_command_reads_them(world: object, tmp_path: Path) -> None:
    data = demo()
    data["routers"][0]["exporter_addresses"] = [LISTED, "2001:db8::7"]
    data["routers"][0]["max_sampling_rate"] = 4096
    run(tmp_path, data)
    assert load_exporters() == {LISTED: 4096, "2001:db8::7": 4096}
    data["routers"][0]["exporter_addresses"] = ["not-an-address"]
    with pytest.raises(CommandError, match=r"exporter_addresses"):
        run(tmp_path, data)
    assert load_exporters() == {LISTED: 4096, "2001:db8::7": 4096}
