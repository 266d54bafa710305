"""The Speaker that drives a running Sluice ExaBGP from any local process.

Every process (Celery workers, the reconcile loop, the kill switch) builds an `ExaBgpSpeaker(workdir)` and talks
to the control server ExaBGP runs (api_helper) over the workdir's unix socket. A change is: take the workdir
lock (with a timeout), read the journal, send the batch of commands, check that every one was answered `done`,
append to the journal. The lock makes command plus record one step across processes, so concurrent clients
neither interleave commands nor lose records.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from devices.drivers.base import FlowSpecRule, Speaker, SpeakerError, UnicastRoute
from devices.drivers.bgp.commands import (
    Route,
    announce_command,
    family_of,
    nlri_key,
    route_from_json,
    route_to_json,
    withdraw_command,
)
from devices.drivers.bgp.config import (
    CONTROL_SOCKET,
    GENERATION_FILE,
    JOURNAL_FILE,
    LOCK_FILE,
    SpeakerSettings,
)
from devices.drivers.bgp.journal import Journal, workdir_lock


def _nlri_of_json(entry: str) -> str:
    return nlri_key(route_from_json(entry))


class ExaBgpSpeaker(Speaker):
    """Announces and withdraws Sluice routes on the ExaBGP speaker whose workdir is given.

    Raises SpeakerError when the speaker is down, refuses a command, or cannot carry a route (no neighbor with
    its family, or an unknown neighbor); LockError when another client holds the speaker longer than
    `lock_timeout`. Thread-safe; cheap to create (no connection is kept open).
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        lock_timeout: float = 30.0,
        connect_timeout: float = 5.0,
        command_timeout: float = 120.0,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.lock_timeout = lock_timeout
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._journal = Journal(self.workdir / JOURNAL_FILE, index_key=_nlri_of_json)
        self._routes: dict[str, Route] = {}
        self._settings: SpeakerSettings | None = None
        self._thread_lock = threading.Lock()

    @property
    def settings(self) -> SpeakerSettings:
        """Read lazily and once: the supervisor writes it before the first client can reach the speaker."""
        if self._settings is None:
            try:
                self._settings = SpeakerSettings.load(self.workdir)
            except (OSError, ValueError) as exc:
                raise SpeakerError(f"no speaker settings in {self.workdir}: {exc}") from exc
        return self._settings

    def _route(self, entry: str) -> Route:
        route = self._routes.get(entry)
        if route is None:
            route = self._routes[entry] = route_from_json(entry)
        return route

    def _request(self, commands: list[str]) -> tuple[str, list[str]]:
        """One batch to the control server; retries connecting while a restarting speaker comes back."""
        deadline = time.monotonic() + self.connect_timeout
        payload = json.dumps({"commands": commands}).encode() + b"\n"
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.command_timeout)
                sock.connect(str(self.workdir / CONTROL_SOCKET))
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                sock.close()
                if time.monotonic() >= deadline:
                    raise SpeakerError(f"speaker in {self.workdir} is not running: {exc}") from exc
                time.sleep(0.01)
                continue
            except OSError as exc:
                sock.close()
                raise SpeakerError(f"cannot reach speaker in {self.workdir}: {exc}") from exc
            break
        try:
            with sock:
                sock.sendall(payload)
                answer = b""
                while not answer.endswith(b"\n"):
                    chunk = sock.recv(1 << 20)
                    if not chunk:
                        raise SpeakerError("speaker closed the control connection (it died or restarted)")
                    answer += chunk
        except OSError as exc:
            raise SpeakerError(f"speaker control connection failed: {exc}") from exc
        try:
            reply = json.loads(answer)
        except ValueError as exc:
            raise SpeakerError(f"speaker sent an unreadable answer: {answer[:200]!r}") from exc
        if "error" in reply:
            raise SpeakerError(f"speaker refused the request: {reply['error']}")
        results = [str(r) for r in reply["results"]]
        if len(results) != len(commands):
            raise SpeakerError("speaker answered a different number of commands than were sent")
        return str(reply["generation"]), results

    def send_raw(self, commands: list[str]) -> list[str]:
        """Send ExaBGP API commands as they are, unrecorded: for labs and for measuring ExaBGP's own rate.

        Routes sent this way are not in the journal, so they are neither listed by announced() nor replayed.
        """
        with self._thread_lock, workdir_lock(self.workdir / LOCK_FILE, self.lock_timeout):
            return self._request(commands)[1]

    def ping(self) -> str:
        """The generation (helper pid and start time) of the running control server; SpeakerError if down."""
        return self._request([])[0]

    def _coverage(self, route: Route) -> tuple[str, ...]:
        """The neighbors a route goes to; refuses routes that would silently go nowhere."""
        family = family_of(route)
        settings = self.settings
        if route.neighbors:
            for address in route.neighbors:
                try:
                    neighbor = settings.neighbor(address)
                except KeyError:
                    raise SpeakerError(f"{address} is not a neighbor of this speaker") from None
                if not neighbor.carries(family):
                    raise SpeakerError(f"neighbor {address} does not carry {family}")
            return route.neighbors
        covered = tuple(n.peer_address for n in settings.neighbors if n.carries(family))
        if not covered:
            raise SpeakerError(f"no neighbor of this speaker carries {family}")
        return covered

    def _present_coverage(self, route: Route) -> tuple[str, ...]:
        """The neighbors an announced route still reaches: sessions removed from the inventory since are left out.

        Withdrawing never fails on a neighbor that is gone (its session went with it), so an inventory change can
        never wedge a withdrawal.
        """
        family = family_of(route)
        known = {n.peer_address: n for n in self.settings.neighbors}
        if route.neighbors:
            return tuple(a for a in route.neighbors if a in known and known[a].carries(family))
        return tuple(a for a, n in known.items() if n.carries(family))

    def _withdraw_commands(self, route: Route, remaining: dict[str, None]) -> list[str]:
        """Withdraw from each covered neighbor, unless another announced route holds the same NLRI there.

        ExaBGP keeps one route per NLRI and neighbor, so withdrawing by NLRI would also take down the other route
        (a move of a prefix to new attributes announces the new one first): re-announce that one instead.
        """
        holders: dict[str, str] = {}
        for entry in remaining:
            other = self._route(entry)
            for address in self._present_coverage(other):
                holders[address] = entry
        covered = self._present_coverage(route)
        if not covered:
            return []
        bare = [a for a in covered if a not in holders]
        commands = []
        if bare:
            everyone = not route.neighbors and not holders
            commands.append(withdraw_command(route, () if everyone else bare))
        by_holder: dict[str, list[str]] = {}
        for address in covered:
            if address in holders:
                by_holder.setdefault(holders[address], []).append(address)
        for entry, addresses in by_holder.items():
            commands.append(announce_command(self._route(entry), self.settings.local_as, addresses))
        return commands

    def apply(self, announce: Iterable[Route] = (), withdraw: Iterable[Route] = ()) -> None:
        """Announce then withdraw routes in one batch: one lock, one request, one journal write.

        Routes whose commands were all acknowledged are recorded even when others failed; then SpeakerError
        lists the refused commands.
        """
        to_announce = list(dict.fromkeys(announce))
        announcing = set(to_announce)
        to_withdraw = [r for r in dict.fromkeys(withdraw) if r not in announcing]
        if not to_announce and not to_withdraw:
            return
        for route in to_announce:
            self._coverage(route)
        with self._thread_lock, workdir_lock(self.workdir / LOCK_FILE, self.lock_timeout):
            self._journal.refresh()
            self._apply_locked(to_announce, to_withdraw)

    def _apply_locked(self, to_announce: list[Route], to_withdraw: list[Route]) -> None:
        """The body of apply(), with both locks held and the journal fresh."""
        local_as = self.settings.local_as
        commands = [announce_command(route, local_as, route.neighbors) for route in to_announce]
        owners = [("+", route_to_json(route)) for route in to_announce]
        # A move announces the new route and withdraws the old one in the same batch: both hold one NLRI.
        fresh: dict[str, dict[str, None]] = {}
        for route, (_, entry) in zip(to_announce, owners, strict=True):
            fresh.setdefault(nlri_key(route), {})[entry] = None
        gone: list[tuple[str, str]] = []  # withdrawn routes whose every session was removed: nothing to send
        for route in to_withdraw:
            entry = route_to_json(route)
            nlri = nlri_key(route)
            remaining = {e: None for e in self._journal.index.get(nlri, {}) if e != entry}
            remaining.update(fresh.get(nlri, {}))
            route_commands = self._withdraw_commands(route, remaining)
            if not route_commands:
                gone.append(("-", entry))
            for command in route_commands:
                commands.append(command)
                owners.append(("-", entry))
        generation, results = self._request(commands) if commands else (self._generation(), [])
        failed = {owner for owner, result in zip(owners, results, strict=True) if result != "done"}
        done = [owner for owner in dict.fromkeys([*owners, *gone]) if owner not in failed]
        self._journal.append([key for op, key in done if op == "+"], [key for op, key in done if op == "-"])
        if self._generation() != generation:
            # The speaker restarted between its answer and our record: its replay may predate the record.
            self._request(commands)
        if failed:
            refused = [c for c, r in zip(commands, results, strict=True) if r != "done"]
            raise SpeakerError(f"speaker refused {len(refused)} command(s): {refused[:5]}")

    def _generation(self) -> str:
        try:
            return (self.workdir / GENERATION_FILE).read_text()
        except OSError:
            return ""

    def announce(self, route: UnicastRoute | FlowSpecRule) -> None:
        self.apply(announce=[route])

    def withdraw(self, route: UnicastRoute | FlowSpecRule) -> None:
        self.apply(withdraw=[route])

    def announced(self) -> set[UnicastRoute | FlowSpecRule]:
        """What the speaker announces now, from the journal every client and the replay share."""
        with self._thread_lock:
            return {self._route(entry) for entry in self._journal.refresh()}

    def sync(self, desired: set[UnicastRoute | FlowSpecRule]) -> tuple[int, int]:
        """Make the announced set exactly `desired` in one batch (announcements first, so a move has no gap).

        The difference is taken under the same lock as the change, so a concurrent client cannot slip between.
        """
        for route in desired:
            self._coverage(route)
        with self._thread_lock, workdir_lock(self.workdir / LOCK_FILE, self.lock_timeout):
            current = {self._route(entry) for entry in self._journal.refresh()}
            added = sorted(desired - current, key=route_to_json)
            removed = sorted(current - desired, key=route_to_json)
            if added or removed:
                self._apply_locked(added, removed)
        return len(added), len(removed)
