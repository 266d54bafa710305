"""Encoders from `FlowRecord`s to export datagrams: NetFlow v5, NetFlow v9, IPFIX (with templates) and sFlow v5.

The fixed-layout formats are built as numpy structured arrays and serialised with `tobytes()`, so benchmarks can
pre-encode millions of records quickly. Encoders are stateful like a real exporter: sequence numbers advance,
templates and sampling options are (re)sent every `template_every` packets.
"""

from __future__ import annotations

import struct
import time

import numpy as np
import numpy.typing as npt

from netsim.flowgen.records import FlowRecord, records_to_array

MTU_PAYLOAD = 1400
V4_FLAG = np.uint64(0xFFFF_0000_0000)
# forwardingStatus values (IPFIX element 89, IANA registry): the top two bits are the status (01 forwarded,
# 10 dropped), the low six a reason code (dropped: 2 ACL drop, 10 policer).
FORWARDED = 0x40
DROPPED_BY_ACL = 0x80 | 2
DROPPED_BY_POLICER = 0x80 | 10

NETFLOW5_RECORD = np.dtype(
    [
        ("srcaddr", ">u4"), ("dstaddr", ">u4"), ("nexthop", ">u4"), ("input", ">u2"), ("output", ">u2"),
        ("dPkts", ">u4"), ("dOctets", ">u4"), ("first", ">u4"), ("last", ">u4"), ("srcport", ">u2"),
        ("dstport", ">u2"), ("pad1", "u1"), ("tcp_flags", "u1"), ("prot", "u1"), ("tos", "u1"),
        ("src_as", ">u2"), ("dst_as", ">u2"), ("src_mask", "u1"), ("dst_mask", "u1"), ("pad2", ">u2"),
    ]
)  # fmt: skip


def _split_families(array: npt.NDArray[np.void]) -> tuple[npt.NDArray[np.void], npt.NDArray[np.void]]:
    return array[array["ipv6"] == 0], array[array["ipv6"] == 1]


def _chunks(array: npt.NDArray[np.void], size: int) -> list[npt.NDArray[np.void]]:
    return [array[i : i + size] for i in range(0, array.size, size)]


class NetFlow5Encoder:
    """NetFlow v5 (IPv4 only: IPv6 records are skipped, as a v5 exporter would), 30 records per packet."""

    def __init__(self, sampling: int = 1, engine_id: int = 0) -> None:
        self.sampling = sampling
        self.engine_id = engine_id
        self.sequence = 0

    def encode(self, records: list[FlowRecord] | npt.NDArray[np.void]) -> list[bytes]:
        """Datagrams carrying the IPv4 records in order."""
        array = records if isinstance(records, np.ndarray) else records_to_array(records)
        v4, _ = _split_families(array)
        packets = []
        now = int(time.time())
        for chunk in _chunks(v4, 30):
            body = np.zeros(chunk.size, dtype=NETFLOW5_RECORD)
            body["srcaddr"] = chunk["src_lo"] & np.uint64(0xFFFF_FFFF)
            body["dstaddr"] = chunk["dst_lo"] & np.uint64(0xFFFF_FFFF)
            body["dPkts"] = chunk["packets"]
            body["dOctets"] = chunk["bytes"]
            body["srcport"] = chunk["sport"]
            body["dstport"] = chunk["dport"]
            body["tcp_flags"] = chunk["tcp_flags"]
            body["prot"] = chunk["proto"]
            interval = (1 << 14 | self.sampling) if self.sampling > 1 else 0
            header = struct.pack(
                ">HHIIIIBBH", 5, chunk.size, 1000, now, 0, self.sequence, 0, self.engine_id, interval
            )
            self.sequence = (self.sequence + chunk.size) & 0xFFFF_FFFF
            packets.append(header + body.tobytes())
        return packets


class _TemplatedEncoder:
    """Shared machinery of v9 and IPFIX: template (re)sending, family split, record layout from a field list."""

    version = 0
    V4_FIELDS: tuple[tuple[int, int, str], ...] = ()
    V6_FIELDS: tuple[tuple[int, int, str], ...] = ()
    V4_TEMPLATE = 256
    V6_TEMPLATE = 257
    OPTIONS_TEMPLATE = 258

    def __init__(self, domain: int = 1, sampling: int = 1, template_every: int = 20, send_templates: bool = True,
                 forwarding_status: bool = False):
        """`forwarding_status` adds forwardingStatus (element 89, one byte) to both templates; every record then
        carries the status passed to `encode` (FORWARDED unless told otherwise)."""
        self.domain = domain
        self.sampling = sampling
        self.template_every = template_every
        self.send_templates = send_templates
        self.forwarding_status = forwarding_status
        self.sequence = 0
        self.packets_sent = 0

    def fields(self, v6: bool) -> tuple[tuple[int, int, str], ...]:
        """The (element, length, column) layout of the IPv4 or IPv6 data template."""
        base = self.V6_FIELDS if v6 else self.V4_FIELDS
        return (*base, (89, 1, "forwarding_status")) if self.forwarding_status else base

    @staticmethod
    def _dtype(fields: tuple[tuple[int, int, str], ...]) -> np.dtype:
        formats = {1: "u1", 2: ">u2", 4: ">u4", 8: ">u8"}
        names, fmts = [], []
        for _, length, name in fields:
            if length == 16:
                names += [f"{name}_hi", f"{name}_lo"]
                fmts += [">u8", ">u8"]
            else:
                names.append(name)
                fmts.append(formats[length])
        return np.dtype(list(zip(names, fmts, strict=True)))

    def _fill(self, chunk: npt.NDArray[np.void], dtype: np.dtype, status: int) -> bytes:
        body = np.zeros(chunk.size, dtype=dtype)
        names = dtype.names or ()
        for name in names:
            if name == "forwarding_status":
                body[name] = status
            elif name == "src4":
                body[name] = chunk["src_lo"] & np.uint64(0xFFFF_FFFF)
            elif name == "dst4":
                body[name] = chunk["dst_lo"] & np.uint64(0xFFFF_FFFF)
            elif name.startswith(("src6", "dst6")):
                body[name] = chunk[name.replace("6", "")]
            elif name == "frag_offset":
                body[name] = np.where(chunk["frag"] == 1, 185, 0)
            elif name == "frag_flags":
                body[name] = np.where(chunk["frag"] == 1, 0x20, 0)
            elif name == "sampler":
                body[name] = 1
            elif name in (chunk.dtype.names or ()):
                body[name] = chunk[name]
        return body.tobytes()

    def template_sets(self) -> list[bytes]:
        """The template and options template sets this exporter announces."""
        raise NotImplementedError

    def options_data(self) -> bytes:
        """The options data set announcing the sampling rate of sampler 1."""
        raise NotImplementedError

    def header(self, count: int, length: int, data_records: int) -> bytes:
        """The export packet header."""
        raise NotImplementedError

    def data_set(self, template_id: int, payload: bytes) -> bytes:
        """A data set with its header, padded to a 4-byte boundary."""
        padding = (-len(payload)) % 4
        return struct.pack(">HH", template_id, 4 + len(payload) + padding) + payload + b"\0" * padding

    def encode(self, records: list[FlowRecord] | npt.NDArray[np.void], status: int = FORWARDED) -> list[bytes]:
        """Datagrams carrying the records, with templates and sampling options up front and at each refresh.

        `status` is the forwardingStatus of every record, sent only when the encoder was made with
        `forwarding_status=True` (e.g. DROPPED_BY_ACL for traffic a filter discarded).
        """
        array = records if isinstance(records, np.ndarray) else records_to_array(records)
        packets = []
        v4, v6 = _split_families(array)
        for template_id, family, fields in ((self.V4_TEMPLATE, v4, self.fields(False)),
                                            (self.V6_TEMPLATE, v6, self.fields(True))):
            dtype = self._dtype(fields)
            per_packet = max(1, (MTU_PAYLOAD - 200) // dtype.itemsize)
            for chunk in _chunks(family, per_packet):
                sets, data_records = [], chunk.size
                if self.send_templates and self.packets_sent % self.template_every == 0:
                    sets += self.template_sets()
                    if self.sampling > 1:
                        sets.append(self.options_data())
                        data_records += 1
                sets.append(self.data_set(template_id, self._fill(chunk, dtype, status)))
                packets.append(self._packet(sets, data_records))
        return packets

    def _packet(self, sets: list[bytes], data_records: int) -> bytes:
        payload = b"".join(sets)
        self.packets_sent += 1
        packet = self.header(len(sets), len(payload), data_records) + payload
        return packet

    def template_packet(self) -> bytes:
        """A packet with only the templates (and sampling options), as exporters send on start-up."""
        sets = self.template_sets() + ([self.options_data()] if self.sampling > 1 else [])
        return self._packet(sets, 1 if self.sampling > 1 else 0)


class NetFlow9Encoder(_TemplatedEncoder):
    """NetFlow v9 with IPv4 and IPv6 templates and sampling announced by an options template (sampler id 1)."""

    version = 9
    V4_FIELDS = (
        (8, 4, "src4"), (12, 4, "dst4"), (7, 2, "sport"), (11, 2, "dport"), (4, 1, "proto"), (6, 1, "tcp_flags"),
        (1, 8, "bytes"), (2, 8, "packets"), (88, 2, "frag_offset"), (48, 1, "sampler"), (21, 4, "last"),
        (22, 4, "first"),
    )  # fmt: skip
    V6_FIELDS = (
        (27, 16, "src6"), (28, 16, "dst6"), (7, 2, "sport"), (11, 2, "dport"), (4, 1, "proto"),
        (6, 1, "tcp_flags"), (1, 8, "bytes"), (2, 8, "packets"), (88, 2, "frag_offset"), (48, 1, "sampler"),
    )  # fmt: skip

    def template_sets(self) -> list[bytes]:
        """One template flowset with both templates, one options template flowset."""
        body = b""
        for template_id, fields in ((self.V4_TEMPLATE, self.fields(False)), (self.V6_TEMPLATE, self.fields(True))):
            body += struct.pack(">HH", template_id, len(fields))
            body += b"".join(struct.pack(">HH", element, length) for element, length, _ in fields)
        templates = struct.pack(">HH", 0, 4 + len(body)) + body
        options = struct.pack(">HHH", self.OPTIONS_TEMPLATE, 4, 12) + struct.pack(">HH", 1, 4)
        options += struct.pack(">HHHHHH", 48, 1, 49, 1, 50, 4)
        options += b"\0" * ((-len(options)) % 4)
        return [templates, struct.pack(">HH", 1, 4 + len(options)) + options]

    def options_data(self) -> bytes:
        """Sampler 1, random mode, one in `sampling`."""
        return self.data_set(self.OPTIONS_TEMPLATE, struct.pack(">IBBI", 0, 1, 2, self.sampling))

    def header(self, count: int, length: int, data_records: int) -> bytes:
        """v9 header; the sequence counts export packets."""
        header = struct.pack(">HHIIII", 9, count, 1000, int(time.time()), self.sequence, self.domain)
        self.sequence = (self.sequence + 1) & 0xFFFF_FFFF
        return header


class IpfixEncoder(_TemplatedEncoder):
    """IPFIX with IPv4 and IPv6 templates and sampling announced per selector (RFC 5477 style options)."""

    version = 10
    V4_FIELDS = (
        (8, 4, "src4"), (12, 4, "dst4"), (7, 2, "sport"), (11, 2, "dport"), (4, 1, "proto"), (6, 2, "tcp_flags"),
        (1, 8, "bytes"), (2, 8, "packets"), (197, 1, "frag_flags"), (302, 4, "sampler"), (152, 8, "first"),
        (153, 8, "last"),
    )  # fmt: skip
    V6_FIELDS = (
        (27, 16, "src6"), (28, 16, "dst6"), (7, 2, "sport"), (11, 2, "dport"), (4, 1, "proto"),
        (6, 2, "tcp_flags"), (1, 8, "bytes"), (2, 8, "packets"), (197, 1, "frag_flags"), (302, 4, "sampler"),
    )  # fmt: skip

    def template_sets(self) -> list[bytes]:
        """One template set with both templates, one options template set (scope: selectorId)."""
        body = b""
        for template_id, fields in ((self.V4_TEMPLATE, self.fields(False)), (self.V6_TEMPLATE, self.fields(True))):
            body += struct.pack(">HH", template_id, len(fields))
            body += b"".join(struct.pack(">HH", element, length) for element, length, _ in fields)
        options = struct.pack(">HHH", self.OPTIONS_TEMPLATE, 3, 1) + struct.pack(">HHHHHH", 302, 4, 305, 4, 306, 4)
        return [struct.pack(">HH", 2, 4 + len(body)) + body, struct.pack(">HH", 3, 4 + len(options)) + options]

    def options_data(self) -> bytes:
        """Selector 1 samples 1 packet out of `sampling`."""
        return self.data_set(self.OPTIONS_TEMPLATE, struct.pack(">III", 1, 1, self.sampling - 1))

    def withdrawal_packet(self, template_id: int) -> bytes:
        """A message withdrawing one template (or all data templates with id 2)."""
        body = struct.pack(">HH", template_id, 0)
        return self._packet([struct.pack(">HH", 2, 4 + len(body)) + body], 0)

    def header(self, count: int, length: int, data_records: int) -> bytes:
        """IPFIX header; the sequence counts data records sent before this message."""
        header = struct.pack(">HHIII", 10, 16 + length, int(time.time()), self.sequence, self.domain)
        self.sequence = (self.sequence + data_records) & 0xFFFF_FFFF
        return header


class SflowEncoder:
    """sFlow v5 from an IPv4 agent: one flow sample per record, carrying the Ethernet/IP/L4 header it sampled."""

    def __init__(self, sampling: int = 1, agent: str = "127.0.0.1", sub_agent: int = 0, vlan: int | None = None):
        self.sampling = sampling
        self.agent = bytes(int(x) for x in agent.split("."))
        self.sub_agent = sub_agent
        self.vlan = vlan
        self.sequence = 0
        self.sample_sequence = 0

    def encode(self, records: list[FlowRecord] | npt.NDArray[np.void]) -> list[bytes]:
        """Datagrams of up to ~1400 bytes of flow samples."""
        array = records if isinstance(records, np.ndarray) else records_to_array(records)
        packets: list[bytes] = []
        samples: list[bytes] = []
        size = 0
        for row in array.tolist():
            sample = self._sample(row)
            if samples and size + len(sample) > MTU_PAYLOAD:
                packets.append(self._datagram(samples))
                samples, size = [], 0
            samples.append(sample)
            size += len(sample)
        if samples:
            packets.append(self._datagram(samples))
        return packets

    def _datagram(self, samples: list[bytes]) -> bytes:
        self.sequence += 1
        header = struct.pack(">II4sIIII", 5, 1, self.agent, self.sub_agent, self.sequence, 1000, len(samples))
        return header + b"".join(samples)

    def _sample(self, row: tuple) -> bytes:
        src_hi, src_lo, dst_hi, dst_lo, size, packets, sport, dport, proto, flags, frag, ipv6 = row
        frame_length = size // max(packets, 1)
        header = self._packet_header(src_hi, src_lo, dst_hi, dst_lo, sport, dport, proto, flags, frag, ipv6,
                                     frame_length)  # fmt: skip
        captured = header[:128]
        padded = captured + b"\0" * ((-len(captured)) % 4)
        raw = struct.pack(">IIII", 1, frame_length, 4, len(captured)) + padded
        switch = struct.pack(">IIII", 0, 0, 0, 0)
        records = struct.pack(">II", 1001, len(switch)) + switch + struct.pack(">II", 1, len(raw)) + raw
        self.sample_sequence += 1
        body = struct.pack(">IIIIIIII", self.sample_sequence, 3, self.sampling, self.sample_sequence * self.sampling,
                           0, 3, 4, 2) + records  # fmt: skip
        return struct.pack(">II", 1, len(body)) + body

    def _packet_header(
        self, src_hi: int, src_lo: int, dst_hi: int, dst_lo: int, sport: int, dport: int, proto: int, flags: int,
        frag: int, ipv6: int, frame_length: int,
    ) -> bytes:
        l4 = b""
        if not frag:
            if proto == 6:
                l4 = struct.pack(">HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 65535, 0, 0)
            elif proto == 17:
                l4 = struct.pack(">HHHH", sport, dport, max(8, frame_length - 42), 0)
            elif proto in (1, 58):
                l4 = struct.pack(">BBHI", 8, 0, 0, 0)
        payload = l4 + b"\xab" * 32
        if ipv6:
            next_header = 44 if frag else proto
            ip = struct.pack(">IHBB", 0x6000_0000, len(payload), next_header, 64)
            ip += src_hi.to_bytes(8, "big") + src_lo.to_bytes(8, "big")
            ip += dst_hi.to_bytes(8, "big") + dst_lo.to_bytes(8, "big")
            if frag:
                ip += struct.pack(">BBHI", proto, 0, 185 << 3, 7)
            ethertype = 0x86DD
        else:
            total = min(max(20, frame_length - 14), 65535)
            frag_word = 185 if frag else 0x4000
            ip = struct.pack(">BBHHHBBH", 0x45, 0, total, 1, frag_word, 64, proto, 0)
            ip += (src_lo & 0xFFFF_FFFF).to_bytes(4, "big") + (dst_lo & 0xFFFF_FFFF).to_bytes(4, "big")
            ethertype = 0x0800
        l2 = b"\x02\0\0\0\0\x01\x02\0\0\0\0\x02"
        if self.vlan is not None:
            l2 += struct.pack(">HH", 0x8100, self.vlan)
        return l2 + struct.pack(">H", ethertype) + ip + payload


def encoder_for(fmt: str, sampling: int = 1, **kwargs: object) -> NetFlow5Encoder | NetFlow9Encoder | IpfixEncoder | SflowEncoder:
    """An encoder by format name: sflow, netflow5, netflow9 or ipfix."""
    classes = {"sflow": SflowEncoder, "netflow5": NetFlow5Encoder, "netflow9": NetFlow9Encoder, "ipfix": IpfixEncoder}
    if fmt not in classes:
        raise ValueError(f"unknown format {fmt!r}; choose one of {sorted(classes)}")
    return classes[fmt](sampling=sampling, **kwargs)
