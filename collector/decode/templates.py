"""Template compilation for NetFlow v9 and IPFIX: a template becomes a numpy dtype once, then data is a view.

A template is compiled when it arrives (rare) so that the data path (every packet) is one gather plus a handful of
column conversions per batch. Fields Sluice does not use become padding; integer fields of widths numpy lacks
(reduced-size encoding, RFC 7011 section 6.2) become byte columns converted on the fly. Variable-length IPFIX
fields cannot live in a fixed dtype: such templates are compacted record by record into the fixed layout of their
fixed-length fields (a slow path, rare in flow export).

Where the compiled helper (`collector.native`, `templated.c`) is available, `to_flows_compiled` does the work of
`sampling_of` and `to_flows` in one C call that reads records straight from the receive buffer, so the records of a
batch are never gathered; the numpy functions stay as the fallback and as the reference the C code is tested
against (same records, same order).

Records an exporter marks as dropped or consumed by the network (forwardingStatus, element 89) never reached their
destination: `not_delivered` finds them and the decoder leaves them out of its flows (and counts them), so they never
count as traffic toward a target. They are kept apart instead, as flows of their own: the collector's evidence of
what the network is still dropping toward each host (the closed loop reads it). Templates without the element (most
exporters) are unaffected.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

from collector import native
from collector.records import FLOW_DTYPE, FlowArray, be_bytes_to_u64, empty_flows, v4_to_lo

VARIABLE_LENGTH = 65535

# Information element id -> (column name, accepted widths). Shared numbering between NetFlow v9 and IPFIX.
KNOWN_FIELDS: dict[int, tuple[str, tuple[int, ...]]] = {
    1: ("bytes", (1, 2, 3, 4, 5, 6, 7, 8)),
    2: ("packets", (1, 2, 3, 4, 5, 6, 7, 8)),
    85: ("bytes_total", (1, 2, 3, 4, 5, 6, 7, 8)),
    86: ("packets_total", (1, 2, 3, 4, 5, 6, 7, 8)),
    4: ("proto", (1,)),
    6: ("tcp_flags", (1, 2)),
    7: ("sport", (2,)),
    11: ("dport", (2,)),
    8: ("src4", (4,)),
    12: ("dst4", (4,)),
    27: ("src6", (16,)),
    28: ("dst6", (16,)),
    34: ("sampling_interval", (1, 2, 3, 4)),
    50: ("sampler_random_interval", (1, 2, 3, 4)),
    305: ("sampling_packet_interval", (1, 2, 3, 4)),
    306: ("sampling_packet_space", (1, 2, 3, 4)),
    48: ("sampler_id", (1, 2, 4)),
    302: ("selector_id", (1, 2, 4, 8)),
    88: ("fragment_offset", (2,)),
    197: ("fragment_flags", (1,)),
    89: ("forwarding_status", (1, 2, 3, 4)),
}

# IPFIX fragmentFlags (RFC 5102): bit 2 counted from the most significant bit is "more fragments".
IPFIX_MORE_FRAGMENTS = 0x20

# forwardingStatus (IPFIX element 89, NetFlow v9 FORWARDING_STATUS): the IANA registry (revision 2, 2018, after RFC
# 7270 and its erratum 5262) types it unsigned32 with reduced-size encoding, "exported as unsigned8", and gives the
# structure to the least significant byte: its top two bits are the status (00 unknown, 01 forwarded, 10 dropped,
# 11 consumed), the low six a reason code. So whatever the width (1 byte usually, 4 from some exporters), the status
# is (value & 0xFF) >> 6 of the big-endian integer; the upper bytes of a wider encoding have no meaning yet. An
# exporter that put the byte first in a 4-byte field (older Wireshark reads it there) reads as "unknown" here, which
# is counted as today: a misreading can only leave traffic counted, never hide it.
FORWARDING_STATUS_SHIFT = 6
FORWARDING_STATUS_DROPPED = 2
FORWARDING_STATUS_CONSUMED = 3

# Slots of the field map `sluice_tpl_convert` takes, in its order; each slot lists the columns that may fill it, the
# first one a template has wins (the fallbacks of `to_flows` and `sampling_of`).
NATIVE_FIELDS: tuple[tuple[str, ...], ...] = (
    ("src4",), ("dst4",), ("src6",), ("dst6",), ("bytes", "bytes_total"), ("packets", "packets_total"), ("proto",),
    ("tcp_flags",), ("sport",), ("dport",), ("fragment_offset",), ("fragment_flags",), ("sampling_interval",),
    ("sampling_packet_interval",), ("sampling_packet_space",), ("sampler_id", "selector_id"),
    ("forwarding_status",),
)  # fmt: skip
UINT64_MAX = 2**64 - 1


@dataclass(frozen=True)
class FieldSpec:
    """One (information element, length, enterprise) entry of a template; enterprise 0 is IANA."""

    element: int
    length: int
    enterprise: int = 0
    scope: bool = False


@dataclass
class Template:
    """A compiled data or options template: its dtype and where each known column sits."""

    template_id: int
    specs: tuple[FieldSpec, ...]
    is_options: bool
    version: int
    dtype: np.dtype = field(init=False)
    fixed: bool = field(init=False)
    odd_width: dict[str, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.fixed = all(s.length != VARIABLE_LENGTH for s in self.specs)
        names: list[str] = []
        formats: list[object] = []
        offsets: list[int] = []
        offset = 0
        for spec in self.specs:
            if spec.length == VARIABLE_LENGTH:
                continue
            column = self._column_for(spec)
            if column is not None and column not in names:
                self._add_column(column, spec.length, offset, names, formats, offsets)
            offset += spec.length
        self.dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": max(offset, 1)})
        self.record_length = offset
        self.field_map = self._field_map()

    def _column_for(self, spec: FieldSpec) -> str | None:
        """The column name for a field Sluice reads; v9 scope fields use their own numbering and are skipped."""
        if spec.enterprise or (spec.scope and self.version == 9):
            return None
        known = KNOWN_FIELDS.get(spec.element)
        if known is None or spec.length not in known[1]:
            return None
        return known[0]

    def _add_column(
        self, column: str, length: int, offset: int, names: list[str], formats: list[object], offsets: list[int]
    ) -> None:
        if column in ("src6", "dst6"):
            names += [f"{column}_hi", f"{column}_lo"]
            formats += [">u8", ">u8"]
            offsets += [offset, offset + 8]
            return
        names.append(column)
        offsets.append(offset)
        if length in (1, 2, 4, 8):
            formats.append(f">u{length}")
        else:
            formats.append(("u1", (length,)))
            self.odd_width[column] = length

    def _field_map(self) -> npt.NDArray[np.int64]:
        """(offset, width) of the column filling each `NATIVE_FIELDS` slot, (-1, 0) where the template has none."""
        fields: Mapping[str, Any] = self.dtype.fields or {}
        slots = np.array([(-1, 0)] * len(NATIVE_FIELDS), dtype=np.int64)
        for slot, candidates in enumerate(NATIVE_FIELDS):
            for column in candidates:
                if column in fields:
                    column_type, offset = fields[column][:2]
                    slots[slot] = (offset, column_type.itemsize)
                    break
                if f"{column}_hi" in fields:
                    slots[slot] = (fields[f"{column}_hi"][1], 16)
                    break
        return slots

    def has(self, column: str) -> bool:
        """Whether records of this template carry `column`."""
        names = self.dtype.names or ()
        return column in names or f"{column}_hi" in names

    def has_address_pair(self) -> bool:
        """Whether records of this template name a source and a destination (records without them are no flows)."""
        return (self.has("src6") and self.has("dst6")) or (self.has("src4") and self.has("dst4"))

    def column(self, records: np.ndarray, column: str) -> npt.NDArray[np.uint64]:
        """An integer column as uint64, whatever its encoded width."""
        if column in self.odd_width:
            return be_bytes_to_u64(records[column])
        return records[column].astype(np.uint64)

    def compact(self, body: bytes | memoryview) -> tuple[bytes, int]:
        """Copy the fixed-length fields of variable-length records into fixed records; returns (bytes, count)."""
        out = bytearray()
        pos, count, size = 0, 0, len(body)
        while pos < size:
            record = bytearray()
            for spec in self.specs:
                length = spec.length
                if length == VARIABLE_LENGTH:
                    if pos >= size:
                        return bytes(out), count
                    length = body[pos]
                    pos += 1
                    if length == 255:
                        if pos + 2 > size:
                            return bytes(out), count
                        length = int.from_bytes(body[pos : pos + 2], "big")
                        pos += 2
                    pos += length
                    continue
                if pos + length > size:
                    return bytes(out), count
                record += body[pos : pos + length]
                pos += length
            if pos > size:
                break
            out += record
            count += 1
        return bytes(out), count


def sampling_of(template: Template, records: np.ndarray, rates: dict[int, int], default: int) -> np.ndarray:
    """Per-record sampling rate: the record's own interval, else its sampler's announced rate, else `default`."""
    n = records.size
    rate = np.full(n, max(default, 1), dtype=np.uint64)
    if template.has("sampling_interval"):
        own = template.column(records, "sampling_interval")
        rate = np.where(own > 0, own, rate)
    elif template.has("sampling_packet_interval"):
        interval = template.column(records, "sampling_packet_interval")
        space = template.column(records, "sampling_packet_space") if template.has("sampling_packet_space") else 0
        own = (interval + space) // np.maximum(interval, 1)
        rate = np.where(interval > 0, own, rate)
    elif rates:
        for column in ("sampler_id", "selector_id"):
            if template.has(column):
                ids = template.column(records, column)
                for sampler, sampler_rate in rates.items():
                    rate[ids == sampler] = max(sampler_rate, 1)
                break
    return rate


def to_flows(template: Template, records: np.ndarray, sampling: np.ndarray) -> FlowArray:
    """Normalise template records into `FLOW_DTYPE`, multiplying counters by the sampling rate."""
    flows = empty_flows(records.size)
    if template.has("src6") and template.has("dst6"):
        flows["src_hi"], flows["src_lo"] = records["src6_hi"], records["src6_lo"]
        flows["dst_hi"], flows["dst_lo"] = records["dst6_hi"], records["dst6_lo"]
        flows["ipv6"] = 1
    elif template.has("src4") and template.has("dst4"):
        flows["src_lo"] = v4_to_lo(records["src4"])
        flows["dst_lo"] = v4_to_lo(records["dst4"])
    else:
        return empty_flows()
    for column, fallback in (("bytes", "bytes_total"), ("packets", "packets_total")):
        source = column if template.has(column) else fallback if template.has(fallback) else None
        if source is not None:
            flows[column] = template.column(records, source) * sampling
    flows["sampling"] = sampling
    for column in ("proto", "sport", "dport"):
        if template.has(column):
            flows[column] = records[column]
    if template.has("tcp_flags"):
        flows["tcp_flags"] = records["tcp_flags"] & 0xFF
    frag = np.zeros(records.size, dtype=bool)
    if template.has("fragment_offset"):
        frag |= (records["fragment_offset"] & 0x1FFF) != 0
    if template.has("fragment_flags"):
        frag |= (records["fragment_flags"] & IPFIX_MORE_FRAGMENTS) != 0
    flows["frag"] = frag
    return flows


def not_delivered(template: Template, records: np.ndarray) -> npt.NDArray[np.bool_] | None:
    """Which records the exporter says never reached their destination: forwardingStatus dropped or consumed.

    None when the template carries no forwarding status (most exporters): every record counts as delivered.
    """
    if not template.has("forwarding_status"):
        return None
    status = (template.column(records, "forwarding_status") & np.uint64(0xFF)) >> np.uint64(FORWARDING_STATUS_SHIFT)
    result: npt.NDArray[np.bool_] = status >= FORWARDING_STATUS_DROPPED
    return result


@cache
def _compiled_converter() -> Callable[..., int] | None:
    """`sluice_tpl_convert` (declared in sluice_native.h), or None (numpy path)."""
    return native.compiled_function("sluice_tpl_convert")


def to_flows_compiled(
    template: Template, u8: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], counts: npt.NDArray[np.int64],
    rates: Mapping[int, int], default: int,
) -> tuple[FlowArray, FlowArray] | None:
    """`to_flows(template, records, sampling_of(template, records, rates, default))` in one C call, split in two:
    the delivered flows, and the flows of the records `not_delivered` picks (empty for templates without a
    forwarding status), each in record order.

    `records` are the `counts[i]` records from each `starts[i]` of `u8`, read in place. None, with nothing done,
    where the helper is off, a rate does not fit 64 bits (the numpy path raises there) or a record does not lie
    inside `u8` (the numpy path decides what that means).
    """
    function = _compiled_converter()
    fallback = max(default, 1)
    announced = sorted((sampler, max(rate, 1)) for sampler, rate in rates.items())
    fits = all(0 <= sampler <= UINT64_MAX and rate <= UINT64_MAX for sampler, rate in announced)
    if function is None or fallback > UINT64_MAX or not fits:
        return None
    u8 = np.ascontiguousarray(u8, dtype=np.uint8)
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    sampler_ids = np.array([sampler for sampler, _ in announced], dtype=np.uint64)
    sampler_rates = np.array([rate for _, rate in announced], dtype=np.uint64)
    if counts.size and (int(counts.min()) < 0 or int(counts.max()) > u8.size):
        return None  # no such run fits in the buffer; bounding counts also keeps their sum from overflowing
    capacity = int(counts.sum())
    flows = np.empty(capacity, dtype=FLOW_DTYPE)
    gone = np.empty(capacity if template.has("forwarding_status") else 0, dtype=FLOW_DTYPE)
    gone_count = np.zeros(1, dtype=np.int64)
    field_map = template.field_map
    found = function(
        u8.ctypes.data, u8.size, starts.ctypes.data, counts.ctypes.data, starts.size, template.record_length,
        field_map.ctypes.data, sampler_ids.ctypes.data, sampler_rates.ctypes.data, sampler_ids.size, fallback,
        flows.ctypes.data, capacity, gone.ctypes.data, gone_count.ctypes.data,
    )  # fmt: skip
    if found < 0:
        return None
    return flows[:found], gone[: int(gone_count[0])]
