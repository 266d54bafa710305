"""Supervision of one ExaBGP speaker: its files, its process, and its restart when it dies.

Sluice owns the speaker rather than sharing a system ExaBGP, so that its announcements can be replayed after a
crash (see api_helper) and several speakers (one per scrubbing center, or per test) can run side by side: each
has its own workdir with configuration, environment, EXABGP_ROOT, control socket, journal and log.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from devices.drivers.base import ConnectError, SpeakerError
from devices.drivers.bgp.config import (
    CONTROL_SOCKET,
    BgpNeighborConfig,
    SpeakerSettings,
    render_exabgp_config,
    render_exabgp_env,
)

logger = logging.getLogger(__name__)

RESTART_DELAY_MIN = 0.2
RESTART_DELAY_MAX = 5.0
STABLE_AFTER = 10.0


def exabgp_executable() -> str:
    """The exabgp of the running interpreter's environment, so the version matches the installed package."""
    candidate = Path(sys.executable).with_name("exabgp")
    if not candidate.exists():
        raise SpeakerError(f"exabgp not found next to {sys.executable}")
    return str(candidate)


def _alive(pid: int) -> bool:
    """Whether a process runs; a zombie has already let go of its sessions and sockets."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class ExaBgpProcess:
    """Writes the speaker's files, starts ExaBGP, restarts it when it exits unexpectedly, stops it.

    Use as a context manager or call start()/stop(). Other processes drive the running speaker with
    `ExaBgpSpeaker(workdir)`; this object only needs to live in the process that supervises.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        router_id: str,
        local_as: int,
        local_address: str,
        neighbors: list[BgpNeighborConfig],
        *,
        exabgp: str | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.settings = SpeakerSettings(router_id, local_as, local_address, tuple(neighbors))
        self.exabgp = exabgp or exabgp_executable()
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    @property
    def config_path(self) -> Path:
        return self.workdir / "exabgp.conf"

    @property
    def env_path(self) -> Path:
        return self.workdir / "exabgp.env"

    @property
    def log_path(self) -> Path:
        return self.workdir / "exabgp.log"

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def write_files(self) -> None:
        """Configuration, environment and settings for clients; existing journal is kept (it is the state)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "etc" / "exabgp").mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(render_exabgp_config(self.settings, self.workdir))
        self.env_path.write_text(render_exabgp_env(self.settings, self.workdir))
        settings_tmp = self.workdir / "speaker.json.tmp"
        settings_tmp.write_text(self.settings.to_json())
        os.replace(settings_tmp, self.workdir / "speaker.json")

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.lower().startswith("exabgp")}
        env["EXABGP_ROOT"] = str(self.workdir)
        env["PYTHONUNBUFFERED"] = "1"
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                [self.exabgp, "--env-file", str(self.env_path), "server", str(self.config_path)],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self, *, wait: float = 15.0) -> None:
        """Start ExaBGP and its watcher; with `wait`, return once the control socket answers."""
        with self._lock:
            if self._watcher is not None:
                return
            self.write_files()
            self._stop_stale()
            self._stopping.clear()
            self._process = self._spawn()
            self._watcher = threading.Thread(target=self._watch, name=f"exabgp-watch-{self.workdir.name}", daemon=True)
            self._watcher.start()
        if wait:
            self.wait_ready(wait)

    def _stop_stale(self) -> None:
        """An ExaBGP left running by a supervisor that died would hold the sessions: stop it by its pid file."""
        try:
            pid = int((self.workdir / "exabgp.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if str(self.config_path).encode() not in cmdline:
            return
        logger.warning("stopping ExaBGP %s left running in %s", pid, self.workdir)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)

    def _watch(self) -> None:
        """Restart ExaBGP whenever it exits while we did not ask it to, backing off if it keeps dying."""
        delay = RESTART_DELAY_MIN
        while not self._stopping.is_set():
            process = self._process
            assert process is not None
            started = time.monotonic()
            code = process.wait()
            if self._stopping.is_set():
                return
            logger.warning("ExaBGP in %s exited with %s; restarting", self.workdir, code)
            delay = RESTART_DELAY_MIN if time.monotonic() - started > STABLE_AFTER else min(delay * 2, RESTART_DELAY_MAX)
            if self._stopping.wait(delay):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self._process = self._spawn()
                self.restarts += 1

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Poll until the control server of the current ExaBGP answers (it replays the journal first)."""
        from devices.drivers.bgp.client import ExaBgpSpeaker

        speaker = ExaBgpSpeaker(self.workdir, connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._is_current(speaker.ping()):
                    return
            except SpeakerError:
                pass
            if time.monotonic() >= deadline:
                raise ConnectError(f"ExaBGP in {self.workdir} not ready after {timeout} s; see {self.log_path}")
            time.sleep(0.02)

    def _is_current(self, generation: str) -> bool:
        """Whether the helper that answered is the child of the ExaBGP running now, not a dying previous one."""
        pid = self.pid
        helper = generation.split("-", 1)[0]
        try:
            stat = Path(f"/proc/{helper}/stat").read_text()
        except OSError:
            return False
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        return pid is not None and parent == pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the running ExaBGP as a crash would; the watcher restarts it. For tests and drills."""
        process = self._process
        if process is not None and process.poll() is None:
            os.kill(process.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop ExaBGP (and its helper) for good; announcements stay in the journal for the next start."""
        with self._lock:
            self._stopping.set()
            process = self._process
            watcher, self._watcher = self._watcher, None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                pass
        if watcher is not None:
            watcher.join(timeout)
        (self.workdir / CONTROL_SOCKET).unlink(missing_ok=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
