"""A paced sender of pre-encoded datagrams that uses `sendmmsg(2)`: hundreds of datagrams per system call.

Benchmarks need a generator faster than the collector it measures; one `sendto` per datagram from Python tops
out near 150,000 datagrams a second, below what the collector takes. The datagrams of a pool are laid out once in
one buffer with a message header each (the array holds the pool twice, so any window of up to a pool's length is
contiguous), and a batch is one call on a connected socket. Loopback only, like the rest of `netsim`.
"""

from __future__ import annotations

import bisect
import ctypes
import errno
import itertools
import socket
import sys
import time
from collections.abc import Sequence

from collector.listener import IoVec, MMsgHdr
from netsim.flowgen.stream import parse_target


def _libc_sendmmsg() -> ctypes._CFuncPtr:  # type: ignore[name-defined]
    if not sys.platform.startswith("linux"):
        raise OSError("sendmmsg needs Linux")
    function = ctypes.CDLL(None, use_errno=True).sendmmsg
    function.argtypes = [ctypes.c_int, ctypes.POINTER(MMsgHdr), ctypes.c_uint, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


class MultiSender:
    """Sends a cyclic pool of datagrams (each worth `counts[i]` records) to one loopback address."""

    def __init__(self, packets: Sequence[bytes], counts: Sequence[int], address: tuple[str, int],
                 send_buffer: int = 4 * 1024 * 1024) -> None:  # fmt: skip
        parse_target(f"[{address[0]}]:{address[1]}" if ":" in address[0] else f"{address[0]}:{address[1]}")
        if not packets or len(packets) != len(counts):
            raise ValueError("one record count per datagram, and at least one datagram")
        self._sendmmsg = _libc_sendmmsg()
        self.counts = [int(c) for c in counts]
        self.size = len(packets)
        self._data = ctypes.create_string_buffer(b"".join(packets))
        base = ctypes.addressof(self._data)
        self._iovecs = (IoVec * self.size)()
        self._messages = (MMsgHdr * (2 * self.size))()
        position = 0
        for i, packet in enumerate(packets):
            self._iovecs[i].base, self._iovecs[i].length = base + position, len(packet)
            position += len(packet)
        for i in range(2 * self.size):
            header = self._messages[i].hdr
            header.iov = ctypes.pointer(self._iovecs[i % self.size])
            header.iovlen = 1
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_DGRAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        self.socket.connect(address)

    def send(self, index: int, count: int) -> int:
        """Send up to `count` datagrams starting at pool position `index`; how many went (0 if the buffer is full)."""
        count = min(count, self.size)
        sent = self._sendmmsg(self.socket.fileno(), ctypes.byref(self._messages[index % self.size]), count, 0)
        if sent < 0:
            code = ctypes.get_errno()
            if code in (errno.EAGAIN, errno.ENOBUFS, errno.EINTR, errno.ECONNREFUSED):
                return 0
            raise OSError(code, f"sendmmsg: {errno.errorcode.get(code, code)}")
        return sent

    def paced(self, rate: float, seconds: float, batch: int = 64) -> int:
        """Send the pool cyclically at `rate` records per second for `seconds`; returns the records sent.

        Each call sends as many datagrams (at most `batch`) as the schedule owes, so pacing stays exact while the
        system calls stay few.
        """
        cumulative = list(itertools.accumulate(self.counts + self.counts, initial=0))
        sent_records, index = 0, 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            owed = rate * elapsed - sent_records
            if owed <= 0:
                continue
            wanted = bisect.bisect_left(cumulative, cumulative[index] + owed) - index
            went = self.send(index, max(1, min(wanted, batch)))
            sent_records += cumulative[index + went] - cumulative[index]
            index = (index + went) % self.size
        return sent_records

    def close(self) -> None:
        """Close the socket."""
        self.socket.close()
