"""The flow record the generator speaks: one sampled packet (sFlow) or one flow record (NetFlow, IPFIX)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

RECORD_ARRAY_DTYPE = np.dtype(
    [
        ("src_hi", "<u8"),
        ("src_lo", "<u8"),
        ("dst_hi", "<u8"),
        ("dst_lo", "<u8"),
        ("bytes", "<u8"),
        ("packets", "<u8"),
        ("sport", "<u2"),
        ("dport", "<u2"),
        ("proto", "u1"),
        ("tcp_flags", "u1"),
        ("frag", "u1"),
        ("ipv6", "u1"),
    ]
)


@dataclass(frozen=True)
class FlowRecord:
    """A flow as an exporter would report it, before sampling is applied by the collector.

    A fragment (`frag`) is a non-first fragment: every format can say so, and it carries no ports.
    For sFlow a record is one sampled packet: `bytes` is its frame length and `packets` must be 1.
    """

    src: str
    dst: str
    proto: int
    sport: int = 0
    dport: int = 0
    tcp_flags: int = 0
    frag: bool = False
    bytes: int = 1000
    packets: int = 1

    @property
    def ipv6(self) -> bool:
        """Whether the record is IPv6 (both addresses are of one family)."""
        return ipaddress.ip_address(self.dst).version == 6


def _halves(address: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(address)
    value = int(ip) | 0xFFFF_0000_0000 if ip.version == 4 else int(ip)
    return value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF


def records_to_array(records: list[FlowRecord]) -> npt.NDArray[np.void]:
    """Records as a structured array (addresses split like the collector's) for vectorised encoding."""
    out = np.zeros(len(records), dtype=RECORD_ARRAY_DTYPE)
    if not records:
        return out
    src = [_halves(r.src) for r in records]
    dst = [_halves(r.dst) for r in records]
    out["src_hi"] = [s[0] for s in src]
    out["src_lo"] = [s[1] for s in src]
    out["dst_hi"] = [d[0] for d in dst]
    out["dst_lo"] = [d[1] for d in dst]
    out["bytes"] = [r.bytes for r in records]
    out["packets"] = [r.packets for r in records]
    out["sport"] = [r.sport for r in records]
    out["dport"] = [r.dport for r in records]
    out["proto"] = [r.proto for r in records]
    out["tcp_flags"] = [r.tcp_flags for r in records]
    out["frag"] = [r.frag for r in records]
    out["ipv6"] = [ipaddress.ip_address(r.dst).version == 6 for r in records]
    return out


def expected_tuples(
    records: list[FlowRecord], sampling: int, fmt: str
) -> list[tuple[str, str, int, int, int, int, int, int, int, int]]:
    """What a collector should decode from `records` sent as `fmt` at `sampling`, as `flows_as_tuples` gives it.

    NetFlow v5 carries neither IPv6 (such records are not sent) nor fragment flags.
    """
    out = []
    sflow = fmt == "sflow"
    for r in records:
        if fmt == "netflow5" and r.ipv6:
            continue
        packets = sampling if sflow else r.packets * sampling
        size = (r.bytes // max(r.packets, 1)) * sampling if sflow else r.bytes * sampling
        flags = r.tcp_flags if r.proto == 6 and not r.frag else 0
        out.append(
            (
                str(ipaddress.ip_address(r.src)),
                str(ipaddress.ip_address(r.dst)),
                r.proto,
                r.sport,
                r.dport,
                flags,
                int(r.frag) if fmt != "netflow5" else 0,
                size,
                packets,
                sampling,
            )
        )
    return out
