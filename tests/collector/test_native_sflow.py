"""The compiled sFlow decoder (collector/native/sflow.c) gives exactly what the numpy decoder gives.

Same records in the same order, same counters (down to which keys exist), on generator output, hand-made corners
and fuzzed datagrams; and it never reads a byte outside the datagrams it is given: datagrams are followed by
valid-looking sFlow bytes it must not take for their continuation, or by a page of memory that faults when read.
"""

from __future__ import annotations

import ctypes
import mmap
import random
import struct
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.decode import PacketDecoder, sflow
from collector.decode.common import DecodeStats
from collector.decode.sflow import SflowDecoder
from collector.records import FLOW_DTYPE, FlowArray, address_halves, flows_as_tuples
from netsim.flowgen import SCENARIOS, Scenario, SflowEncoder, encoder_for
from tests.collector.helpers import mixed_records, mutate

FUZZ = settings(max_examples=300, deadline=None, derandomize=True)
PROT_NONE = 0  # mprotect: no access (the mmap module only exports PROT_READ and PROT_WRITE)

SRC4, DST4 = bytes([198, 51, 100, 7]), bytes([203, 0, 113, 10])
SRC6, DST6 = bytes.fromhex("20010db8000100000000000000000001"), bytes.fromhex("20010db8000500000000000000000010")


@pytest.fixture(scope="module", autouse=True)
def compiled_decoder() -> None:
    """Every test here needs the C code: its absence fails loudly."""
    if sflow._compiled_decoder() is None:
        pytest.fail(
            "the compiled sFlow decoder is unavailable: collector.native.extension() found no module "
            "built from collector/native/*.c (./sluice builds it at install: python -m collector.native)"
        )


# --- building datagrams ------------------------------------------------------------------------------------------


def item(fmt: int, body: bytes, length: int | None = None) -> bytes:
    """One (format, length, body) element of an sFlow chain."""
    return struct.pack(">II", fmt, len(body) if length is None else length) + body


def datagram(*samples: bytes, agent_type: int = 1, version: int = 5, count: int | None = None) -> bytes:
    agent = bytes([127, 0, 0, 1]) if agent_type != 2 else SRC6
    header = struct.pack(">II", version, agent_type) + agent + struct.pack(">III", 0, 1, 1000)
    return header + struct.pack(">I", len(samples) if count is None else count) + b"".join(samples)


def flow_sample(*records: bytes, rate: int = 10, expanded: bool = False, count: int | None = None) -> bytes:
    n = len(records) if count is None else count
    if expanded:
        head = struct.pack(">11I", 1, 0, 5, rate, 0, 0, 0, 3, 0, 4, n)
    else:
        head = struct.pack(">8I", 1, 5, rate, 0, 0, 3, 4, n)
    return item(3 if expanded else 1, head + b"".join(records))


def counter_sample() -> bytes:
    return item(2, struct.pack(">III", 1, 5, 0))


def raw(header: bytes, proto: int = 1, frame_length: int = 1000, captured: int | None = None) -> bytes:
    """A raw packet header record; `captured` may claim fewer (or more) bytes than the record carries."""
    body = struct.pack(">IIII", proto, frame_length, 4, len(header) if captured is None else captured) + header
    return item(1, body + b"\0" * (-len(body) % 4))


def sampled_ipv4(proto: int = 17, sport: int = 53, dport: int = 999, flags: int = 0, length: int = 700) -> bytes:
    return item(3, struct.pack(">II4s4sIIII", length, proto, SRC4, DST4, sport, dport, flags, 0))


def sampled_ipv6(proto: int = 6, sport: int = 5555, dport: int = 443, flags: int = 2, length: int = 90) -> bytes:
    return item(4, struct.pack(">II16s16sIIII", length, proto, SRC6, DST6, sport, dport, flags, 0))


def tcp(sport: int = 1234, dport: int = 80, flags: int = 0x12) -> bytes:
    return struct.pack(">HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 65535, 0, 0)


def udp(sport: int = 53, dport: int = 4444) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8, 0)


def ipv4(proto: int, payload: bytes, frag_word: int = 0x4000, ihl: int = 5) -> bytes:
    header = struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(payload), 1, frag_word, 64, proto, 0, SRC4, DST4)
    return header + b"\x01" * max(0, 4 * ihl - 20) + payload


def ipv6(proto: int, payload: bytes, fragment: int | None = None) -> bytes:
    """IPv6; `fragment` adds a fragment header with that offset (in 8-byte units), more-fragments set."""
    extension = b"" if fragment is None else struct.pack(">BBHI", proto, 0, (fragment << 3) | 1, 7)
    next_header = proto if fragment is None else 44
    fixed = struct.pack(">IHBB", 0x6000_0000, len(extension) + len(payload), next_header, 64) + SRC6 + DST6
    return fixed + extension + payload


def ethernet(ethertype: int, payload: bytes, tags: tuple[int, ...] = ()) -> bytes:
    vlans = b"".join(struct.pack(">HH", tpid, 42) for tpid in tags)
    return b"\x02\0\0\0\0\x01\x02\0\0\0\0\x02" + vlans + struct.pack(">H", ethertype) + payload


PAYLOAD = b"\xab" * 32
HEADERS = {
    "v4 tcp": ethernet(0x0800, ipv4(6, tcp() + PAYLOAD)),
    "v4 udp": ethernet(0x0800, ipv4(17, udp() + PAYLOAD)),
    "v4 icmp": ethernet(0x0800, ipv4(1, b"\x08\0\0\0" + PAYLOAD)),
    "v4 first fragment": ethernet(0x0800, ipv4(17, udp() + PAYLOAD, frag_word=0x2000)),
    "v4 later fragment": ethernet(0x0800, ipv4(17, PAYLOAD, frag_word=185)),
    "v4 options": ethernet(0x0800, ipv4(6, tcp() + PAYLOAD, ihl=15)),
    "v4 ihl 0": ethernet(0x0800, ipv4(6, tcp() + PAYLOAD, ihl=0)),
    "vlan v4 tcp": ethernet(0x0800, ipv4(6, tcp(flags=0x02) + PAYLOAD), tags=(0x8100,)),
    "qinq v4 udp": ethernet(0x0800, ipv4(17, udp() + PAYLOAD), tags=(0x88A8, 0x8100)),
    "three tags": ethernet(0x0800, ipv4(17, udp() + PAYLOAD), tags=(0x9100, 0x88A8, 0x8100)),
    "v6 tcp": ethernet(0x86DD, ipv6(6, tcp(flags=0x11) + PAYLOAD)),
    "v6 udp": ethernet(0x86DD, ipv6(17, udp() + PAYLOAD)),
    "v6 first fragment": ethernet(0x86DD, ipv6(17, udp() + PAYLOAD, fragment=0)),
    "v6 later fragment": ethernet(0x86DD, ipv6(17, PAYLOAD, fragment=185)),
    "qinq v6 fragment tcp": ethernet(0x86DD, ipv6(6, tcp() + PAYLOAD, fragment=0), tags=(0x88A8, 0x8100)),
    "v4 says v6": ethernet(0x86DD, ipv4(6, tcp() + PAYLOAD)),
    "arp": ethernet(0x0806, bytes(28)),
    "bare v4": ipv4(6, tcp() + PAYLOAD),
    "bare v6": ipv6(17, udp() + PAYLOAD),
}
HEADER_PROTOCOLS = {"bare v4": 11, "bare v6": 12}


def layout(datagrams: list[bytes], align: int = 1, gap: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Datagrams back to back (each start rounded up to `align`, `gap` zero bytes after each) in one buffer."""
    buffer, offsets = bytearray(), []
    for packet in datagrams:
        buffer += b"\0" * (-len(buffer) % align)
        offsets.append(len(buffer))
        buffer += packet + b"\0" * gap
    lengths = [len(p) for p in datagrams]
    return np.frombuffer(bytes(buffer), dtype=np.uint8), np.array(offsets, np.int64), np.array(lengths, np.int64)


def guarded(data: bytes) -> tuple[np.ndarray, mmap.mmap]:
    """`data` as bytes that end where readable memory ends: reading one byte past them kills the process."""
    page = mmap.PAGESIZE
    size = -(-len(data) // page) * page + page
    region = mmap.mmap(-1, size)
    start = size - page - len(data)
    region[start : start + len(data)] = data
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    base = ctypes.addressof(ctypes.c_char.from_buffer(region))
    assert libc.mprotect(base + size - page, page, PROT_NONE) == 0, ctypes.get_errno()
    return np.frombuffer(region, dtype=np.uint8, count=len(data), offset=start), region


def assert_same(u8: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> FlowArray:
    """Both paths on the same batch: identical records, order and counters. Returns the records."""
    reference_stats, compiled_stats = DecodeStats(), DecodeStats()
    expected = SflowDecoder(reference_stats).decode_numpy(u8, offsets, lengths)
    flows = SflowDecoder(compiled_stats).decode_compiled(u8, offsets, lengths)
    assert flows is not None, "the compiled decoder gave up (out of room or memory) on a batch it must decode"
    assert flows.dtype == FLOW_DTYPE
    if not np.array_equal(flows, expected):
        first = next((i for i in range(min(flows.size, expected.size)) if flows[i] != expected[i]), None)
        pytest.fail(f"{flows.size} records vs numpy {expected.size}; first difference at {first}:\n"
                    f"{flows_as_tuples(flows[first:first + 1] if first is not None else flows[:0])}\n"
                    f"{flows_as_tuples(expected[first:first + 1] if first is not None else expected[:0])}")  # fmt: skip
    assert flows.tobytes() == expected.tobytes()
    assert list(compiled_stats.items()) == list(reference_stats.items())
    return flows


def assert_same_alone(packet: bytes) -> FlowArray:
    """One datagram in a buffer of its own, unaligned and aligned, then flush against unreadable memory."""
    for align, gap in ((1, 0), (4, 3)):
        u8, offsets, lengths = layout([b"\x55" * 3, packet], align=align, gap=gap)
        flows = assert_same(u8, offsets[1:], lengths[1:])
    edge, _region = guarded(packet)
    one, size = np.array([0], np.int64), np.array([len(packet)], np.int64)
    alone = SflowDecoder(DecodeStats()).decode_compiled(edge, one, size)
    assert alone is not None and alone.tobytes() == flows.tobytes()
    return flows


# --- generator output --------------------------------------------------------------------------------------------


def generated_datagrams() -> Iterator[tuple[str, list[bytes]]]:
    for index, name in enumerate(sorted(SCENARIOS)):
        for prefix in ("203.0.113.0/24", "2001:db8:5::/64"):
            scenario = Scenario(name, prefix=prefix, attack_start=0, attack_end=10)
            records = scenario.records(1.0, 300, np.random.default_rng(index))
            yield f"{name} {prefix}", encoder_for("sflow", sampling=100).encode(records)
    yield "mixed sampling 1", encoder_for("sflow", sampling=1).encode(mixed_records(400, seed=1))
    yield "mixed vlan", SflowEncoder(sampling=4096, vlan=42).encode(mixed_records(400, seed=2))


GENERATED = dict(generated_datagrams())
POOL = [packet for packets in GENERATED.values() for packet in packets]


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generator_output_decodes_identically(name: str) -> None:
    packets = GENERATED[name]
    flows = assert_same(*layout(packets))
    assert flows.size >= len(packets)
    assert_same(*layout(packets, align=4, gap=5))
    assert_same_alone(packets[0])


def test_benchmark_sized_batch_decodes_identically() -> None:
    packets = [POOL[i % len(POOL)] for i in range(2000)]
    flows = assert_same(*layout(packets))
    assert flows.size > 2000


# --- hand-made corners -------------------------------------------------------------------------------------------


def raw_sample(name: str, **kwargs: int) -> bytes:
    return flow_sample(raw(HEADERS[name], proto=HEADER_PROTOCOLS.get(name, 1), **kwargs))


MINIMAL_SAMPLE = flow_sample(sampled_ipv4())  # 80 bytes: the densest records can be
CORNERS: dict[str, tuple[bytes, int]] = {  # datagram, records it must yield
    **{f"raw {name}": (datagram(raw_sample(name)), 0 if name in ("three tags", "v4 says v6", "arp") else 1)
       for name in HEADERS},
    "expanded sample, IPv6 agent": (datagram(flow_sample(sampled_ipv4(), expanded=True, rate=128), agent_type=2), 1),
    "sampled ipv6": (datagram(flow_sample(sampled_ipv6())), 1),
    "rate 0 counts as 1": (datagram(flow_sample(sampled_ipv4(), rate=0)), 1),
    "largest rate": (datagram(flow_sample(sampled_ipv4(length=2**32 - 1), rate=2**32 - 1)), 1),
    "raw header preferred over an earlier sampled ipv4":
        (datagram(flow_sample(sampled_ipv4(), sampled_ipv6(), raw(HEADERS["v6 tcp"]))), 1),
    "non-IP raw header wins and yields nothing": (datagram(flow_sample(raw(HEADERS["arp"]), sampled_ipv4())), 0),
    "short raw record is skipped": (datagram(flow_sample(item(1, bytes(12)), sampled_ipv6())), 1),
    "short sampled records are skipped": (datagram(flow_sample(item(3, bytes(28)), item(4, bytes(52)))), 0),
    "unknown records only": (datagram(flow_sample(item(1001, bytes(16)), item(2, bytes(4)))), 0),
    "captured length past the record": (datagram(flow_sample(raw(HEADERS["v4 tcp"], captured=200))), 0),
    "captured length 0": (datagram(flow_sample(raw(HEADERS["v4 tcp"], captured=0))), 0),
    "unknown header protocol": (datagram(flow_sample(raw(HEADERS["bare v4"], proto=7))), 0),
    "bare v4 declared ethernet": (datagram(flow_sample(raw(HEADERS["bare v4"], proto=1))), 0),
    "counter samples around flow samples":
        (datagram(counter_sample(), raw_sample("v4 tcp"), counter_sample(), raw_sample("v6 udp")), 2),
    "flow sample too short": (datagram(item(1, bytes(28)), item(3, bytes(40))), 0),
    "item lengths not multiples of four":
        (datagram(item(2, bytes(5)), flow_sample(item(7, bytes(3)), sampled_ipv4())), 1),
    "no samples": (datagram(), 0),
    "256 samples": (datagram(*[MINIMAL_SAMPLE] * 256), 256),
    "257 samples": (datagram(*[counter_sample()] * 257), 0),
    "256 records": (datagram(flow_sample(*[item(9, b"")] * 255, sampled_ipv4())), 1),
    "257 records": (datagram(flow_sample(*[item(9, b"")] * 256, sampled_ipv4())), 0),
    "sample count past the end": (datagram(raw_sample("v4 tcp"), count=2), 0),
    "sample length past the end": (datagram(raw_sample("v4 tcp"))[:-4], 0),
    "record count past the sample": (datagram(flow_sample(sampled_ipv4(), count=2)), 0),
    "bad record chain drops the whole datagram":
        (datagram(raw_sample("v4 tcp"), flow_sample(sampled_ipv4(), count=3), raw_sample("v6 tcp")), 0),
    "record length past the sample":
        (datagram(flow_sample(item(3, struct.pack(">8I", 0, 0, 0, 0, 0, 0, 0, 0), length=36))), 0),
    "version 4": (datagram(raw_sample("v4 tcp"), version=4), 0),
    "agent type 3": (datagram(raw_sample("v4 tcp"), agent_type=3), 0),
    "ipv6 agent header cut": (datagram(agent_type=2)[:36], 0),
    "27 bytes": (datagram()[:27], 0),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CORNERS))
def test_corner_decodes_identically(name: str) -> None:
    packet, records = CORNERS[name]
    assert assert_same_alone(packet).size == records


def test_corners_in_one_batch_decode_identically() -> None:
    packets = [packet for packet, _ in CORNERS.values()]
    flows = assert_same(*layout(packets))
    assert flows.size == sum(records for _, records in CORNERS.values())


def test_fields_of_a_qinq_ipv6_fragment() -> None:
    flows = assert_same_alone(datagram(flow_sample(raw(HEADERS["qinq v6 fragment tcp"], frame_length=1514), rate=3)))
    assert flows_as_tuples(flows) == [
        ("2001:db8:1::1", "2001:db8:5::10", 6, 1234, 80, 0x12, 1, 1514 * 3, 3, 3),
    ]
    assert (int(flows["src_hi"][0]), int(flows["src_lo"][0])) == address_halves("2001:db8:1::1")
    assert int(flows["ipv6"][0]) == 1


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_only_captured_bytes_are_read(name: str) -> None:
    """Every captured length of a header whose record carries it whole: what lies past `visible` is not read."""
    header = HEADERS[name] + bytes(64)  # room for the 96-byte window and more
    proto = HEADER_PROTOCOLS.get(name, 1)
    packets = [datagram(flow_sample(raw(header, proto=proto, captured=captured))) for captured in range(len(header))]
    assert_same(*layout(packets))
    assert_same(*layout(packets, align=4))


def test_records_come_in_sample_position_order_then_datagram() -> None:
    """The numpy walk takes the k-th sample of every datagram at step k; the C code keeps that order."""
    first = datagram(*[flow_sample(sampled_ipv4(sport=port)) for port in (1, 2, 3)])
    second = datagram(counter_sample(), flow_sample(sampled_ipv4(sport=12)), flow_sample(sampled_ipv4(sport=13)))
    third = datagram(flow_sample(sampled_ipv4(sport=21)))
    flows = assert_same(*layout([first, second, third]))
    assert flows["sport"].tolist() == [1, 21, 2, 12, 3, 13]


def test_malformed_datagrams_keep_their_flow_samples_counted() -> None:
    broken = CORNERS["bad record chain drops the whole datagram"][0]
    stats = DecodeStats()
    flows = SflowDecoder(stats).decode_compiled(*layout([broken]))
    assert flows is not None and flows.size == 0
    assert stats["malformed"] == 1 and stats["sflow_flow_samples"] == 3 and stats["records"] == 0


def test_datagrams_outside_the_buffer_are_malformed() -> None:
    packet = datagram(raw_sample("v4 tcp"))
    u8, _ = guarded(packet)
    stats = DecodeStats()
    offsets = np.array([-4, 0, 0, 8, 2**62, 0], np.int64)
    lengths = np.array([len(packet), len(packet) + 1, -1, len(packet), 2**62, len(packet)], np.int64)
    flows = SflowDecoder(stats).decode_compiled(u8, offsets, lengths)
    assert flows is not None and flows.size == 1
    assert stats["malformed"] == 5 and stats["sflow_packets"] == 6


# --- dispatch and fallback ---------------------------------------------------------------------------------------


def test_packet_decoder_takes_the_compiled_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def numpy_path(*args: object) -> FlowArray:
        raise AssertionError("the numpy path ran although the compiled decoder is available")

    monkeypatch.setattr(SflowDecoder, "decode_numpy", numpy_path)
    decoder = PacketDecoder()
    packets = GENERATED["mixed vlan"]
    u8, offsets, lengths = layout(packets)
    flows = decoder.decode_batch(u8.tobytes(), offsets, lengths, ["10.0.0.1"] * len(packets))
    assert flows.size == 400 and decoder.stats["records"] == 400


@pytest.mark.parametrize("failure", [None, -1, -2])
def test_numpy_path_takes_over_when_the_compiled_one_cannot(
    monkeypatch: pytest.MonkeyPatch, failure: int | None
) -> None:
    """No helper (None) or a helper out of room (-1) or memory (-2): the numpy path decodes, counting once."""
    monkeypatch.setattr(sflow, "_compiled_decoder", lambda: None if failure is None else (lambda *args: failure))
    packets = GENERATED["mixed sampling 1"]
    reference_stats, stats = DecodeStats(), DecodeStats()
    expected = SflowDecoder(reference_stats).decode_numpy(*layout(packets))
    flows = SflowDecoder(stats).decode(*layout(packets))
    assert flows.size == 400 and flows.tobytes() == expected.tobytes()
    assert stats == reference_stats and stats["sflow_packets"] == len(packets)


# --- fuzzing -----------------------------------------------------------------------------------------------------


WORDS = [0, 1, 2, 3, 4, 11, 12, 16, 28, 32, 44, 56, 255, 256, 257, 0x7FFF_FFFF, 0xFFFF_FFFF]
VALUES = st.one_of(st.sampled_from(WORDS), st.integers(0, 2**32 - 1))
MUTATION = st.tuples(st.integers(0, 4), st.integers(0, 10**6), VALUES)


SMALL_POOL = [packet for packets in GENERATED.values() for packet in packets[:2]] + [p for p, _ in CORNERS.values()]


@FUZZ
@given(st.sampled_from(SMALL_POOL), st.lists(MUTATION, min_size=1, max_size=6))
def test_mutated_datagrams_decode_identically(packet: bytes, mutations: list[tuple[int, int, int]]) -> None:
    assert_same_alone(mutate(packet, mutations))


@st.composite
def random_records(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["raw", "raw", "ipv4", "ipv6", "any"]))
    if kind == "raw":
        name = draw(st.sampled_from(sorted(HEADERS)))
        header = HEADERS[name] + draw(st.binary(max_size=40))
        proto = draw(st.sampled_from([HEADER_PROTOCOLS.get(name, 1), 1, 11, 12, 7]))
        captured = draw(st.one_of(st.integers(0, len(header) + 8), st.sampled_from([2**31, 2**32 - 1])))
        return raw(header, proto=proto, frame_length=draw(st.integers(0, 2**32 - 1)), captured=captured)
    if kind == "ipv4":
        return item(3, draw(st.binary(min_size=28, max_size=40)))
    if kind == "ipv6":
        return item(4, draw(st.binary(min_size=52, max_size=64)))
    return item(draw(st.sampled_from([1, 2, 3, 4, 1001, 2**32 - 1])), draw(st.binary(max_size=70)))


@st.composite
def random_datagrams(draw: st.DrawFn) -> bytes:
    samples = []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["flow", "flow", "expanded", "counter", "any"]))
        if kind == "counter":
            samples.append(counter_sample())
        elif kind == "any":
            samples.append(item(draw(st.sampled_from([1, 3, 5])), draw(st.binary(max_size=60))))
        else:
            records = draw(st.lists(random_records(), max_size=4))
            count = draw(st.one_of(st.none(), st.integers(0, 6)))
            rate = draw(st.sampled_from([0, 1, 100, 2**32 - 1]))
            samples.append(flow_sample(*records, rate=rate, expanded=kind == "expanded", count=count))
    count = draw(st.one_of(st.none(), st.none(), st.integers(0, 8)))
    return datagram(*samples, agent_type=draw(st.sampled_from([1, 1, 2])), count=count)


@FUZZ
@given(random_datagrams())
def test_random_structures_decode_identically(packet: bytes) -> None:
    assert_same_alone(packet)


@FUZZ
@given(st.lists(
    st.tuples(st.sampled_from(SMALL_POOL), st.integers(0, 10**6), st.integers(0, 9)),
    min_size=1, max_size=9,
))
def test_datagrams_at_scattered_offsets_read_only_their_own_bytes(choices: list[tuple[bytes, int, int]]) -> None:
    """Each datagram, maybe cut short by its length, is followed by more valid sFlow; the batch decodes as if alone.

    What follows a datagram is the rest of it when it is cut, else another valid datagram, then random padding.
    """
    rng = random.Random(len(choices))
    buffer, offsets, lengths, alone = bytearray(rng.randbytes(rng.randrange(8))), [], [], []
    for packet, cut, pad in choices:
        length = len(packet) if cut % 3 else cut % (len(packet) + 1)
        offsets.append(len(buffer))
        lengths.append(length)
        alone.append(packet[:length])
        follower = packet[length:] if length < len(packet) else SMALL_POOL[cut % len(SMALL_POOL)]
        buffer += packet + (b"" if length < len(packet) else follower) + rng.randbytes(pad)
    u8 = np.frombuffer(bytes(buffer), dtype=np.uint8)
    scattered = assert_same(u8, np.array(offsets, np.int64), np.array(lengths, np.int64))
    tight = assert_same(*layout(alone))
    assert scattered.tobytes() == tight.tobytes()
    singles = [assert_same_alone(packet) for packet in alone]
    assert sorted(flows_as_tuples(scattered)) == sorted(t for flows in singles for t in flows_as_tuples(flows))
