"""The one flow-record layout every decoder produces, and address helpers around it.

All formats are normalised into a numpy structured array of `FLOW_DTYPE` so that aggregation and detection never
care where a record came from. Addresses are 128-bit, split in two unsigned 64-bit halves; IPv4 addresses are
stored IPv4-mapped (::ffff:a.b.c.d) so that one prefix-matching path serves both families.
"""

from __future__ import annotations

import ipaddress

import numpy as np
import numpy.typing as npt

FLOW_DTYPE = np.dtype(
    [
        ("src_hi", "<u8"),
        ("src_lo", "<u8"),
        ("dst_hi", "<u8"),
        ("dst_lo", "<u8"),
        ("bytes", "<u8"),
        ("packets", "<u8"),
        ("sampling", "<u4"),
        ("sport", "<u2"),
        ("dport", "<u2"),
        ("proto", "u1"),
        ("tcp_flags", "u1"),
        ("frag", "u1"),
        ("ipv6", "u1"),
    ]
)

FlowArray = npt.NDArray[np.void]

# The same records as opaque 60-byte items. numpy copies structured records field by field (concatenate, boolean
# masks and takes run 20-40x slower than on plain bytes), so whole-record moves go through this view.
FLOW_BYTES = np.dtype((np.void, FLOW_DTYPE.itemsize))

# Low half of an IPv4-mapped IPv6 address, before the IPv4 address is OR-ed in.
V4_MAPPED = np.uint64(0xFFFF_0000_0000)

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_GRE = 47
PROTO_ICMPV6 = 58


def empty_flows(count: int = 0) -> FlowArray:
    """A zeroed flow array: decoders fill only the fields their format carries."""
    return np.zeros(count, dtype=FLOW_DTYPE)


def concat_flows(parts: list[FlowArray]) -> FlowArray:
    """One flow array from several, copied as raw records."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return empty_flows()
    return np.concatenate([np.ascontiguousarray(p).view(FLOW_BYTES) for p in parts]).view(FLOW_DTYPE)


def select_flows(flows: FlowArray, which: npt.NDArray[np.bool_] | npt.NDArray[np.integer]) -> FlowArray:
    """The records picked by a boolean mask or an index array, copied as raw records."""
    return np.ascontiguousarray(flows).view(FLOW_BYTES)[which].view(FLOW_DTYPE)


def address_halves(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[int, int]:
    """Split an address into the (hi, lo) 64-bit halves used by `FLOW_DTYPE`, mapping IPv4 into IPv6."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    value = int(ip) | 0xFFFF_0000_0000 if ip.version == 4 else int(ip)
    return value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF


def address_from_halves(hi: int, lo: int) -> str:
    """The textual address for (hi, lo) halves, IPv4 when the value is IPv4-mapped."""
    hi, lo = int(hi), int(lo)
    if hi == 0 and (lo >> 32) == 0xFFFF:
        return str(ipaddress.IPv4Address(lo & 0xFFFF_FFFF))
    return str(ipaddress.IPv6Address((hi << 64) | lo))


def v4_to_lo(addresses: npt.NDArray[np.integer]) -> npt.NDArray[np.uint64]:
    """IPv4 addresses (as unsigned integers) to the low half of their IPv4-mapped form."""
    return addresses.astype(np.uint64) | V4_MAPPED


def be_bytes_to_u64(columns: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    """Big-endian byte columns (n, k<=8) to integers, for field widths numpy has no dtype for (3, 5, 6, 7)."""
    out = np.zeros(columns.shape[0], dtype=np.uint64)
    for i in range(columns.shape[1]):
        out = (out << np.uint64(8)) | columns[:, i].astype(np.uint64)
    return out


def flows_as_tuples(flows: FlowArray) -> list[tuple[str, str, int, int, int, int, int, int, int, int]]:
    """Readable tuples (src, dst, proto, sport, dport, tcp_flags, frag, bytes, packets, sampling) for tests and logs."""
    return [
        (
            address_from_halves(r["src_hi"], r["src_lo"]),
            address_from_halves(r["dst_hi"], r["dst_lo"]),
            int(r["proto"]),
            int(r["sport"]),
            int(r["dport"]),
            int(r["tcp_flags"]),
            int(r["frag"]),
            int(r["bytes"]),
            int(r["packets"]),
            int(r["sampling"]),
        )
        for r in flows
    ]
