"""UDP sockets that read datagrams in batches: one `recvmmsg(2)` system call brings up to a thousand datagrams.

On Linux the listener calls libc's `recvmmsg` through ctypes (no compiled code of ours): every datagram lands in
its own 64 KiB slot of one anonymous memory map, and the lengths, flags and sender addresses of the whole call are
read as numpy arrays, so a batch costs a few system calls and no Python work per datagram. Elsewhere it falls back
to a loop of `recvfrom_into`. Either way the decoders get one buffer plus per-datagram offsets and lengths, and
every datagram starts at an 8-byte aligned offset, so XDR-encoded formats (sFlow) read as aligned big-endian words.

The kernel receive buffer is raised (32 MiB by default) because the default (~208 KiB) overflows within
milliseconds at flow-export rates while the collector is busy decoding. Once the first datagram of a batch is
there, the reader lingers a few milliseconds (sleeping, the kernel queues meanwhile) before draining: decoding and
aggregation cost a fixed amount per batch, so a thousand datagrams read at once cost far less CPU than a thousand
batches of one. It does not linger after a full batch: the sockets then still hold more. Fifty milliseconds is
half the collector's flush interval: decoded flows wait for the next flush anyway, so lingering that long costs
detection almost nothing while it makes the per-batch costs of decoding small at export rates of a few hundred
thousand records per second.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import select
import socket
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

MAX_DATAGRAM = 65535
SLOT_BYTES = 65536
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
MSG_TRUNC = 0x20
SOCKADDR_BYTES = 32  # room for a sockaddr_in6 (28 bytes), rounded up


@dataclass
class Batch:
    """Datagrams read in one go: where each starts in the buffer, its length and which exporter sent it."""

    buffer: bytearray | mmap.mmap
    offsets: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    exporters: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets)


class IoVec(ctypes.Structure):
    """struct iovec."""

    _fields_ = [("base", ctypes.c_void_p), ("length", ctypes.c_size_t)]


class MsgHdr(ctypes.Structure):
    """struct msghdr (Linux layout)."""

    _fields_ = [
        ("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.POINTER(IoVec)),
        ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]  # fmt: skip


class MMsgHdr(ctypes.Structure):
    """struct mmsghdr: one message of recvmmsg/sendmmsg and the byte count the call reports for it."""

    _fields_ = [("hdr", MsgHdr), ("length", ctypes.c_uint)]


def _libc_recvmmsg() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """libc's recvmmsg, or None where there is none (not Linux, or a libc without it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).recvmmsg
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.POINTER(MMsgHdr), ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    function.restype = ctypes.c_int
    return function


class _MultiReceiver:
    """`recvmmsg` into fixed slots of one memory map; per-call results read back as numpy arrays."""

    def __init__(self, recvmmsg: ctypes._CFuncPtr, slots: int) -> None:  # type: ignore[name-defined]
        self._recvmmsg = recvmmsg
        self.slots = slots
        self.buffer = mmap.mmap(-1, slots * SLOT_BYTES)  # anonymous: pages cost memory only once written
        base = ctypes.addressof(ctypes.c_char.from_buffer(self.buffer))
        self._names = ctypes.create_string_buffer(slots * SOCKADDR_BYTES)
        names_base = ctypes.addressof(self._names)
        self._iovecs = (IoVec * slots)()
        self._messages = (MMsgHdr * slots)()
        for i in range(slots):
            self._iovecs[i].base = base + i * SLOT_BYTES
            self._iovecs[i].length = SLOT_BYTES
            header = self._messages[i].hdr
            header.name = names_base + i * SOCKADDR_BYTES
            header.iov = ctypes.pointer(self._iovecs[i])
            header.iovlen = 1
        stride = ctypes.sizeof(MMsgHdr)
        raw = np.frombuffer(memoryview(self._messages).cast("B"), dtype=np.uint8).reshape(slots, stride)
        self._namelen = raw[:, MsgHdr.namelen.offset : MsgHdr.namelen.offset + 4].view(np.uint32)[:, 0]
        self._flags = raw[:, MsgHdr.flags.offset : MsgHdr.flags.offset + 4].view(np.int32)[:, 0]
        self._length = raw[:, MMsgHdr.length.offset : MMsgHdr.length.offset + 4].view(np.uint32)[:, 0]
        self._sender = np.frombuffer(memoryview(self._names).cast("B"), dtype=np.uint8).reshape(slots, SOCKADDR_BYTES)
        self._exporter_names: dict[bytes, str] = {}

    def receive(self, fd: int, first: int, count: int) -> int:
        """Read up to `count` datagrams from `fd` into slots `first...`; the number read (0 when none waits)."""
        self._namelen[first : first + count] = SOCKADDR_BYTES
        got = int(self._recvmmsg(fd, ctypes.byref(self._messages[first]), count, socket.MSG_DONTWAIT, None))
        if got < 0:
            code = ctypes.get_errno()
            if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return 0
            raise OSError(code, f"recvmmsg: {errno.errorcode.get(code, code)}")
        return got

    def fill(self, batch: Batch, used: int, stats: Counter[str]) -> None:
        """Describe slots `0..used` in `batch`, dropping datagrams the kernel truncated (larger than a slot)."""
        lengths = self._length[:used].astype(np.int64)
        whole = (self._flags[:used] & MSG_TRUNC) == 0
        if not whole.all():
            stats["truncated"] += int((~whole).sum())
        kept = np.flatnonzero(whole)
        batch.offsets = (kept * SLOT_BYTES).tolist()
        batch.lengths = lengths[kept].tolist()
        batch.exporters = self._senders(kept)

    def _senders(self, kept: np.ndarray) -> list[str]:
        """The sending address of each kept slot; formatting is paid once per distinct sender."""
        if kept.size == 0:
            return []
        rows = self._sender[kept]
        if (rows == rows[0]).all():
            return [self._name(rows[0].tobytes())] * int(kept.size)
        keys = np.ascontiguousarray(rows).view(f"V{SOCKADDR_BYTES}")[:, 0]
        distinct, inverse = np.unique(keys, return_inverse=True)
        names = [self._name(key.tobytes()) for key in distinct]
        return [names[i] for i in inverse.tolist()]

    def _name(self, sockaddr: bytes) -> str:
        name = self._exporter_names.get(sockaddr)
        if name is None:
            family = int.from_bytes(sockaddr[:2], sys.byteorder)
            if family == socket.AF_INET6:
                name = socket.inet_ntop(socket.AF_INET6, sockaddr[8:24])
            else:
                name = socket.inet_ntop(socket.AF_INET, sockaddr[4:8])
            if len(self._exporter_names) > 65536:
                self._exporter_names.clear()
            self._exporter_names[sockaddr] = name
        return name


class UdpListener:
    """Bound UDP sockets (one per format name, all formats auto-detected on each) read in batches."""

    def __init__(
        self,
        listen: Mapping[str, tuple[str, int]],
        *,
        receive_buffer: int = 32 * 1024 * 1024,
        batch_bytes: int = 8 * 1024 * 1024,
        max_datagrams: int = 8192,
        linger: float = 0.05,
        multi_receive: bool = True,
        reuse_port: bool = False,
    ) -> None:
        self.stats: Counter[str] = Counter()
        self.sockets: dict[str, socket.socket] = {}
        self.max_datagrams = max_datagrams
        self.linger = linger
        recvmmsg = _libc_recvmmsg() if multi_receive else None
        self._multi = _MultiReceiver(recvmmsg, min(max_datagrams, 2048)) if recvmmsg is not None else None
        self._drained = True
        self._buffer = bytearray(0 if self._multi else batch_bytes + MAX_DATAGRAM)
        self._view = memoryview(self._buffer)
        self._limit = batch_bytes
        self.reuse_port = reuse_port
        try:
            for name, (host, port) in listen.items():
                self.sockets[name] = self._open(host, port, receive_buffer)
        except OSError:
            self.close()
            raise
        self._poll = select.poll()
        for s in self.sockets.values():
            self._poll.register(s.fileno(), select.POLLIN)

    @property
    def multi_receive(self) -> bool:
        """Whether batches come from `recvmmsg` (Linux) rather than one `recvfrom_into` per datagram."""
        return self._multi is not None

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
        if self.reuse_port:
            # Several collector processes on one port: the kernel spreads senders over them by address and
            # port, so each exporter (and its templates) stays with one process.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.setblocking(False)
        return sock

    def addresses(self) -> dict[str, tuple[str, int]]:
        """The bound address of each socket (useful with port 0)."""
        return {name: s.getsockname()[:2] for name, s in self.sockets.items()}

    def read_batch(self, timeout: float) -> Batch:
        """Wait up to `timeout` seconds for data, linger, then drain sockets until the batch is full."""
        ready = self._poll.poll(max(0, int(timeout * 1000)))
        if not ready:
            return Batch(self._multi.buffer if self._multi else self._buffer)
        if self.linger > 0 and self._drained:
            time.sleep(self.linger)
        batch = self._read_multi() if self._multi else self._read_each()
        self.stats["datagrams"] += len(batch)
        self.stats["bytes"] += sum(batch.lengths)
        return batch

    def _read_multi(self) -> Batch:
        multi = self._multi
        assert multi is not None
        batch = Batch(multi.buffer)
        used = 0
        for sock in self.sockets.values():
            while used < multi.slots:
                wanted = multi.slots - used
                try:
                    got = multi.receive(sock.fileno(), used, wanted)
                except OSError:
                    self.stats["receive_errors"] += 1
                    break
                used += got
                if got < wanted:
                    break  # the socket's queue is empty
        self._drained = used < multi.slots
        multi.fill(batch, used, self.stats)
        return batch

    def _read_each(self) -> Batch:
        batch = Batch(self._buffer)
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
        self._drained = position < self._limit and len(offsets) < self.max_datagrams
        return batch

    def close(self) -> None:
        """Close every socket."""
        for sock in self.sockets.values():
            sock.close()
        self.sockets = {}
