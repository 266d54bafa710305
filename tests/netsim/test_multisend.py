"""The benchmarks' sendmmsg generator: every datagram arrives intact, in order, paced, and only on loopback."""

from __future__ import annotations

import socket

import pytest

from netsim.flowgen.multisend import MultiSender


def test_paced_sending_wraps_the_pool_and_counts_records() -> None:
    packets = [bytes([i]) * (10 + i) for i in range(5)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        sender = MultiSender(packets, [1, 2, 3, 4, 5], receiver.getsockname())
        try:
            sent = sender.paced(rate=300, seconds=0.2, batch=3)
        finally:
            sender.close()
        received = []
        receiver.settimeout(0.5)
        try:
            while True:
                received.append(receiver.recv(100))
        except TimeoutError:
            pass
    assert len(received) > len(packets)  # the pool wrapped around
    assert received == [packets[i % 5] for i in range(len(received))]
    assert sent == sum((i % 5) + 1 for i in range(len(received)))
    assert sent <= 60 + 5  # never ahead of the schedule (300 records/s for 0.2 s) by more than one datagram


def test_refuses_addresses_off_loopback_and_mismatched_counts() -> None:
    with pytest.raises(ValueError):
        MultiSender([b"x"], [1], ("192.0.2.1", 2055))
    with pytest.raises(ValueError):
        MultiSender([b"x", b"y"], [1], ("127.0.0.1", 2055))
