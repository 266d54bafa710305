"""Headers and set chains of many NetFlow v9 / IPFIX packets, walked with numpy for a whole batch at once.

Walking sets one packet at a time in Python costs several microseconds per datagram, more than converting its
records. Here step k reads the k-th set header of every packet that still has one, so the number of Python
iterations is the largest set count in the batch (two or three for real exporters), not the number of packets.
The walk repeats exactly the checks `TemplatedDecoder` makes packet by packet; a packet it cannot vouch for
(malformed, too many sets) is flagged so the caller hands it to the per-packet path, which decides.

`plan_batch` then checks the walked batch against the decoder's template state: when every template set and
options data set only repeats what is in place, the order of packets no longer matters and all data sets can be
queued in bulk; otherwise the decoder goes packet by packet.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from collector.decode.common import ByteArray, IntArray
from collector.decode.templates import Template

BoolArray = npt.NDArray[np.bool_]

DomainKey = tuple[str, int, int]  # exporter, observation domain / source id, version
TemplateKey = tuple[str, int, int, int]  # exporter, domain, version, template id
KnownSet = tuple[bytes, tuple[tuple[TemplateKey, Template], ...]]  # a template set's bytes, what it installed
KnownOptions = tuple[int, bytes, Template, int, bool]  # set id, bytes, template, records, announced sampling

MAX_SETS = 64
V9_HEADER_LENGTH = 20
IPFIX_HEADER_LENGTH = 16


@dataclass
class SetWalk:
    """Per packet: header fields and whether the walk vouches for it; per set (ordered by packet): where it lies.

    A packet neither `walked` nor `overflow` is malformed exactly where the per-packet path would raise; an
    `overflow` packet has more sets than the walk follows and may be valid.
    """

    version: IntArray
    sequence: IntArray
    domain: IntArray
    walked: BoolArray
    overflow: BoolArray
    set_owner: IntArray
    set_id: IntArray
    set_start: IntArray
    set_end: IntArray


def _be(u8: ByteArray, offsets: IntArray, width: int, valid: BoolArray) -> IntArray:
    """Big-endian unsigned integers of `width` bytes where `valid`, zero elsewhere, never reading outside `u8`."""
    safe = np.where(valid, offsets, 0)
    out = np.zeros(offsets.size, dtype=np.int64)
    for k in range(width):
        out = (out << 8) | u8[np.minimum(safe + k, u8.size - 1)]
    return np.where(valid, out, 0)


def walk_sets(u8: ByteArray, offsets: IntArray, lengths: IntArray) -> SetWalk:
    """Parse the headers and walk the set chains of the v9/IPFIX packets at `offsets` in `u8`."""
    ok = lengths >= 4
    version = _be(u8, offsets, 2, ok)
    v9 = version == 9
    ok &= np.where(v9, lengths >= V9_HEADER_LENGTH, lengths >= IPFIX_HEADER_LENGTH)
    message_length = _be(u8, offsets + 2, 2, ok & ~v9)
    ok &= v9 | ((message_length >= IPFIX_HEADER_LENGTH) & (message_length <= lengths))
    sequence = _be(u8, offsets + np.where(v9, 12, 8), 4, ok)
    domain = _be(u8, offsets + np.where(v9, 16, 12), 4, ok)
    cursor = offsets + np.where(v9, V9_HEADER_LENGTH, IPFIX_HEADER_LENGTH)
    end = offsets + np.where(v9, lengths, message_length)
    owners, ids, starts, ends = [], [], [], []
    for _ in range(MAX_SETS):
        active = ok & (cursor + 4 <= end)
        if not active.any():
            break
        set_id = _be(u8, cursor, 2, active)
        set_length = _be(u8, cursor + 2, 2, active)
        broken = active & ((set_length < 4) | (cursor + set_length > end))
        ok &= ~broken
        active &= ~broken
        index = np.flatnonzero(active)
        owners.append(index)
        ids.append(set_id[index])
        starts.append(cursor[index] + 4)
        ends.append(cursor[index] + set_length[index])
        cursor = np.where(active, cursor + set_length, cursor)
    overflow = ok & (cursor + 4 <= end)
    ok &= ~overflow
    if owners:
        owner = np.concatenate(owners)
        order = np.argsort(owner, kind="stable")
        set_owner, set_id = owner[order], np.concatenate(ids)[order]
        set_start, set_end = np.concatenate(starts)[order], np.concatenate(ends)[order]
    else:
        set_owner = set_id = set_start = set_end = np.empty(0, dtype=np.int64)
    return SetWalk(version, sequence, domain, ok, overflow, set_owner, set_id, set_start, set_end)


def sequence_gaps(
    domain: IntArray, version: IntArray, sequence: IntArray, records: IntArray, expected_first: dict[int, int]
) -> tuple[int, dict[int, int]]:
    """Count sequence gaps of packets in arrival order, per domain code; returns (gaps, next expected per domain).

    v9 sequence numbers count packets, IPFIX ones count data records (`records` -1: unknown, nothing expected
    next). `expected_first` holds what each domain expected before the batch (absent: nothing). The result maps
    each domain to what it expects after the batch, -1 for nothing.
    """
    if domain.size == 0:
        return 0, {}
    order = np.argsort(domain, kind="stable")
    dom, seq, rec = domain[order], sequence[order], records[order]
    following = np.where(
        version[order] == 9, (seq + 1) & 0xFFFF_FFFF, np.where(rec >= 0, (seq + rec) & 0xFFFF_FFFF, -1)
    )
    first = np.ones(dom.size, dtype=bool)
    first[1:] = dom[1:] != dom[:-1]
    expected = np.empty(dom.size, dtype=np.int64)
    expected[1:] = following[:-1]
    firsts = np.flatnonzero(first)
    expected[firsts] = [expected_first.get(code, -1) for code in dom[firsts].tolist()]
    gaps = int(((expected >= 0) & (seq != expected)).sum())
    last = np.ones(dom.size, dtype=bool)
    last[:-1] = first[1:]
    lasts = np.flatnonzero(last)
    return gaps, dict(zip(dom[lasts].tolist(), following[lasts].tolist(), strict=True))


@dataclass
class BatchPlan:
    """How a batch will be decoded: the data sets queued in bulk and what its repeated control sets count."""

    code: IntArray  # per packet: exporter, version and domain in one integer
    dkeys: dict[int, DomainKey]
    owner: IntArray  # per data set with a fixed-length template from here on: its packet
    start: IntArray
    end: IntArray
    template_index: IntArray
    record_length: IntArray
    templates: list[tuple[Template, DomainKey]]
    refreshes: int  # templates the batch's template sets refresh
    learned: int  # options data sets that announce sampling
    option_records: IntArray  # per packet: options data records, which IPFIX sequence numbers count too


def exporter_ids(exporters: Sequence[str]) -> tuple[list[str], IntArray]:
    """Distinct exporters and each packet's index among them; one exporter per batch is the common case."""
    if isinstance(exporters, list) and exporters and exporters.count(exporters[0]) == len(exporters):
        return [exporters[0]], np.zeros(len(exporters), dtype=np.int64)
    lookup: dict[str, int] = {}
    ids = np.fromiter((lookup.setdefault(e, len(lookup)) for e in exporters), dtype=np.int64, count=len(exporters))
    return list(lookup), ids


def plan_batch(
    buf: memoryview, walk: SetWalk, exporters: Sequence[str], domains: Collection[DomainKey],
    templates: Mapping[TemplateKey, Template], known_sets: Mapping[tuple[DomainKey, int], KnownSet],
    known_options: Mapping[DomainKey, KnownOptions],
) -> BatchPlan | None:
    """Check the batch against the decoder's state; None when some packet would change templates or sampling.

    `known_sets` and `known_options` are the template sets and options data each domain applied last: a
    batch that only repeats them (byte for byte, with the same templates in place) changes nothing.
    """
    if walk.overflow.any():
        return None
    names, ids = exporter_ids(exporters)
    if len(names) >= 1 << 13:
        return None
    walked = walk.walked
    code = (ids << 33) | ((walk.version == 10).astype(np.int64) << 32) | walk.domain
    dkeys: dict[int, DomainKey] = {}
    for c in np.unique(code[walked]).tolist():
        dkey = (names[c >> 33], c & 0xFFFF_FFFF, 10 if (c >> 32) & 1 else 9)
        if dkey not in domains:
            return None
        dkeys[c] = dkey
    keep = walked[walk.set_owner]
    owner, set_id = walk.set_owner[keep], walk.set_id[keep]
    start, end = walk.set_start[keep], walk.set_end[keep]
    set_code = code[owner]
    control = set_id < 256
    refreshes = 0
    for i in np.flatnonzero(control & (set_id <= 3)).tolist():
        dkey = dkeys[int(set_code[i])]
        refreshed = refreshed_templates(buf, templates, known_sets, dkey, int(set_id[i]), int(start[i]), int(end[i]))
        if refreshed is None:
            return None
        refreshes += refreshed
    data = np.flatnonzero(~control)
    unique_keys, inverse = np.unique((set_code[data] << 16) | set_id[data], return_inverse=True)
    record_lengths = np.zeros(unique_keys.size, dtype=np.int64)
    chosen: list[tuple[Template, DomainKey]] = []
    for j, key in enumerate(unique_keys.tolist()):
        dkey = dkeys[key >> 16]
        template = templates.get((*dkey, key & 0xFFFF))
        if template is None or (not template.is_options and (not template.fixed or not template.record_length)):
            return None
        record_lengths[j] = 0 if template.is_options else template.record_length
        chosen.append((template, dkey))
    record_length = record_lengths[inverse]
    options = data[record_length == 0]
    option_records = np.zeros(walked.size, dtype=np.int64)
    learned = 0
    for i in options.tolist():
        dkey = dkeys[int(set_code[i])]
        known = known_options.get(dkey)
        if known is None or known[0] != set_id[i] or known[2] is not templates.get((*dkey, int(set_id[i]))):
            return None
        if known[1] != bytes(buf[int(start[i]) : int(end[i])]):
            return None
        option_records[owner[i]] += known[3]
        learned += known[4]
    plain = record_length > 0
    sets = data[plain]
    return BatchPlan(
        code, dkeys, owner[sets], start[sets], end[sets], inverse[plain], record_length[plain], chosen,
        refreshes, learned, option_records,
    )


def refreshed_templates(
    buf: memoryview, templates: Mapping[TemplateKey, Template], known_sets: Mapping[tuple[DomainKey, int], KnownSet],
    dkey: DomainKey, set_id: int, start: int, end: int,
) -> int | None:
    """How many templates a set refreshes when it repeats, byte for byte, the one that installed them; else None."""
    known = known_sets.get((dkey, set_id))
    if known is None or known[0] != bytes(buf[start:end]):
        return None
    if not all(templates.get(k) is t for k, t in known[1]):
        return None
    return len(known[1])
