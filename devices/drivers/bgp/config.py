"""Speaker settings and the ExaBGP files rendered from them.

Sluice runs its own ExaBGP per speaker, so the whole configuration is generated here from a few values; nothing
is read from Django settings. Every address must be on the loopback range in the lab, but the values are the
same ones a production speaker uses, so the rendering is not lab-specific.
"""

from __future__ import annotations

import ipaddress
import json
import os
import pwd
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from devices.drivers.base import RenderError

FAMILIES = ("ipv4 unicast", "ipv6 unicast", "ipv4 flow", "ipv6 flow")
CONTROL_SOCKET = "control.sock"
SETTINGS_FILE = "speaker.json"
JOURNAL_FILE = "announced.journal"
LOCK_FILE = "speaker.lock"
GENERATION_FILE = "generation"
# Present while the kill switch is on: a (re)started speaker replays nothing from its journal.
HOLD_FILE = "hold"
PROCESS_NAME = "sluice-control"
# What may stand inside a quoted ExaBGP description: no quote, brace, semicolon, backslash, hash or line break, so
# a description can never end its statement and start another (`process`, `neighbor`, ...).
DESCRIPTION = re.compile(r"[A-Za-z0-9 _.,:/()@+=-]{0,200}", re.ASCII)
# Paths written unquoted (`run`) or single-quoted (env file): plain path characters only.
SAFE_PATH = re.compile(r"[A-Za-z0-9_./+@=,-]+", re.ASCII)


def check_description(value: str) -> str:
    """The description if it is safe inside ExaBGP's quotes; raises RenderError otherwise."""
    if not isinstance(value, str) or not DESCRIPTION.fullmatch(value):
        raise RenderError(f"description {value!r} may hold letters, digits, spaces and _.,:/()@+=- only")
    return value


def check_path(path: Path | str) -> str:
    text = str(path)
    if not SAFE_PATH.fullmatch(text):
        raise RenderError(f"path {text!r} holds characters ExaBGP's configuration cannot carry safely")
    return text


@dataclass(frozen=True)
class BgpNeighborConfig:
    """One BGP session of the speaker: an edge router or upstream that receives Sluice's routes.

    `port` is the peer's TCP port we connect to, or, with `passive`, the port the speaker listens on for it.
    `families` is a subset of FAMILIES ("ipv4 unicast", "ipv6 unicast", "ipv4 flow", "ipv6 flow").
    """

    peer_address: str
    peer_as: int
    families: tuple[str, ...] = FAMILIES
    passive: bool = False
    port: int = 179
    hold_time: int = 90
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "peer_address", str(ipaddress.ip_address(self.peer_address)))
        unknown = set(self.families) - set(FAMILIES)
        if unknown or not self.families:
            raise ValueError(f"families must be a non-empty subset of {FAMILIES}, got {self.families}")
        object.__setattr__(self, "families", tuple(f for f in FAMILIES if f in self.families))
        if not 0 < self.port < 65536:
            raise ValueError(f"bad port {self.port}")
        if not 0 < self.peer_as < 2**32:
            raise ValueError(f"bad peer AS {self.peer_as}")
        if not isinstance(self.hold_time, int) or not (self.hold_time == 0 or 3 <= self.hold_time <= 65535):
            raise ValueError(f"bad hold time {self.hold_time!r}")
        if not isinstance(self.description, str) or not DESCRIPTION.fullmatch(self.description):
            raise ValueError(f"description {self.description!r} may hold letters, digits, spaces and _.,:/()@+=- only")

    def carries(self, family: str) -> bool:
        return family in self.families


@dataclass(frozen=True)
class SpeakerSettings:
    """What every process driving a speaker must know about it; written to the workdir as JSON.

    Clients read it to split announcements by neighbor and to refuse a route no neighbor can carry, because
    ExaBGP answers `done` even when the family is not configured on any neighbor.
    """

    router_id: str
    local_as: int
    local_address: str
    neighbors: tuple[BgpNeighborConfig, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        ipaddress.IPv4Address(self.router_id)
        object.__setattr__(self, "local_address", str(ipaddress.ip_address(self.local_address)))
        object.__setattr__(self, "neighbors", tuple(self.neighbors))
        addresses = [n.peer_address for n in self.neighbors]
        if len(set(addresses)) != len(addresses):
            raise ValueError("duplicate neighbor addresses")
        if not 0 < self.local_as < 2**32:
            raise ValueError(f"bad local AS {self.local_as}")

    def neighbor(self, address: str) -> BgpNeighborConfig:
        canonical = str(ipaddress.ip_address(address))
        for neighbor in self.neighbors:
            if neighbor.peer_address == canonical:
                return neighbor
        raise KeyError(address)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SpeakerSettings:
        data = json.loads(text)
        neighbors = tuple(
            BgpNeighborConfig(**{**n, "families": tuple(n["families"])}) for n in data.pop("neighbors")
        )
        return cls(neighbors=neighbors, **data)

    @classmethod
    def load(cls, workdir: Path) -> SpeakerSettings:
        return cls.from_json((workdir / SETTINGS_FILE).read_text())


def _local_address_for(settings: SpeakerSettings, neighbor: BgpNeighborConfig) -> str:
    """The session's source address: the speaker's own for its family, else the loopback of the peer's family."""
    peer = ipaddress.ip_address(neighbor.peer_address)
    local = ipaddress.ip_address(settings.local_address)
    if peer.version == local.version:
        return str(local)
    raise RenderError(f"neighbor {neighbor.peer_address} is not of the family of {settings.local_address}")


def render_exabgp_config(settings: SpeakerSettings, workdir: Path, python: str = sys.executable) -> str:
    """ExaBGP configuration: one control process (our api_helper) bound to every neighbor.

    adj-rib-out is on so that ExaBGP re-sends everything when a session comes back, and routes injected before a
    session is up are kept and sent once it is.
    """
    helper = Path(__file__).with_name("api_helper.py")
    lines = [
        f"process {PROCESS_NAME} {{",
        f"  run {check_path(python)} {check_path(helper)} {check_path(workdir)};",
        "  encoder text;",
        "}",
        "",
    ]
    for neighbor in settings.neighbors:
        lines += [
            f"neighbor {neighbor.peer_address} {{",
            f"  router-id {settings.router_id};",
            f"  local-address {_local_address_for(settings, neighbor)};",
            f"  local-as {settings.local_as};",
            f"  peer-as {neighbor.peer_as};",
            f"  hold-time {neighbor.hold_time};",
            "  adj-rib-out true;",
            "  group-updates true;",
        ]
        if neighbor.description:
            # Checked again here: the settings file may have been edited since the value was constructed.
            lines.append(f'  description "{check_description(neighbor.description)}";')
        if neighbor.passive:
            lines += ["  passive true;", f"  listen {neighbor.port};"]
        else:
            lines += ["  passive false;", f"  connect {neighbor.port};"]
        lines.append("  family {")
        lines += [f"    {family};" for family in neighbor.families]
        lines += ["  }", f"  api {{ processes [ {PROCESS_NAME} ]; }}", "}", ""]
    return "\n".join(lines)


def render_exabgp_env(settings: SpeakerSettings, workdir: Path) -> str:
    """ExaBGP environment: no CLI pipes (our control socket replaces them), quiet per-route logging, no user switch.

    ExaBGP drops to `nobody` by default, which then cannot write into a root-owned workdir; run as whoever
    started it instead.
    """
    passive_ports = sorted({n.port for n in settings.neighbors if n.passive})
    if len(passive_ports) > 1:
        raise RenderError("ExaBGP listens on one port: passive neighbors must share it")
    bind = f"'{ipaddress.ip_address(settings.local_address)}'" if passive_ports else "''"
    port = passive_ports[0] if passive_ports else 179
    user = pwd.getpwuid(os.getuid()).pw_name
    return "\n".join(
        [
            "[exabgp.api]",
            "ack = true",
            "cli = false",
            "encoder = text",
            "respawn = true",
            "terminate = false",
            "",
            "[exabgp.daemon]",
            "daemonize = false",
            "drop = false",
            f"pid = '{check_path(workdir / 'exabgp.pid')}'",
            f"user = '{user}'",
            "umask = '0o022'",
            "",
            "[exabgp.log]",
            "destination = 'stdout'",
            "level = INFO",
            "processes = false",
            "statistics = false",
            "",
            "[exabgp.tcp]",
            f"bind = {bind}",
            f"port = {port}",
            "",
        ]
    )


def set_hold(workdir: Path, on: bool) -> None:
    """Put the speaker's journal replay on hold (the kill switch is on) or release it."""
    path = workdir / HOLD_FILE
    if on:
        workdir.mkdir(parents=True, exist_ok=True)
        path.write_text("kill switch on: replay nothing\n")
    else:
        path.unlink(missing_ok=True)
