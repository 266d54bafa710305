"""The control server ExaBGP runs as its API process: Sluice's only way into a running speaker.

ExaBGP starts this program (see `process` in the generated configuration) with its stdin and stdout as the text
API. It first replays the journal, so that a speaker that died and came back announces again everything Sluice
had announced, and only then opens a unix socket in the workdir. Each request on the socket is a batch of
commands that runs under one lock: written to ExaBGP in order, then answered with ExaBGP's `done`/`error` for
each, so commands from concurrent clients never interleave and every one of them is checked.

If ExaBGP stops acknowledging, the ack stream can no longer be matched to commands: the helper exits and lets
ExaBGP respawn it (which replays the journal), rather than answer with acks that belong to someone else.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from devices.drivers.bgp.commands import announce_command, route_from_json
from devices.drivers.bgp.config import (
    CONTROL_SOCKET,
    GENERATION_FILE,
    HOLD_FILE,
    JOURNAL_FILE,
    SpeakerSettings,
)
from devices.drivers.bgp.journal import Journal

ACK_TIMEOUT_BASE = 10.0
ACK_TIMEOUT_PER_COMMAND = 0.002
MAX_REQUEST_BYTES = 64 * 1024 * 1024


def log(message: str) -> None:
    """ExaBGP passes our stderr through to its own, which the supervisor writes to the workdir log."""
    sys.stderr.write(f"sluice-control[{os.getpid()}]: {message}\n")
    sys.stderr.flush()


class ExaBgpChannel:
    """Our stdin/stdout to ExaBGP: writes commands, matches acknowledgements to them in order."""

    def __init__(self) -> None:
        self._acks: queue.Queue[str] = queue.Queue()
        self._lock = threading.Lock()
        self._out = sys.stdout.buffer
        threading.Thread(target=self._read_acks, name="acks", daemon=True).start()

    def _read_acks(self) -> None:
        for raw in sys.stdin.buffer:
            line = raw.decode(errors="replace").strip()
            if line == "shutdown":
                break
            if line:
                self._acks.put(line)
        # ExaBGP is gone or leaving: a helper without its speaker must not keep the socket.
        os._exit(0)

    def execute(self, commands: list[str]) -> list[str]:
        """Run a batch; returns one answer ("done", "error") per command, in order."""
        with self._lock:
            while not self._acks.empty():
                log(f"discarding unexpected answer {self._acks.get_nowait()!r}")
            self._out.write("".join(f"{c}\n" for c in commands).encode())
            self._out.flush()
            deadline = time.monotonic() + ACK_TIMEOUT_BASE + ACK_TIMEOUT_PER_COMMAND * len(commands)
            answers = []
            for _ in commands:
                try:
                    answers.append(self._acks.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    log("ExaBGP stopped acknowledging commands; exiting so that it respawns a fresh helper")
                    os._exit(3)
            return answers


class ControlServer:
    """Unix-socket front of the channel: one JSON request line in, one JSON answer line out."""

    def __init__(self, workdir: Path, channel: ExaBgpChannel, generation: str) -> None:
        self.workdir = workdir
        self.channel = channel
        self.generation = generation

    def replay(self) -> None:
        """Announce again, in the recorded order, everything the journal says is announced (nothing on hold)."""
        if (self.workdir / HOLD_FILE).exists():
            log("kill switch on: the journal is not replayed")
            return
        settings = SpeakerSettings.load(self.workdir)
        commands = []
        for entry in Journal(self.workdir / JOURNAL_FILE).refresh():
            try:
                route = route_from_json(entry)
                commands.append(announce_command(route, settings.local_as, route.neighbors))
            except (ValueError, TypeError, KeyError) as exc:
                log(f"cannot replay {entry}: {exc}")
        if commands:
            answers = self.channel.execute(commands)
            failed = [c for c, a in zip(commands, answers, strict=True) if a != "done"]
            for command in failed:
                log(f"replay refused: {command}")
            log(f"replayed {len(commands) - len(failed)} of {len(commands)} routes")

    def serve(self) -> None:
        path = self.workdir / CONTROL_SOCKET
        tmp = self.workdir / f".{CONTROL_SOCKET}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(tmp))
        server.listen(64)
        # Bound under a temporary name and renamed, so clients never connect to a socket nobody serves.
        os.replace(tmp, path)
        while True:
            connection, _ = server.accept()
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        with connection:
            buffer = b""
            while not buffer.endswith(b"\n"):
                chunk = connection.recv(1 << 20)
                if not chunk or len(buffer) > MAX_REQUEST_BYTES:
                    return
                buffer += chunk
            try:
                request = json.loads(buffer)
                commands = [str(c) for c in request.get("commands", [])]
                if any("\n" in c or "\r" in c for c in commands):
                    raise ValueError("a command must be one line")
            except (ValueError, AttributeError) as exc:
                answer: dict[str, object] = {"generation": self.generation, "error": f"bad request: {exc}"}
            else:
                results = self.channel.execute(commands) if commands else []
                answer = {"generation": self.generation, "results": results}
            connection.sendall(json.dumps(answer).encode() + b"\n")


def main(argv: list[str]) -> int:
    workdir = Path(argv[1]).resolve()
    generation = f"{os.getpid()}-{time.time_ns()}"
    (workdir / GENERATION_FILE).write_text(generation)
    channel = ExaBgpChannel()
    server = ControlServer(workdir, channel, generation)
    server.replay()
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
