"""The speaker's own record of what it announces, shared by every process through the workdir.

An append-only journal of `+ <json>` / `- <json>` lines: appends are cheap enough for 10,000 routes, and each
reader follows the file from where it last stopped instead of re-reading it. The order of entries is the
order of the last announcement, which is what a replay after a restart must reproduce (the last announcement of
a prefix wins on a neighbor). The journal is compacted in place of a rewrite when dead lines dominate.
The caller serialises writers with `workdir_lock`; a reader ignores a trailing line still being written.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from devices.drivers.base import LockError

COMPACT_MIN_LINES = 2000


@contextmanager
def workdir_lock(path: Path, timeout: float) -> Iterator[None]:
    """An exclusive flock with a deadline, so a stuck client can never hold every other worker forever.

    A fresh file description per acquisition makes the lock exclude threads of one process as well.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise LockError(f"speaker lock {path} busy for {timeout} s") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.02)
        yield
    finally:
        os.close(fd)


class Journal:
    """Follows the journal file and holds the announced routes as canonical JSON, in announcement order.

    With `index_key`, entries are also grouped by that key (the NLRI), each group in announcement order, so a
    client can tell in constant time which other route still holds a prefix it withdraws.
    """

    def __init__(self, path: Path, index_key: Callable[[str], str] | None = None) -> None:
        self.path = path
        self.index_key = index_key
        self.index: dict[str, dict[str, None]] = {}
        self._keys: dict[str, str] = {}
        self._entries: dict[str, None] = {}
        self._offset = 0
        self._inode: int | None = None
        self._lines = 0
        self._head = b""
        self._mutex = threading.Lock()

    def refresh(self) -> list[str]:
        """Read what other processes appended since the last call; returns the live entries in order."""
        with self._mutex:
            try:
                handle = self.path.open("rb")
            except FileNotFoundError:
                self._reset(None)
                return []
            with handle:
                # fstat of the open file, not stat of the path: a compaction may rename a new file in between.
                stat = os.fstat(handle.fileno())
                head = handle.readline()
                # Inode numbers are reused after a rename; the first line (a random header after compaction)
                # tells two generations of the file apart.
                if stat.st_ino != self._inode or stat.st_size < self._offset or head != self._head:
                    self._reset(stat.st_ino)
                    self._head = head if head.endswith(b"\n") else b""
                if stat.st_size > self._offset:
                    handle.seek(self._offset)
                    data = handle.read(stat.st_size - self._offset)
                    complete = data.rfind(b"\n") + 1
                    for line in data[:complete].decode().splitlines():
                        self._apply(line)
                    self._offset += complete
            return list(self._entries)

    def _reset(self, inode: int | None) -> None:
        self._entries, self._offset, self._inode, self._lines = {}, 0, inode, 0
        self._head = b""
        self.index = {}

    def _apply(self, line: str) -> None:
        if len(line) < 3 or line[0] not in "+-":
            return
        self._lines += 1
        op, payload = line[0], line[2:]
        present = self._entries.pop(payload, 0) is None
        group = None
        if self.index_key is not None:
            key = self._keys.get(payload)
            if key is None:
                key = self._keys[payload] = self.index_key(payload)
            group = self.index.setdefault(key, {})
            if present:
                group.pop(payload, None)
        if op == "+":
            self._entries[payload] = None
            if group is not None:
                group[payload] = None
        elif group is not None:
            if not group:
                del self.index[self._keys[payload]]
            del self._keys[payload]

    def entries(self) -> dict[str, None]:
        """The live entries as of the last refresh (read-only view, announcement order)."""
        return self._entries

    def append(self, added: Iterable[str], removed: Iterable[str]) -> None:
        """Record changes the speaker acknowledged. Call with the workdir lock held and after refresh()."""
        text = "".join(f"- {r}\n" for r in removed) + "".join(f"+ {a}\n" for a in added)
        if not text:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        self.refresh()
        if self._lines > COMPACT_MIN_LINES and self._lines > 4 * len(self._entries):
            self.compact()

    def compact(self) -> None:
        """Rewrite the journal with live entries only; an atomic rename so readers see old or new, never half."""
        with self._mutex:
            entries = list(self._entries)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"# sluice journal {uuid.uuid4().hex}\n" + "".join(f"+ {e}\n" for e in entries))
        os.replace(tmp, self.path)
        self.refresh()
