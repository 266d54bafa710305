"""The UDP path with real sockets on loopback: datagrams in, signals out of `run_collector`."""

from __future__ import annotations

import socket
import threading
from collections import Counter

import pytest

from collector import run_collector
from collector.listener import UdpListener
from collector.signals import AttackSignal, AttackVector, SignalPhase
from netsim.flowgen import Scenario, encoder_for, generate, parse_target
from netsim.polling import wait_for
from tests.collector.helpers import customer_prefix

WAIT_LIMIT = 30.0  # only keeps a broken build from hanging; never what a test checks




def test_listener_reads_batches_and_asks_for_a_large_receive_buffer() -> None:
    listener = UdpListener({"any": ("127.0.0.1", 0)}, receive_buffer=8 * 1024 * 1024)
    try:
        address = listener.addresses()["any"]
        packets = encoder_for("netflow5").encode(Scenario("dns_amplification", attack_start=0).records(1.0, 300))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for packet in packets:
                sender.sendto(packet, address)
        received: list[int] = []
        wait_for(lambda: bool(received.extend(listener.read_batch(0.05).lengths)) or len(received) >= len(packets), timeout=WAIT_LIMIT)
        assert received == [len(p) for p in packets]
        assert listener.stats["receive_buffer_bytes"] >= 2 * 1024 * 1024
    finally:
        listener.close()


def test_ipv6_loopback_listener() -> None:
    listener = UdpListener({"v6": ("::1", 0)})
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"\0\x05junk", listener.addresses()["v6"])
        senders: list[str] = []
        wait_for(lambda: bool(senders.extend(listener.read_batch(0.05).exporters)) or bool(senders), timeout=WAIT_LIMIT)
        assert senders == ["::1"]
    finally:
        listener.close()


@pytest.mark.parametrize("fmt", ["sflow", "ipfix"])
def test_run_collector_emits_start_and_end_from_real_datagrams(fmt: str) -> None:
    signals: list[AttackSignal] = []
    ready: dict[str, tuple[str, int]] = {}
    stop = threading.Event()
    result: list[Counter[str]] = []
    prefix = customer_prefix(hold_seconds=1)

    def run() -> None:
        result.append(
            run_collector(
                listen={fmt: ("127.0.0.1", 0)}, prefixes=lambda: [prefix], emit=signals.append, redis_url=None,
                stop_event=stop, on_ready=ready.update, merge_delay=0.1,
            )
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_for(lambda: bool(ready), timeout=WAIT_LIMIT)
    host, port = ready[fmt]
    target = f"{host}:{port}"
    assert parse_target(target) == (host, port)
    scenario = Scenario("chargen_amplification", attack_start=0.0, attack_end=1.0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _, packets, _ in generate(scenario, fmt, rate=8000, duration=1.0, sampling=10, tick=0.1):
            for packet in packets:
                sender.sendto(packet, (host, port))
        wait_for(lambda: any(s.phase is SignalPhase.START for s in signals), timeout=WAIT_LIMIT)
        wait_for(lambda: any(s.phase is SignalPhase.END for s in signals), timeout=WAIT_LIMIT)
    stop.set()
    thread.join(WAIT_LIMIT)
    assert not thread.is_alive()
    start = signals[0]
    assert (start.phase, start.target, start.vectors) == (
        SignalPhase.START, "203.0.113.10/32", (AttackVector.CHARGEN_AMPLIFICATION,)
    )
    assert signals[-1].phase is SignalPhase.END
    assert result[0]["records"] > 0 and result[0]["malformed"] == 0


def test_generator_refuses_non_loopback_targets() -> None:
    for target in ("192.0.2.1:2055", "[2001:db8::1]:2055", "example.com:2055"):
        with pytest.raises(ValueError):
            parse_target(target)
    assert parse_target("[::1]:6343") == ("::1", 6343)
