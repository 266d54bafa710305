"""A paced stream of export datagrams for a scenario, in memory or sent over UDP to a loopback collector."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from netsim.flowgen.encoders import encoder_for
from netsim.flowgen.scenarios import Scenario

TICK_SECONDS = 0.01


def parse_target(target: str) -> tuple[str, int]:
    """'127.0.0.1:2055' or '[::1]:2055' to (host, port), refusing anything but loopback (this is a lab tool)."""
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError as exc:
        raise ValueError(f"target must be a loopback IP literal, got {host!r}") from exc
    if not address.is_loopback:
        raise ValueError(f"refusing to send flows to non-loopback address {host}")
    return host, int(port)


@dataclass
class StreamStats:
    """What a stream produced: records, datagrams and bytes."""

    records: int = 0
    datagrams: int = 0
    bytes: int = 0


def generate(
    scenario: Scenario, fmt: str, rate: int, duration: float, sampling: int = 1, tick: float = TICK_SECONDS
) -> Iterator[tuple[float, list[bytes], int]]:
    """(time offset, datagrams, records) every `tick` seconds of the scenario at `rate` records per second."""
    rng = np.random.default_rng(scenario.seed)
    encoder = encoder_for(fmt, sampling=sampling)
    carry = 0.0
    steps = round(duration / tick)
    for step in range(steps):
        t = step * tick
        carry += rate * tick
        count = int(carry)
        carry -= count
        if count == 0:
            continue
        records = scenario.records(t, count, rng)
        if fmt == "netflow5":
            records = records[records["ipv6"] == 0]
        yield t, encoder.encode(records), int(records.size)


def send(
    scenario: Scenario, fmt: str, target: str, rate: int, duration: float, sampling: int = 1
) -> StreamStats:
    """Send the scenario to a loopback collector in real time (paced per 10 ms tick)."""
    host, port = parse_target(target)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    stats = StreamStats()
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        start = time.monotonic()
        for t, datagrams, records in generate(scenario, fmt, rate, duration, sampling):
            delay = start + t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for datagram in datagrams:
                sock.sendto(datagram, (host, port))
                stats.bytes += len(datagram)
            stats.datagrams += len(datagrams)
            stats.records += records
    return stats
