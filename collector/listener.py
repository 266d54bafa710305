"""UDP sockets that read datagrams in batches into one preallocated buffer.

Python has no recvmmsg, so a batch is a loop of `recvfrom_into` on non-blocking sockets, each datagram written
right after the previous one in a large buffer; the decoders then work on the whole batch at once. The kernel
receive buffer is raised (32 MiB by default) because the default (~208 KiB) overflows within milliseconds at
flow-export rates while the collector is busy decoding.

Once the first datagram of a batch is there, the reader lingers a few milliseconds (sleeping, the kernel queues
meanwhile) before draining: decoding and aggregation cost a fixed amount per batch, so a thousand datagrams read
at once cost far less CPU than a thousand batches of one. Every datagram starts at an 8-byte aligned offset in the
buffer, so XDR-encoded formats (sFlow) can be read as aligned big-endian words.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

MAX_DATAGRAM = 65535
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


@dataclass
class Batch:
    """Datagrams read in one go: where each starts in the buffer, its length and which exporter sent it."""

    buffer: bytearray
    offsets: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    exporters: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets)


class UdpListener:
    """Bound UDP sockets (one per format name, all formats auto-detected on each) read in batches."""

    def __init__(
        self,
        listen: Mapping[str, tuple[str, int]],
        *,
        receive_buffer: int = 32 * 1024 * 1024,
        batch_bytes: int = 8 * 1024 * 1024,
        max_datagrams: int = 8192,
        linger: float = 0.02,
    ) -> None:
        self.stats: Counter[str] = Counter()
        self.sockets: dict[str, socket.socket] = {}
        self.max_datagrams = max_datagrams
        self.linger = linger
        self._buffer = bytearray(batch_bytes + MAX_DATAGRAM)
        self._view = memoryview(self._buffer)
        self._limit = batch_bytes
        try:
            for name, (host, port) in listen.items():
                self.sockets[name] = self._open(host, port, receive_buffer)
        except OSError:
            self.close()
            raise
        self._poll = select.poll()
        for s in self.sockets.values():
            self._poll.register(s.fileno(), select.POLLIN)

    def _open(self, host: str, port: int, receive_buffer: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, receive_buffer)
                break
            except OSError:
                continue
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self.stats["receive_buffer_bytes"] = granted
        if granted < receive_buffer:
            logger.warning("receive buffer %d < %d asked: raise net.core.rmem_max", granted, receive_buffer)
        sock.bind((host, port))
        sock.setblocking(False)
        return sock

    def addresses(self) -> dict[str, tuple[str, int]]:
        """The bound address of each socket (useful with port 0)."""
        return {name: s.getsockname()[:2] for name, s in self.sockets.items()}

    def read_batch(self, timeout: float) -> Batch:
        """Wait up to `timeout` seconds for data, linger, then drain sockets until the buffer or batch size is full."""
        batch = Batch(self._buffer)
        ready = self._poll.poll(max(0, int(timeout * 1000)))
        if not ready:
            return batch
        if self.linger > 0:
            time.sleep(self.linger)
        position = 0
        view = self._view
        offsets, lengths, exporters = batch.offsets, batch.lengths, batch.exporters
        for sock in self.sockets.values():
            recv = sock.recvfrom_into
            while position < self._limit and len(offsets) < self.max_datagrams:
                try:
                    size, address = recv(view[position:], MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    self.stats["receive_errors"] += 1
                    break
                offsets.append(position)
                lengths.append(size)
                exporters.append(address[0])
                position += (size + 7) & ~7
        self.stats["datagrams"] += len(batch)
        self.stats["bytes"] += sum(lengths)
        return batch

    def close(self) -> None:
        """Close every socket."""
        for sock in self.sockets.values():
            sock.close()
        self.sockets = {}
