"""UDP sockets that read datagrams in batches into one preallocated buffer.

Python has no recvmmsg, so a batch is a loop of `recvfrom_into` on non-blocking sockets, each datagram written
right after the previous one in a large buffer; the decoders then work on the whole batch at once. The kernel
receive buffer is raised (32 MiB by default) because the default (~208 KiB) overflows within milliseconds at
flow-export rates while the collector is busy decoding.
"""

from __future__ import annotations

import logging
import select
import socket
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
        batch_bytes: int = 4 * 1024 * 1024,
        max_datagrams: int = 2048,
    ) -> None:
        self.stats: Counter[str] = Counter()
        self.sockets: dict[str, socket.socket] = {}
        self.max_datagrams = max_datagrams
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
        self._by_fd = {s.fileno(): s for s in self.sockets.values()}
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
        """Wait up to `timeout` seconds for data, then drain sockets until the buffer or batch size is full."""
        batch = Batch(self._buffer)
        ready = self._poll.poll(max(0, int(timeout * 1000)))
        if not ready:
            return batch
        position = 0
        view = self._view
        for fd, _ in ready:
            sock = self._by_fd[fd]
            recv = sock.recvfrom_into
            while position < self._limit and len(batch.offsets) < self.max_datagrams:
                try:
                    size, address = recv(view[position:], MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    self.stats["receive_errors"] += 1
                    break
                batch.offsets.append(position)
                batch.lengths.append(size)
                batch.exporters.append(address[0])
                position += size
        self.stats["datagrams"] += len(batch)
        self.stats["bytes"] += position
        return batch

    def close(self) -> None:
        """Close every socket."""
        for sock in self.sockets.values():
            sock.close()
        self.sockets = {}
