"""Hand-made export packets: the corners real exporters reach (template timing, padding, sampling, withdrawal)."""

from __future__ import annotations

import random
import struct

from collector.decode import PacketDecoder
from collector.records import flows_as_tuples
from netsim.flowgen import FlowRecord, IpfixEncoder, NetFlow5Encoder, NetFlow9Encoder, SflowEncoder

V4 = FlowRecord("198.51.100.1", "203.0.113.10", 17, 53, 4444, 0, False, 1400, 2)
V6 = FlowRecord("2001:db8:1::1", "2001:db8:5::10", 6, 5555, 443, 0x02, False, 60, 1)


def ipfix_message(sets: list[bytes], sequence: int = 0, domain: int = 1) -> bytes:
    body = b"".join(sets)
    return struct.pack(">HHIII", 10, 16 + len(body), 0, sequence, domain) + body


def ipfix_set(set_id: int, payload: bytes) -> bytes:
    return struct.pack(">HH", set_id, 4 + len(payload)) + payload


def test_ipfix_data_before_template_is_held_then_decoded() -> None:
    encoder = IpfixEncoder(send_templates=False)
    data_first = encoder.encode([V4])
    decoder = PacketDecoder()
    assert decoder.decode(data_first[0]).size == 0
    assert decoder.stats["data_without_template"] == 1
    replayed = decoder.decode(encoder.template_packet())
    assert flows_as_tuples(replayed) == [("198.51.100.1", "203.0.113.10", 17, 53, 4444, 0, 0, 1400, 2, 1)]
    assert decoder.stats["data_replayed_after_template"] == 1


def test_netflow9_data_before_template_is_held_then_decoded() -> None:
    encoder = NetFlow9Encoder(send_templates=False)
    decoder = PacketDecoder()
    assert decoder.decode(encoder.encode([V6])[0]).size == 0
    replayed = decoder.decode(encoder.template_packet())
    assert flows_as_tuples(replayed) == [("2001:db8:1::1", "2001:db8:5::10", 6, 5555, 443, 2, 0, 60, 1, 1)]


def test_held_data_expires() -> None:
    now = [0.0]
    encoder = IpfixEncoder(send_templates=False)
    decoder = PacketDecoder(clock=lambda: now[0])
    decoder.decode(encoder.encode([V4])[0])
    now[0] = 60.0
    assert decoder.decode(encoder.template_packet()).size == 0
    assert decoder.stats["data_without_template_expired"] == 1


def test_sequence_gaps_are_counted() -> None:
    for encoder in (NetFlow5Encoder(), NetFlow9Encoder(), IpfixEncoder()):
        packets = [encoder.encode([V4])[0] for _ in range(4)]
        decoder = PacketDecoder()
        for packet in (packets[0], packets[1], packets[3]):
            decoder.decode(packet)
        assert decoder.stats["sequence_gaps"] == 1, type(encoder).__name__


def test_template_withdrawal_stops_decoding_until_announced_again() -> None:
    encoder = IpfixEncoder()
    decoder = PacketDecoder()
    assert decoder.decode(encoder.encode([V4])[0]).size == 1
    decoder.decode(encoder.withdrawal_packet(IpfixEncoder.V4_TEMPLATE))
    assert decoder.stats["templates_withdrawn"] == 1
    encoder.send_templates = False
    assert decoder.decode(encoder.encode([V4])[0]).size == 0
    assert decoder.stats["data_without_template"] == 1


def test_withdrawal_of_all_templates() -> None:
    encoder = IpfixEncoder()
    decoder = PacketDecoder()
    decoder.decode(encoder.template_packet())
    decoder.decode(encoder.withdrawal_packet(2))
    assert decoder.stats["templates_withdrawn"] == 2
    encoder.send_templates = False
    assert decoder.decode(encoder.encode([V6])[0]).size == 0


def test_template_refresh_with_new_layout_replaces_the_old_one() -> None:
    decoder = PacketDecoder()
    old = ipfix_set(2, struct.pack(">HHHHHHHH", 300, 3, 8, 4, 12, 4, 1, 4))
    decoder.decode(ipfix_message([old]))
    new = ipfix_set(2, struct.pack(">HHHHHHHHHH", 300, 4, 12, 4, 8, 4, 1, 4, 4, 1))
    data = ipfix_set(300, bytes([203, 0, 113, 9, 198, 51, 100, 7]) + struct.pack(">IB", 999, 6) + b"\0\0\0")
    flows = decoder.decode(ipfix_message([new, data]))
    assert flows_as_tuples(flows) == [("198.51.100.7", "203.0.113.9", 6, 0, 0, 0, 0, 999, 0, 1)]


def test_padding_after_records_is_ignored() -> None:
    decoder = PacketDecoder()
    template = ipfix_set(2, struct.pack(">HHHHHHHHHH", 301, 4, 8, 4, 12, 4, 2, 4, 4, 1))
    record = bytes([10, 0, 0, 1, 203, 0, 113, 1]) + struct.pack(">IB", 5, 17)
    data = ipfix_set(301, record * 2 + b"\0\0\0")
    flows = decoder.decode(ipfix_message([template, data]))
    assert [f[1] for f in flows_as_tuples(flows)] == ["203.0.113.1", "203.0.113.1"]
    assert int(flows["packets"].sum()) == 10


def test_reduced_size_enterprise_and_variable_length_fields() -> None:
    decoder = PacketDecoder()
    fields = struct.pack(">HH", 8, 4) + struct.pack(">HH", 12, 4)
    fields += struct.pack(">HH", 1, 3)  # octetDeltaCount in 3 bytes
    fields += struct.pack(">HHI", 0x8000 | 12, 2, 29305)  # enterprise field, skipped
    fields += struct.pack(">HH", 82, 65535)  # interfaceName, variable length
    fields += struct.pack(">HH", 4, 1)
    template = ipfix_set(2, struct.pack(">HH", 302, 6) + fields)
    record_a = bytes([1, 2, 3, 4, 203, 0, 113, 2]) + (70000).to_bytes(3, "big") + b"\xff\xff" + b"\x03ge0" + b"\x11"
    record_b = bytes([1, 2, 3, 5, 203, 0, 113, 3]) + (5).to_bytes(3, "big") + b"\0\0" + b"\xff\x00\x01x" + b"\x06"
    flows = decoder.decode(ipfix_message([template, ipfix_set(302, record_a + record_b)]))
    assert flows_as_tuples(flows) == [
        ("1.2.3.4", "203.0.113.2", 17, 0, 0, 0, 0, 70000, 0, 1),
        ("1.2.3.5", "203.0.113.3", 6, 0, 0, 0, 0, 5, 0, 1),
    ]


def test_netflow5_header_sampling_and_exporter_default() -> None:
    sampled = PacketDecoder().decode(NetFlow5Encoder(sampling=512).encode([V4])[0])
    assert (int(sampled["bytes"][0]), int(sampled["packets"][0])) == (1400 * 512, 2 * 512)
    unsampled_packet = NetFlow5Encoder(sampling=1).encode([V4])[0]
    defaulted = PacketDecoder(default_sampling={"192.0.2.1": 100}).decode(unsampled_packet, exporter="192.0.2.1")
    assert int(defaulted["sampling"][0]) == 100


def test_sampling_options_are_per_exporter_and_domain() -> None:
    decoder = PacketDecoder()
    decoder.decode(IpfixEncoder(domain=1, sampling=64).template_packet())
    other_domain = IpfixEncoder(domain=2, sampling=1)
    flows = decoder.decode(other_domain.encode([V4])[0])
    assert int(flows["sampling"][0]) == 1
    same_domain = IpfixEncoder(domain=1, sampling=64)
    same_domain.send_templates = False
    assert int(decoder.decode(same_domain.encode([V4])[0])["sampling"][0]) == 64
    assert decoder.decode(same_domain.encode([V4])[0], exporter="127.0.0.2").size == 0  # its own templates


def test_netflow9_sampling_options() -> None:
    flows = PacketDecoder().decode(NetFlow9Encoder(sampling=2048).encode([V6])[0])
    assert int(flows["sampling"][0]) == 2048 and int(flows["packets"][0]) == 2048


def test_sflow_vlan_tagged_headers_and_ipv6() -> None:
    flows = PacketDecoder().decode(SflowEncoder(sampling=256, vlan=42).encode([V4, V6])[0])
    assert flows_as_tuples(flows) == [
        ("198.51.100.1", "203.0.113.10", 17, 53, 4444, 0, 0, 700 * 256, 256, 256),
        ("2001:db8:1::1", "2001:db8:5::10", 6, 5555, 443, 2, 0, 60 * 256, 256, 256),
    ]


def test_sflow_expanded_samples_sampled_ipv4_and_ipv6_agent() -> None:
    sampled_ipv4 = struct.pack(">IIIIIIII", 1000, 17, 0xC6336401, 0xCB00710A, 53, 999, 0, 0)
    record = struct.pack(">II", 3, len(sampled_ipv4)) + sampled_ipv4
    body = struct.pack(">IIIIIIIIIII", 1, 0, 5, 128, 0, 0, 0, 0, 0, 0, 1) + record
    sample = struct.pack(">II", 3, len(body)) + body
    datagram = struct.pack(">II", 5, 2) + bytes(16) + struct.pack(">IIII", 0, 1, 0, 1) + sample
    flows = PacketDecoder().decode(datagram)
    assert flows_as_tuples(flows) == [("198.51.100.1", "203.0.113.10", 17, 53, 999, 0, 0, 128000, 128, 128)]


def test_counter_samples_are_skipped() -> None:
    counters = struct.pack(">II", 2, 8) + bytes(8)
    datagram = struct.pack(">II4sIIII", 5, 1, b"\x7f\0\0\1", 0, 1, 0, 1) + counters
    decoder = PacketDecoder()
    assert decoder.decode(datagram).size == 0
    assert decoder.stats["malformed"] == 0


def test_netflow5_losses_per_stream_in_one_batch_match_a_packet_by_packet_count() -> None:
    """Interleaved exporters and engines, drops and a reordering, decoded as one batch: the counts a reader keeping
    one expected sequence per (exporter, engine type, engine id) would get, packet by packet."""
    rng = random.Random(7)
    streams = [("10.0.0.1", NetFlow5Encoder(engine_id=0)), ("10.0.0.1", NetFlow5Encoder(engine_id=1)),
               ("10.0.0.2", NetFlow5Encoder(engine_id=0))]  # fmt: skip
    sent: list[tuple[bytes, str, int]] = []
    for _ in range(120):
        index = rng.randrange(len(streams))
        exporter, encoder = streams[index]
        packet = encoder.encode([V4] * rng.randint(1, 5))[0]
        if rng.random() > 0.15:  # some packets are lost on the way
            sent.append((packet, exporter, index))
    sent[10], sent[11] = sent[11], sent[10]  # and two arrive out of order
    expected_next: dict[tuple[str, int], int] = {}
    gaps = lost = 0
    for packet, exporter, index in sent:
        sequence, count = struct.unpack_from(">I", packet, 16)[0], struct.unpack_from(">H", packet, 2)[0]
        want = expected_next.get((exporter, index))
        if want is not None and sequence != want:
            gaps += 1
            lost += sequence - want if sequence > want else 0
        expected_next[(exporter, index)] = sequence + count
    decoder = PacketDecoder()
    packets = [p for p, _, _ in sent]
    offsets = [sum(len(p) for p in packets[:i]) for i in range(len(packets))]
    decoder.decode_batch(b"".join(packets), offsets, [len(p) for p in packets], [e for _, e, _ in sent])
    assert gaps > 3
    assert (decoder.stats["sequence_gaps"], decoder.stats["records_lost"]) == (gaps, lost)
