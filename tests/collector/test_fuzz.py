"""Malformed input never crashes the collector: random bytes, truncations and bit flips of valid packets."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from collector import FlowCollector, MemoryStore, MonitoredPrefix
from collector.decode import PacketDecoder
from netsim.flowgen import FlowRecord, encoder_for

RECORDS = [
    FlowRecord(f"198.51.100.{i}", f"203.0.113.{i}" if i % 3 else f"2001:db8:5::{i:x}", 6, i, 80, 2, False, 100, 1)
    for i in range(1, 60)
]
RECORDS = [r if ":" not in r.dst else FlowRecord("2001:db8::1", r.dst, 17, 53, 9, 0, False, 500, 1) for r in RECORDS]
VALID = [p for fmt in ("sflow", "netflow5", "netflow9", "ipfix") for p in encoder_for(fmt, sampling=8).encode(RECORDS)]
HEADERS = [b"\0\0\0\x05", b"\0\x05", b"\0\x09", b"\0\x0a"]
FUZZ = settings(max_examples=150, deadline=None, derandomize=True)


def mutate(seed: int, kind: int) -> bytes:
    rng = random.Random(seed)
    packet = bytearray(rng.choice(VALID))
    if kind == 0:
        return bytes(packet[: rng.randrange(len(packet))])
    if kind == 1:
        for _ in range(rng.randrange(1, 12)):
            position = rng.randrange(len(packet))
            packet[position] ^= 1 << rng.randrange(8)
        return bytes(packet)
    if kind == 2:
        return rng.choice(HEADERS) + rng.randbytes(rng.randrange(0, 1500))
    position = rng.randrange(len(packet))
    packet[position : position + 4] = rng.choice([b"\xff\xff\xff\xff", b"\0\0\0\0", b"\x7f\xff\xff\xff"])
    return bytes(packet)


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(data: bytes) -> None:
    PacketDecoder().decode(data)


@FUZZ
@given(st.integers(0, 2**32), st.integers(0, 3))
def test_mutated_valid_packets(seed: int, kind: int) -> None:
    decoder = PacketDecoder()
    decoder.decode(random.Random(seed).choice(VALID))
    flows = decoder.decode(mutate(seed, kind))
    assert flows.size <= 10_000


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 2**32), st.integers(0, 4)), min_size=1, max_size=40))
def test_mixed_batches_keep_good_packets(choices: list[tuple[int, int]]) -> None:
    packets = [random.Random(seed).choice(VALID) if kind == 4 else mutate(seed, kind) for seed, kind in choices]
    good = [p for (seed, kind), p in zip(choices, packets, strict=True) if kind == 4]
    lengths = [len(p) for p in packets]
    offsets = np.concatenate([[0], np.cumsum(lengths[:-1])]).astype(np.int64)
    decoder = PacketDecoder()
    for packet in VALID:
        decoder.decode(packet)
    flows = decoder.decode_batch(b"".join(packets), offsets, lengths, ["127.0.0.1"] * len(packets))
    alone = PacketDecoder()
    for packet in VALID:
        alone.decode(packet)
    expected_at_least = sum(alone.decode(p).size for p in good)
    assert flows.size >= expected_at_least


def test_collector_survives_a_storm_of_garbage() -> None:
    rng = random.Random(4)
    collector = FlowCollector(
        store=MemoryStore(), emit=lambda s: None, prefixes=lambda: [MonitoredPrefix("203.0.113.0/24", host_pps=1)],
        clock=lambda: 5000.0,
    )
    garbage = [mutate(rng.randrange(2**32), rng.randrange(4)) for _ in range(3000)]
    for start in range(0, len(garbage), 100):
        collector.ingest_packets(garbage[start : start + 100], now=5000.0)
    collector.tick(5000.0)
    assert collector.stats["datagrams"] == 3000
    assert collector.stats["malformed"] > 0
