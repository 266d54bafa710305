"""A v9/IPFIX batch decodes exactly as its packets one by one, whichever path (bulk or per packet) it takes."""

from __future__ import annotations

from collector.decode import PacketDecoder
from collector.records import flows_as_tuples
from netsim.flowgen import FlowRecord, IpfixEncoder, NetFlow9Encoder

V4 = FlowRecord("198.51.100.1", "203.0.113.10", 17, 53, 4444, 0, False, 1400, 2)


def _batch(decoder: PacketDecoder, packets: list[bytes]) -> list[tuple]:
    """Decode `packets` as one receive batch, each at an unaligned offset like a replay would give."""
    offsets, buffer = [], bytearray()
    for packet in packets:
        offsets.append(len(buffer))
        buffer += packet + b"\0" * 3
    flows = decoder.decode_batch(bytes(buffer), offsets, [len(p) for p in packets], ["192.0.2.1"] * len(packets))
    return sorted(flows_as_tuples(flows))


def _one_by_one(decoder: PacketDecoder, packets: list[bytes]) -> list[tuple]:
    """Decode `packets` one call each: the reference, as every template change is seen before the next packet."""
    return sorted(t for p in packets for t in flows_as_tuples(decoder.decode(p, "192.0.2.1")))


def test_steady_stream_with_refreshes_and_a_gap() -> None:
    for encoder in (NetFlow9Encoder(sampling=10, template_every=3), IpfixEncoder(sampling=10, template_every=3)):
        packets = [encoder.encode([V4] * 5)[0] for _ in range(12)]
        warm = packets[:2]
        stream = packets[2:7] + packets[8:]
        bulk, single = PacketDecoder(), PacketDecoder()
        _batch(bulk, warm)
        _one_by_one(single, warm)
        assert _batch(bulk, stream) == _one_by_one(single, stream)
        assert bulk.stats == single.stats
        assert bulk.stats["sequence_gaps"] == 1


def test_withdrawal_in_the_middle_of_a_batch() -> None:
    encoder = IpfixEncoder(template_every=1000)
    first = encoder.encode([V4])[0]
    encoder.send_templates = False
    packets = [encoder.encode([V4])[0], encoder.withdrawal_packet(IpfixEncoder.V4_TEMPLATE), encoder.encode([V4])[0]]
    bulk, single = PacketDecoder(), PacketDecoder()
    _batch(bulk, [first])
    _one_by_one(single, [first])
    assert len(_batch(bulk, packets)) == 1
    _one_by_one(single, packets)
    assert bulk.stats == single.stats
    assert bulk.stats["data_without_template"] == 1
