"""The compiled v9/IPFIX record conversion (collector/native/templated.c) gives exactly what numpy gives.

Two decoders see the same batches, one converting template records in C straight from the receive buffer, the
other gathering them and converting with `sampling_of` + `to_flows`: their flows must be byte-identical and their
counters equal, on generator output, hand-made templates (reduced-size counters, fallbacks, sampler rates, both
address families), random templates and fuzzed datagrams. The C code must not read past the records the walk found:
datagrams are laid among other valid datagrams, or end where readable memory ends.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator, Sequence
from ipaddress import ip_address

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.decode import PacketDecoder, templated, templates
from collector.decode.templates import FieldSpec, Template, to_flows_compiled
from collector.records import FLOW_DTYPE, FlowArray, flows_as_tuples
from netsim.flowgen import SCENARIOS, FlowRecord, IpfixEncoder, NetFlow9Encoder, Scenario, encoder_for
from netsim.flowgen.encoders import DROPPED_BY_ACL, DROPPED_BY_POLICER
from tests.collector.helpers import mixed_records, mutate
from tests.collector.test_native_sflow import guarded

FUZZ = settings(max_examples=200, deadline=None, derandomize=True)
EXPORTER = "192.0.2.7"
SRC4, DST4 = bytes([198, 51, 100, 7]), bytes([203, 0, 113, 10])
SRC6, DST6 = bytes.fromhex("20010db8000100000000000000000001"), bytes.fromhex("20010db8000500000000000000000010")

Batch = tuple[np.ndarray, np.ndarray, np.ndarray]


@pytest.fixture(scope="module", autouse=True)
def compiled_converter() -> None:
    """Every test here needs the C code: its absence fails loudly."""
    if templates._compiled_converter() is None:
        pytest.fail(
            "the compiled template converter is unavailable: collector.native.extension() found no module "
            "built from collector/native/*.c (./sluice builds it at install: python -m collector.native)"
        )


@pytest.fixture(autouse=True)
def compiled_conversions(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each compiled conversion the decoders attempted succeeded (False: it handed over to numpy)."""
    outcomes: list[bool] = []

    def spy(*args: object, **kwargs: object) -> tuple[FlowArray, FlowArray] | None:
        converted = to_flows_compiled(*args, **kwargs)  # type: ignore[arg-type]
        outcomes.append(converted is not None)
        return converted

    monkeypatch.setattr(templated, "to_flows_compiled", spy)
    return outcomes


# --- building and comparing batches ------------------------------------------------------------------------------


def layout(packets: Sequence[bytes], gap: int = 0) -> Batch:
    """Datagrams back to back, `gap` bytes of 0xEE after each (they must not be taken for record bytes)."""
    buffer, offsets = bytearray(), []
    for packet in packets:
        offsets.append(len(buffer))
        buffer += packet + b"\xee" * gap
    lengths = [len(p) for p in packets]
    return np.frombuffer(bytes(buffer), dtype=np.uint8), np.array(offsets, np.int64), np.array(lengths, np.int64)


def decoders(**kwargs: object) -> tuple[PacketDecoder, PacketDecoder]:
    """(compiled, numpy) decoders with the same configuration."""
    compiled, reference = PacketDecoder(**kwargs), PacketDecoder(**kwargs)  # type: ignore[arg-type]
    reference.templated.use_compiled = False
    return compiled, reference


def decode(decoder: PacketDecoder, batch: Batch) -> FlowArray:
    u8, offsets, lengths = batch
    return decoder.decode_batch(u8, offsets, lengths, [EXPORTER] * offsets.size)


def assert_same_flows(flows: FlowArray, expected: FlowArray) -> None:
    assert flows.dtype == FLOW_DTYPE and expected.dtype == FLOW_DTYPE
    if not np.array_equal(flows, expected):
        first = next((i for i in range(min(flows.size, expected.size)) if flows[i] != expected[i]), None)
        shown = slice(first, None if first is None else first + 1)
        pytest.fail(f"{flows.size} records vs numpy {expected.size}; first difference at {first}:\n"
                    f"{flows_as_tuples(flows[shown])}\n{flows_as_tuples(expected[shown])}")  # fmt: skip
    assert flows.tobytes() == expected.tobytes()


def assert_same(batches: Sequence[Batch], **kwargs: object) -> list[FlowArray]:
    """Both paths on the same batches, in order: identical flows (and flows of what the network dropped) per batch,
    identical counters after each."""
    compiled, reference = decoders(**kwargs)
    results = []
    for batch in batches:
        flows, expected = decode(compiled, batch), decode(reference, batch)
        assert_same_flows(flows, expected)
        assert_same_flows(compiled.take_not_delivered(), reference.take_not_delivered())
        assert list(compiled.stats.items()) == list(reference.stats.items())
        results.append(flows)
    return results


# --- hand-made NetFlow v9 and IPFIX ------------------------------------------------------------------------------

Field = tuple[int, int]  # information element, length


def encode_record(fields: Sequence[Field], values: dict[int, int | bytes]) -> bytes:
    """One record: each field's value big-endian in its length (bytes as given), zero when not in `values`."""
    out = b""
    for element, length in fields:
        value = values.get(element & 0x7FFF, 0)
        out += value if isinstance(value, bytes) else (value % (1 << (8 * length))).to_bytes(length, "big")
    return out


def ipfix_message(sets: Sequence[bytes], sequence: int = 0, domain: int = 1) -> bytes:
    body = b"".join(sets)
    return struct.pack(">HHIII", 10, 16 + len(body), 0, sequence, domain) + body


def v9_message(sets: Sequence[bytes], sequence: int = 0, domain: int = 1) -> bytes:
    return struct.pack(">HHIIII", 9, len(sets), 1000, 0, sequence, domain) + b"".join(sets)


def a_set(set_id: int, payload: bytes) -> bytes:
    payload += b"\0" * (-len(payload) % 4)
    return struct.pack(">HH", set_id, 4 + len(payload)) + payload


def field_specs(fields: Sequence[Field]) -> bytes:
    """Template field specifiers; an element with the enterprise bit gets enterprise number 29305."""
    return b"".join(
        struct.pack(">HH", e, n) + (struct.pack(">I", 29305) if e & 0x8000 else b"") for e, n in fields
    )


def template_set(version: int, template_id: int, fields: Sequence[Field]) -> bytes:
    return a_set(0 if version == 9 else 2, struct.pack(">HH", template_id, len(fields)) + field_specs(fields))


def options_template_set(version: int, template_id: int, scope: Sequence[Field], options: Sequence[Field]) -> bytes:
    if version == 9:
        head = struct.pack(">HHH", template_id, 4 * len(scope), 4 * len(options))
        return a_set(1, head + field_specs([*scope, *options]))
    head = struct.pack(">HHH", template_id, len(scope) + len(options), len(scope))
    return a_set(3, head + field_specs([*scope, *options]))


def message(version: int, sets: Sequence[bytes], sequence: int = 0) -> bytes:
    return v9_message(sets, sequence) if version == 9 else ipfix_message(sets, sequence)


def exchange(
    version: int, fields: Sequence[Field], rows: Sequence[dict[int, int | bytes]], per_packet: int = 3,
    sampler_rates: dict[int, int] | None = None, sampler_field: Field = (48, 1), rate_field: Field = (34, 4),
) -> list[bytes]:
    """Templates (with announced sampler rates if any) in the first packet, then the rows a few per packet."""
    sets = [template_set(version, 300, fields)]
    if sampler_rates:
        scope = [(1, 4)] if version == 9 else [sampler_field]
        options = [sampler_field, rate_field] if version == 9 else [rate_field]
        layout_fields = [*scope, *options]
        sets.append(options_template_set(version, 400, scope, options))
        sets.append(a_set(400, b"".join(
            encode_record(layout_fields, {sampler_field[0]: sampler, rate_field[0]: rate, 1: 0})
            for sampler, rate in sampler_rates.items()
        )))  # fmt: skip
    packets = [message(version, sets, sequence=0)]
    for start in range(0, len(rows), per_packet):
        body = b"".join(encode_record(fields, row) for row in rows[start : start + per_packet])
        packets.append(message(version, [a_set(300, body)], sequence=len(packets)))
    return packets


V4_FIELDS: list[Field] = [(8, 4), (12, 4), (4, 1), (7, 2), (11, 2), (6, 1), (1, 4), (2, 4)]
V6_FIELDS: list[Field] = [(27, 16), (28, 16), (4, 1), (7, 2), (11, 2), (6, 1), (1, 8), (2, 8)]
# forwardingStatus values rows take in turn: unknown, forwarded (plain, with a reason, with upper bytes set that
# only a wide encoding keeps), dropped (plain, "bad TTL", as a 4-byte value), consumed, and a first byte that would
# say dropped were the status read from the wrong end of a 4-byte field.
FORWARDING_STATUSES = (0x00, 0x40, 0x42, 0x8000_0040, 0x80, 0x89, 0x0000_0080, 0xC0, 0x8000_0000)


def rows(count: int, seed: int, v6: bool = False, extra: dict[int, int] | None = None) -> list[dict[int, int | bytes]]:
    """Records with every element the templates here may carry; IPv6 rows carry IPv4 addresses too."""
    rng = random.Random(seed)
    out: list[dict[int, int | bytes]] = []
    for i in range(count):
        row: dict[int, int | bytes] = {8: SRC4[:-1] + bytes([i % 256]), 12: DST4[:-1] + bytes([rng.randrange(256)])}
        if v6:
            row.update({27: SRC6[:-2] + rng.randbytes(2), 28: DST6[:-2] + rng.randbytes(2)})
        row.update({4: rng.choice([6, 17, 1]), 7: rng.randrange(65536), 11: rng.randrange(65536)})
        row.update({6: rng.randrange(65536), 1: rng.randrange(1 << 64), 2: rng.randrange(1 << 64)})
        row.update({85: rng.randrange(1 << 64), 86: rng.randrange(1 << 64), 88: rng.choice([0, 0, 185, 0x2000])})
        row.update({197: rng.choice([0, 0x20, 0x40, 0xFF]), 34: rng.choice([0, 1, 100, 0xFFFF_FFFF])})
        row.update({305: rng.choice([0, 1, 3]), 306: rng.choice([0, 9, 0xFFFF_FFFF])})
        row.update({48: rng.choice([0, 1, 2, 3, 9]), 302: rng.choice([0, 1, 2, 3, 2**63 + 1])})
        row[89] = FORWARDING_STATUSES[i % len(FORWARDING_STATUSES)]
        row.update(extra or {})
        out.append(row)
    return out


def hand_made() -> Iterator[tuple[str, int, list[Field], bool, dict[int, int] | None, Field]]:
    """(name, version, template fields, IPv6 rows, sampler rates, sampler id field)."""
    for version in (9, 10):
        v = f"v{version} "
        yield v + "plain ipv4", version, V4_FIELDS, False, None, (48, 1)
        yield v + "plain ipv6", version, V6_FIELDS, True, None, (48, 1)
        for width in (1, 2, 3, 5, 6, 7):
            counters = [(1, width), (2, 8 - width if width != 8 else 8)]
            yield v + f"{width}-byte bytes counter", version, V4_FIELDS[:6] + counters, False, None, (48, 1)
        yield v + "totals only", version, [*V4_FIELDS[:6], (85, 7), (86, 3)], False, None, (48, 1)
        yield v + "deltas win over totals", version, [*V4_FIELDS[:6], (86, 8), (85, 4), (1, 2), (2, 6)], False, None, (48, 1)
        yield v + "unsupported width falls back", version, [*V4_FIELDS[:6], (1, 16), (85, 4), (2, 9)], False, None, (48, 1)
        yield v + "no counters", version, V4_FIELDS[:6], False, None, (48, 1)
        yield v + "2-byte tcp flags", version, [*V4_FIELDS[:5], (6, 2), (1, 4)], False, None, (48, 1)
        yield v + "3-byte tcp flags ignored", version, [*V4_FIELDS[:5], (6, 3), (1, 4)], False, None, (48, 1)
        yield v + "fragments", version, [*V4_FIELDS, (88, 2), (197, 1)], False, None, (48, 1)
        yield v + "ipv6 fragments", version, [*V6_FIELDS, (197, 1), (88, 2)], True, None, (48, 1)
        yield v + "both families: ipv6 wins", version, [*V4_FIELDS, (27, 16), (28, 16)], True, None, (48, 1)
        yield v + "src6 without dst6: ipv4", version, [(27, 16), *V4_FIELDS], True, None, (48, 1)
        yield v + "no address pair", version, [(8, 4), (28, 16), (1, 4)], True, None, (48, 1)
        yield v + "duplicate fields: first wins", version, [*V4_FIELDS, (1, 8), (8, 4), (4, 1)], False, None, (48, 1)
        yield v + "own sampling interval", version, [*V4_FIELDS, (34, 4)], False, {1: 10}, (48, 1)
        yield v + "3-byte sampling interval", version, [*V4_FIELDS, (34, 3)], False, None, (48, 1)
        yield v + "packet interval and space", version, [*V4_FIELDS, (305, 4), (306, 4)], False, None, (48, 1)
        yield v + "packet interval alone", version, [*V4_FIELDS, (305, 2)], False, None, (48, 1)
        yield v + "sampler ids", version, [*V4_FIELDS, (48, 1)], False, {0: 6, 1: 10, 2: 0, 3: 2**32 - 1}, (48, 1)
        yield v + "sampler ids, none announced", version, [*V4_FIELDS, (48, 1)], False, None, (48, 1)
        yield v + "2-byte sampler ids", version, [*V6_FIELDS, (48, 2)], True, {3: 77, 9: 5}, (48, 2)
        yield v + "selector ids", version, [*V4_FIELDS, (302, 8)], False, {1: 100, 2**63 + 1: 3}, (302, 8)
        yield v + "sampler id before selector id", version, [*V4_FIELDS, (302, 4), (48, 1)], False, {1: 7, 2: 8}, (48, 1)
        yield v + "ids beside own interval", version, [*V4_FIELDS, (48, 1), (34, 2)], False, {1: 7}, (48, 1)
        for width in (1, 2, 4):
            yield v + f"{width}-byte forwarding status", version, [*V4_FIELDS, (89, width)], False, None, (48, 1)
        yield v + "ipv6 forwarding status", version, [(89, 1), *V6_FIELDS], True, None, (48, 1)
        yield v + "8-byte forwarding status ignored", version, [*V4_FIELDS, (89, 8)], False, None, (48, 1)
        yield v + "forwarding status, no address pair", version, [(8, 4), (89, 1), (1, 4)], False, None, (48, 1)
    yield "v10 enterprise fields are skipped", 10, [(0x8000 | 1, 4), *V4_FIELDS, (0x8000 | 8, 4)], False, None, (48, 1)


HAND_MADE = {name: rest for name, *rest in hand_made()}


def delivered_rows(fields: Sequence[Field], records: Sequence[dict[int, int | bytes]]) -> int:
    """How many records should come out as flows: all, unless the template's forwardingStatus drops some."""
    width = dict(fields).get(89)
    if width not in (1, 2, 4):
        return len(records)
    return sum(((int(r[89]) % (1 << (8 * width))) & 0xFF) >> 6 < 2 for r in records)


@pytest.mark.parametrize("name", sorted(HAND_MADE))
def test_hand_made_template_decodes_identically(name: str, compiled_conversions: list[bool]) -> None:
    version, fields, v6, rates, sampler_field = HAND_MADE[name]
    records = rows(40, seed=len(name), v6=v6)
    packets = exchange(version, fields, records, sampler_rates=rates, sampler_field=sampler_field)
    together, first, rest = layout(packets, gap=5), layout(packets[:1]), layout(packets[1:], gap=3)
    for kwargs in ({}, {"fallback_sampling": 64}, {"default_sampling": {EXPORTER: 2**63 + 5}}):
        assert_same([together], **kwargs)
        flows = assert_same([first, rest], **kwargs)[1]
        has_pair = not name.endswith("no address pair")
        assert flows.size == (delivered_rows(fields, records) if has_pair else 0)
    assert compiled_conversions and all(compiled_conversions)


@pytest.mark.parametrize("version", [9, 10])
@pytest.mark.parametrize("width", [1, 4])
def test_forwarding_status_leaves_out_what_the_network_dropped(
    version: int, width: int, compiled_conversions: list[bool]
) -> None:
    """Records whose status is dropped or consumed are no flows, and are counted, and come out apart (as flows of
    their own, for the closed loop's evidence); the status sits in the low byte.

    Destinations name the status each record carries: .64 forwarded, .0 unknown, .66 forwarded with a reason, .128
    dropped, .137 dropped for a bad TTL, .192 consumed. A 4-byte field holds the same unsigned32 values, so its
    low byte decides: 0x80000000 has upper bits only (unknown, kept) and 0x80000040 is forwarded.
    """
    statuses = [0x40, 0x00, 0x42, 0x80, 0x89, 0xC0]
    wide = [(0x8000_0000, 1), (0x8000_0040, 2), (0x0000_0080, 3)] if width == 4 else []
    fields = [*V4_FIELDS, (89, width)]
    base: dict[int, int | bytes] = {8: SRC4, 4: 17, 7: 53, 11: 4444, 6: 0, 1: 1000, 2: 2}
    records = [{**base, 12: DST4[:-1] + bytes([s]), 89: s} for s in statuses]
    records += [{**base, 12: bytes([203, 0, 114, last]), 89: value} for value, last in wide]
    compiled, reference = decoders()
    gone_by = []
    for decoder in (compiled, reference):
        flows = decode(decoder, layout(exchange(version, fields, records, sampler_rates={0: 10}, sampler_field=(48, 1))))
        destinations = [dst for _, dst, *_ in flows_as_tuples(flows)]
        kept_wide = ["203.0.114.1", "203.0.114.2"] if width == 4 else []
        assert destinations == ["203.0.113.64", "203.0.113.0", "203.0.113.66", *kept_wide]
        assert (flows["bytes"] == 10_000).all() and (flows["packets"] == 20).all()
        gone = decoder.take_not_delivered()
        dropped_wide = ["203.0.114.3"] if width == 4 else []
        assert [dst for _, dst, *_ in flows_as_tuples(gone)] == ["203.0.113.128", "203.0.113.137", "203.0.113.192",
                                                                 *dropped_wide]
        assert (gone["bytes"] == 10_000).all() and (gone["packets"] == 20).all() and (gone["sampling"] == 10).all()
        assert decoder.take_not_delivered().size == 0, "taken once"
        assert decoder.stats["records"] == len(records)
        assert decoder.stats["records_dropped_by_network"] == 3 + (1 if width == 4 else 0)
        gone_by.append(gone)
    assert_same_flows(*gone_by)
    assert list(compiled.stats.items()) == list(reference.stats.items())
    assert compiled_conversions == [True]


def test_templates_without_forwarding_status_count_nothing_dropped() -> None:
    packets = exchange(10, V4_FIELDS, rows(12, seed=4))
    flows = assert_same([layout(packets)])[0]
    compiled, _ = decoders()
    decode(compiled, layout(packets))
    assert flows.size == 12 and "records_dropped_by_network" not in compiled.stats
    assert compiled.take_not_delivered().size == 0


@pytest.mark.parametrize("fmt", ["netflow9", "ipfix"])
def test_what_the_generator_exports_as_dropped_comes_out_apart_on_both_paths(fmt: str) -> None:
    """The encoder the emulated data plane exports with: forwarded and dropped records of one exporter, IPv4 and
    IPv6, interleaved in one batch and split over two; both paths give the same two sets of flows."""
    encoder = encoder_for(fmt, sampling=100, forwarding_status=True)
    forwarded, dropped = mixed_records(30, seed=1), mixed_records(20, seed=2)
    packets = [*encoder.encode(forwarded), *encoder.encode(dropped, DROPPED_BY_ACL),
               *encoder.encode(forwarded[:5], DROPPED_BY_POLICER)]
    compiled, reference = decoders()
    for batch in (layout(packets, gap=3), layout(packets[:2]), layout(packets[2:], gap=1)):
        assert_same_flows(decode(compiled, batch), decode(reference, batch))
        assert_same_flows(compiled.take_not_delivered(), reference.take_not_delivered())
    fresh = PacketDecoder()
    flows = decode(fresh, layout(packets))
    gone = fresh.take_not_delivered()
    assert flows.size == 30 and gone.size == 25
    assert int(gone["packets"].sum()) == 100 * (sum(r.packets for r in dropped) + sum(r.packets for r in forwarded[:5]))
    assert sorted(flows_as_tuples(gone)) == sorted(
        (str(ip_address(r.src)), str(ip_address(r.dst)), r.proto, r.sport, r.dport, r.tcp_flags, int(r.frag),
         100 * r.bytes, 100 * r.packets, 100) for r in (*dropped, *forwarded[:5]))



def test_fields_of_hand_made_records() -> None:
    """What the C path gives, spelled out: counters times the sampler's rate, flags' low byte, frag, mapped v4.

    Sampler 5 announces rate 0, which is no rate: its records take the domain's default, the first rate announced.
    """
    fields = [*V4_FIELDS[:5], (6, 2), (1, 3), (86, 5), (88, 2), (48, 1)]
    row: dict[int, int | bytes] = {8: SRC4, 12: DST4, 4: 6, 7: 1234, 11: 80, 6: 0x0112, 1: 70000, 86: 3, 88: 185}
    packets = exchange(10, fields, [{**row, 48: 2}, {**row, 48: 5, 88: 0x2000}], sampler_rates={2: 10, 5: 0})
    flows = assert_same([layout(packets)])[0]
    assert flows_as_tuples(flows) == [
        ("198.51.100.7", "203.0.113.10", 6, 1234, 80, 0x12, 1, 700000, 30, 10),
        ("198.51.100.7", "203.0.113.10", 6, 1234, 80, 0x12, 0, 700000, 30, 10),
    ]


def test_rates_wrap_like_numpy() -> None:
    """A 2**32 rate is stored as 0 in the 32-bit sampling column; counters times huge rates wrap around 2**64."""
    fields = [*V4_FIELDS[:6], (1, 8), (2, 8), (305, 4), (306, 4)]
    wide = {1: 2**64 - 1, 2: 2**40 + 3, 305: 1, 306: 2**32 - 1}
    flows = assert_same([layout(exchange(9, fields, rows(3, seed=1, extra=wide)))])[0]
    assert flows["sampling"].tolist() == [0, 0, 0]
    assert flows["bytes"].tolist() == [(2**64 - 1) * 2**32 % 2**64] * 3


# --- generator output --------------------------------------------------------------------------------------------


def generated() -> Iterator[tuple[str, list[bytes], int]]:
    for index, name in enumerate(sorted(SCENARIOS)):
        for prefix in ("203.0.113.0/24", "2001:db8:5::/48"):
            for fmt, sampling in (("netflow9", 100), ("ipfix", 1), ("ipfix", 4096), ("netflow9", 1)):
                scenario = Scenario(name, prefix=prefix, attack_start=0, attack_end=10, seed=index)
                records = scenario.records(1.0, 400, np.random.default_rng(index))
                packets = encoder_for(fmt, sampling=sampling).encode(records)
                yield f"{fmt} {sampling} {name} {prefix}", packets, records.size


GENERATED = {name: packets for name, packets, _ in generated()}
GENERATED_RECORDS = {name: count for name, _, count in generated()}


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generator_output_decodes_identically(name: str, compiled_conversions: list[bool]) -> None:
    packets = GENERATED[name]
    flows = assert_same([layout(packets)])[0]
    assert flows.size == GENERATED_RECORDS[name] > 0
    assert_same([layout(packets[:1]), layout(packets[1:], gap=7)])
    assert compiled_conversions and all(compiled_conversions)


def test_fragments_and_ipv6_are_covered() -> None:
    flows = assert_same([layout(GENERATED["ipfix 4096 fragments 2001:db8:5::/48"])])[0]
    assert flows["frag"].any() and flows["ipv6"].all() and (flows["sampling"] == 4096).all()
    flows = assert_same([layout(GENERATED["netflow9 100 fragments 203.0.113.0/24"])])[0]
    assert flows["frag"].any() and not flows["ipv6"].any() and (flows["sampling"] == 100).all()


def test_benchmark_sized_batch_decodes_identically() -> None:
    pool = [packet for name in sorted(GENERATED) for packet in GENERATED[name]]
    packets = [pool[(7 * i) % len(pool)] for i in range(2000)]
    assert_same([layout(packets), layout(packets[::-1])])


# --- edges of the buffer -----------------------------------------------------------------------------------------


def test_datagram_ending_where_memory_ends() -> None:
    packets = exchange(10, [*V6_FIELDS, (85, 3)], rows(5, seed=3, v6=True))
    reference = assert_same([layout(packets)])[0]
    last, _region = guarded(packets[-1])
    compiled = PacketDecoder()
    decode(compiled, layout(packets[:-1]))
    flows = compiled.decode_batch(last, [0], [last.size], [EXPORTER])
    assert flows.tobytes() == reference[-flows.size :].tobytes() and flows.size == 2


def test_records_outside_the_buffer_are_refused() -> None:
    """The C code checks every run and field against the buffer and the record; numpy decides what to do then."""
    fields = [*V4_FIELDS, (48, 1)]
    template = Template(300, tuple(FieldSpec(e, n) for e, n in fields), False, 10)
    stride = template.record_length
    u8 = np.frombuffer(b"".join(encode_record(fields, row) for row in rows(4, seed=2)), dtype=np.uint8)

    def convert(starts: list[int], counts: list[int], within: Template = template) -> FlowArray | None:
        converted = to_flows_compiled(within, u8, np.array(starts, np.int64), np.array(counts, np.int64), {1: 3}, 1)
        return None if converted is None else converted[0]

    whole = convert([0], [4])
    assert whole is not None and whole.size == 4
    pieces = convert([0, stride, 3 * stride], [1, 2, 1])
    assert pieces is not None and pieces.tobytes() == whole.tobytes()
    assert convert([u8.size], [0]) is not None
    for starts, counts in (([0], [5]), ([1], [4]), ([-1], [1]), ([u8.size + 1], [0]), ([0], [-1]), ([0], [2**62]),
                           ([2**62], [1]), ([0, 2 * stride], [2, 3])):  # fmt: skip
        assert convert(starts, counts) is None, (starts, counts)
    for bad_slot, bad in ((0, (stride - 3, 4)), (4, (0, 9)), (4, (0, 0)), (9, (-2, 2)), (7, (0, 3)), (2, (0, 8))):
        broken = Template(300, template.specs, False, 10)
        broken.field_map = broken.field_map.copy()
        broken.field_map[bad_slot] = bad
        assert convert([0], [4], broken) is None, (bad_slot, bad)


def test_no_address_pair_gives_nothing_but_counts_records() -> None:
    packets = exchange(9, [(8, 4), (1, 4)], rows(6, seed=5))
    compiled, reference = decoders()
    assert decode(compiled, layout(packets)).size == decode(reference, layout(packets)).size == 0
    assert compiled.stats["records"] == reference.stats["records"] == 6


# --- dispatch and fallback ---------------------------------------------------------------------------------------


def test_flush_does_not_gather_when_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    def gather(*args: object) -> None:
        raise AssertionError("records were gathered although the compiled converter is available")

    monkeypatch.setattr(templated, "gather_view", gather)
    packets = GENERATED["ipfix 4096 dns_amplification 2001:db8:5::/48"]
    decoder = PacketDecoder()
    assert decode(decoder, layout(packets)).size == 400
    assert decoder.stats["malformed"] == 0 and decoder.stats["decoder_errors"] == 0


def test_numpy_path_takes_over_when_the_compiled_one_cannot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(templates, "_compiled_converter", lambda: None)
    packets = GENERATED["netflow9 100 syn_flood 203.0.113.0/24"]
    compiled, reference = decoders()
    flows, expected = decode(compiled, layout(packets)), decode(reference, layout(packets))
    assert flows.size == 400 and flows.tobytes() == expected.tobytes()
    assert compiled.stats == reference.stats


def test_variable_length_templates_stay_on_numpy(compiled_conversions: list[bool]) -> None:
    fields = [(8, 4), (12, 4), (1, 3), (82, 65535), (4, 1)]
    record = SRC4 + DST4 + (70000).to_bytes(3, "big") + b"\x03ge0" + b"\x11"
    packet = ipfix_message([template_set(10, 302, fields), a_set(302, record * 3)])
    flows = assert_same([layout([packet])])[0]
    assert flows.size == 3 and not compiled_conversions


# --- fuzzing -----------------------------------------------------------------------------------------------------

PALETTE: dict[int, tuple[int, ...]] = {
    8: (4,), 12: (4,), 27: (16,), 28: (16,), 1: (1, 2, 3, 4, 5, 6, 7, 8, 16), 2: (1, 2, 3, 4, 5, 6, 7, 8),
    85: (1, 3, 4, 8), 86: (2, 5, 8), 4: (1, 2), 6: (1, 2, 3), 7: (2, 4), 11: (2,), 88: (2, 1), 197: (1, 2),
    34: (1, 2, 3, 4, 5), 305: (1, 2, 4), 306: (1, 3, 4), 48: (1, 2, 3, 4), 302: (1, 2, 4, 8), 50: (4,), 99: (4,),
    89: (1, 2, 3, 4, 8), 0x8000 | 4: (1,), 0x8000 | 89: (1,),
}  # fmt: skip
ADDRESSES = [[(8, 4), (12, 4)], [(27, 16), (28, 16)], []]


@st.composite
def random_exchanges(draw: st.DrawFn) -> list[bytes]:
    """A random template (mostly with an address pair), sampler rates, and records of small or random values."""
    version = draw(st.sampled_from([9, 10]))
    elements = [e for e in PALETTE if version == 10 or not e & 0x8000]
    chosen = draw(st.lists(st.sampled_from(elements), max_size=10))
    fields = [(e, draw(st.sampled_from(PALETTE[e]))) for e in chosen]
    fields += draw(st.sampled_from(ADDRESSES))
    fields = draw(st.permutations(fields))
    if not fields:
        fields = [(4, 1)]
    value = st.one_of(st.integers(0, 3), st.integers(0, 2**128 - 1))
    records = [{e & 0x7FFF: draw(value) for e, _ in fields} for _ in range(draw(st.integers(0, 12)))]
    rates = draw(st.one_of(st.none(), st.dictionaries(st.integers(0, 3), st.sampled_from([0, 1, 5, 2**32 - 1]))))
    sampler_field = draw(st.sampled_from([(48, 1), (302, 4), (302, 8)]))
    rate_field = draw(st.sampled_from([(34, 4), (50, 2)]))
    return exchange(version, fields, records, draw(st.integers(1, 5)), rates, sampler_field, rate_field)


@FUZZ
@given(random_exchanges(), st.integers(0, 5))
def test_random_templates_decode_identically(packets: list[bytes], gap: int) -> None:
    assert_same([layout(packets, gap)])
    assert_same([layout(packets[:1]), layout(packets[1:], gap)])


SMALL_POOL = [packets for packets in GENERATED.values()][::9] + [
    exchange(version, fields, rows(6, seed=1, v6=v6), 2, rates, sampler)
    for version, fields, v6, rates, sampler in HAND_MADE.values()
]
MUTATION = st.tuples(st.integers(0, 4), st.integers(0, 10**6), st.sampled_from([0, 1, 4, 255, 256, 300, 65535]))


@FUZZ
@given(st.sampled_from(SMALL_POOL), st.integers(0, 10**6), st.lists(MUTATION, min_size=1, max_size=5))
def test_mutated_datagrams_decode_identically(
    packets: list[bytes], which: int, mutations: list[tuple[int, int, int]]
) -> None:
    """The templates arrive intact, then one datagram of the exchange is mutated (templates included)."""
    index = which % len(packets)
    mutated = [*packets[:index], mutate(packets[index], mutations, word=2), *packets[index + 1 :]]
    assert_same([layout(packets[:1]), layout(mutated, gap=2)])
    assert_same([layout(mutated)])


@FUZZ
@given(st.lists(
    st.tuples(st.sampled_from(range(len(SMALL_POOL))), st.integers(0, 10**6), st.integers(0, 9)),
    min_size=1, max_size=6,
))  # fmt: skip
def test_datagrams_at_scattered_offsets_read_only_their_own_bytes(choices: list[tuple[int, int, int]]) -> None:
    """Datagrams, maybe cut short by their length, followed by the rest of them or another valid datagram.

    The scattered batch decodes as the same (cut) datagrams laid tightly, the last one ending where memory does.
    """
    rng = random.Random(len(choices))
    warm = [SMALL_POOL[pool][0] for pool, _, _ in choices]
    buffer, offsets, lengths, alone = bytearray(rng.randbytes(rng.randrange(8))), [], [], []
    for pool, cut, pad in choices:
        packets = SMALL_POOL[pool]
        packet = packets[1 + cut % (len(packets) - 1)] if len(packets) > 1 else packets[0]
        length = len(packet) if cut % 3 else cut % (len(packet) + 1)
        offsets.append(len(buffer))
        lengths.append(length)
        alone.append(packet[:length])
        follower = packet[length:] if length < len(packet) else SMALL_POOL[cut % len(SMALL_POOL)][-1]
        buffer += packet + (b"" if length < len(packet) else follower) + rng.randbytes(pad)
    scattered = (np.frombuffer(bytes(buffer), dtype=np.uint8), np.array(offsets, np.int64), np.array(lengths, np.int64))
    flows = assert_same([layout(warm), scattered])[1]
    tight = assert_same([layout(warm), layout(alone)])[1]
    assert flows.tobytes() == tight.tobytes()
    edge, _region = guarded(b"".join(alone))
    compiled = PacketDecoder()
    decode(compiled, layout(warm))
    starts = np.cumsum([0, *(len(p) for p in alone[:-1])]).astype(np.int64)
    guarded_flows = compiled.decode_batch(edge, starts, [len(p) for p in alone], [EXPORTER] * len(alone))
    assert guarded_flows.tobytes() == flows.tobytes()


def test_same_template_ids_from_two_exporters_in_one_batch() -> None:
    """Groups are per template object: two exporters' templates 256 (v9 and IPFIX layouts) stay apart."""
    first = NetFlow9Encoder(sampling=10).encode([FlowRecord("198.51.100.1", "203.0.113.1", 6, 1, 2, 2, False, 9, 1)])
    second = IpfixEncoder(sampling=3).encode([FlowRecord("2001:db8::1", "2001:db8:5::1", 17, 3, 4, 0, True, 7, 2)])
    u8, offsets, lengths = layout([*first, *second, *first, *second])
    exporters = ["192.0.2.1", "192.0.2.2"] * 2
    compiled, reference = decoders()
    flows = compiled.decode_batch(u8, offsets, lengths, exporters)
    expected = reference.decode_batch(u8, offsets, lengths, exporters)
    assert_same_flows(flows, expected)
    assert compiled.stats == reference.stats and flows.size == 4
