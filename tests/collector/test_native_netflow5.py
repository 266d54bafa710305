"""NetFlow v5 records expanded by the compiled helper equal the numpy path's, on real, hostile and scattered input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.decode import PacketDecoder
from netsim.flowgen import SCENARIOS, NetFlow5Encoder, Scenario


def decoders(default_sampling: dict[str, int] | None = None) -> tuple[PacketDecoder, PacketDecoder]:
    compiled, plain = PacketDecoder(default_sampling), PacketDecoder(default_sampling)
    plain.netflow5.use_native = False
    return compiled, plain


def decode_both(
    buffer: bytes, offsets: list[int], lengths: list[int], exporter: str = "10.0.0.1",
    default_sampling: dict[str, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, int], dict[str, int]]:  # fmt: skip
    compiled, plain = decoders(default_sampling)
    a = compiled.decode_batch(buffer, offsets, lengths, [exporter] * len(offsets))
    b = plain.decode_batch(buffer, offsets, lengths, [exporter] * len(offsets))
    return a, b, dict(compiled.stats), dict(plain.stats)


def packed(packets: list[bytes]) -> tuple[bytes, list[int], list[int]]:
    lengths = [len(p) for p in packets]
    return b"".join(packets), [sum(lengths[:i]) for i in range(len(packets))], lengths


def test_the_compiled_records_path_is_taken() -> None:
    packets = NetFlow5Encoder(sampling=3).encode(Scenario("syn_flood", attack_start=0).records(1.0, 100))
    buffer, offsets, _lengths = packed(packets)
    compiled, _ = decoders()
    flows = compiled.netflow5.records_compiled(
        np.frombuffer(buffer, dtype=np.uint8), np.array(offsets), np.array([30, 30, 30, 10]), np.full(4, 3, np.uint64)
    )
    assert flows is not None and flows.size == 100


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("sampling", [0, 1, 1000, 0x3FFF])
def test_generator_packets_decode_identically(name: str, sampling: int) -> None:
    records = Scenario(name, attack_start=0).records(1.0, 500)
    packets = NetFlow5Encoder(sampling=sampling).encode(records)
    a, b, stats_a, stats_b = decode_both(*packed(packets), default_sampling={"10.0.0.1": 2**33 + 5})
    assert a.size == records.size > 0
    assert np.array_equal(a, b)
    assert stats_a == stats_b


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_mutated_and_truncated_packets_decode_identically(data: st.DataObject) -> None:
    packets = NetFlow5Encoder(sampling=10).encode(Scenario("dns_amplification", attack_start=0).records(1.0, 90))
    mutated = []
    for packet in packets:
        raw = bytearray(packet)
        for _ in range(data.draw(st.integers(0, 6))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        mutated.append(bytes(raw[: data.draw(st.integers(0, len(raw)))]))
    a, b, stats_a, stats_b = decode_both(*packed(mutated))
    assert np.array_equal(a, b)
    assert stats_a == stats_b


def test_scattered_packets_ignore_what_follows_them() -> None:
    """Datagrams in 4 KiB slots whose tails hold other valid v5 data: a header's count past its length is refused,
    whatever the bytes after the datagram would have decoded to."""
    encoder = NetFlow5Encoder()
    full = encoder.encode(Scenario("ntp_amplification", attack_start=0).records(1.0, 120))
    buffer = bytearray(4096 * len(full))
    offsets, lengths = [], []
    for i, packet in enumerate(full):
        buffer[i * 4096 : i * 4096 + len(packet)] = packet
        buffer[i * 4096 + len(packet) : i * 4096 + 2 * len(packet)] = packet
        offsets.append(i * 4096)
        lengths.append(len(packet) - 48 * (i % 2))  # every other one claims one record more than it carries
    a, b, stats_a, stats_b = decode_both(bytes(buffer), offsets, lengths)
    assert np.array_equal(a, b)
    assert stats_a == stats_b
    assert stats_a["malformed"] == len(full) // 2
    alone = PacketDecoder()
    expected = np.concatenate([alone.decode(bytes(buffer[o : o + n])) for o, n in zip(offsets, lengths, strict=True)])
    assert np.array_equal(a, expected)
