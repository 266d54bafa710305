"""Every format decodes generator output exactly, field for field, alone and in batches."""

from __future__ import annotations

import random

import numpy as np
import pytest

from collector.decode import PacketDecoder
from collector.records import flows_as_tuples
from netsim.flowgen import Scenario, encoder_for, expected_tuples, to_records
from tests.collector.helpers import mixed_records

FORMATS = ["sflow", "netflow5", "netflow9", "ipfix"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("sampling", [1, 1000])
def test_generated_records_decode_exactly(fmt: str, sampling: int) -> None:
    records = mixed_records(400)
    decoder = PacketDecoder()
    decoded = []
    for packet in encoder_for(fmt, sampling=sampling).encode(records):
        decoded += flows_as_tuples(decoder.decode(packet))
    assert sorted(decoded) == sorted(expected_tuples(records, sampling, fmt))
    assert decoder.stats["malformed"] == 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_batch_decoding_equals_packet_by_packet(fmt: str) -> None:
    packets = encoder_for(fmt, sampling=10).encode(mixed_records(300, seed=3))
    one_by_one = []
    single = PacketDecoder()
    for packet in packets:
        one_by_one += flows_as_tuples(single.decode(packet))
    lengths = [len(p) for p in packets]
    offsets = np.concatenate([[0], np.cumsum(lengths[:-1])])
    batched = flows_as_tuples(PacketDecoder().decode_batch(b"".join(packets), offsets, lengths, ["10.0.0.1"] * len(packets)))
    assert batched and sorted(batched) == sorted(one_by_one)


@pytest.mark.parametrize("fmt", FORMATS)
def test_scenario_stream_decodes_exactly(fmt: str) -> None:
    scenario = Scenario("dns_amplification", attack_start=0, attack_end=10)
    array = scenario.records(1.0, 500, np.random.default_rng(5))
    records = to_records(array)
    decoder = PacketDecoder()
    decoded = []
    for packet in encoder_for(fmt, sampling=4).encode(array):
        decoded += flows_as_tuples(decoder.decode(packet))
    assert sorted(decoded) == sorted(expected_tuples(records, 4, fmt))


def test_every_format_is_recognised_on_one_port() -> None:
    records = mixed_records(60, seed=11)
    packets = [p for fmt in FORMATS for p in encoder_for(fmt).encode(records)]
    random.Random(1).shuffle(packets)
    decoder = PacketDecoder()
    total = sum(decoder.decode(p).size for p in packets)
    expected = sum(len(expected_tuples(records, 1, fmt)) for fmt in FORMATS)
    assert total == expected
    assert decoder.stats["malformed"] == 0
