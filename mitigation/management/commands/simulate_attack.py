"""Watch one attack go the whole way: traffic, detection, decision, routes on the routers, verdicts, withdrawal.

By default the attack is traffic: streams of the vector's shape sent through the demo's emulated data plane
(`python -m netsim.demo`, which `./sluice run` starts), entering at an edge router. The collector detects it from
the flows the data plane exports, Sluice plans and pushes, the routers' FlowSpec filters and the scrubbing centers
drop it (their counters and reports are the closed loop's evidence), and when the streams stop the detectors and
counters see the attack end. `--direct` records the signal itself instead, without traffic (no data plane needed).

The data plane is reached over its control socket (`mitigation.integrations.dataplane`), at `--dataplane`, else
the port `netsim.demo` wrote to `var/netsim/dataplane.port`, else 127.0.0.1:4790.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from collector.signals import AMPLIFICATION_SOURCE_PORTS, AttackSignal, AttackVector, SignalPhase
from core.actors import CLOSED_LOOP, Actor
from devices.models import Router
from mitigation.choices import AttackStatusChoices
from mitigation.integrations.dataplane import DataPlaneUnreachable, dataplane_address, dataplane_call
from mitigation.models import Attack, Mitigation
from mitigation.services.signals import record_signal
from mitigation.story.text import rate_text
from tenants.models import Tenant, VerifiedPrefix

ACTOR = Actor("detector", "simulate_attack")
START_COMMAND = ("./sluice run (or alone: .venv/bin/python -m netsim.demo netsim/demo-network.yaml --dir var/netsim "
                 "--collector 127.0.0.1:4739)")
FINAL_STATES = {"ended", "failed", "rejected"}

# Attackers come from the benchmarking ranges (RFC 2544, RFC 5180): no tenant owns them, none is on a never-block list.
ATTACKERS = {4: "198.18.0.0/15", 6: "2001:2::/48"}
# Reflection comes from a handful of amplifiers, each a steady sender the detector names and FlowSpec can match;
# spoofed floods from a spread too wide to name (every block carries a thirty-second of the flood).
REFLECTORS = 8
SPOOFED_BLOCKS = 32
CARPET_HOSTS, CARPET_FIRST_HOST = 32, 64
FLOOD_PORT = 27015
TCP_SYN, TCP_ACK, TCP_PSH = 0x02, 0x10, 0x08
# The IP length of each vector's packets: reflected answers are large, SYN and ACK floods are bare headers.
PACKET_SIZES: dict[AttackVector, int] = {
    AttackVector.DNS_AMPLIFICATION: 1400, AttackVector.NTP_AMPLIFICATION: 468,
    AttackVector.MEMCACHED_AMPLIFICATION: 1400, AttackVector.SSDP_AMPLIFICATION: 320,
    AttackVector.CLDAP_AMPLIFICATION: 1400, AttackVector.CHARGEN_AMPLIFICATION: 1000,
    AttackVector.UDP_FLOOD: 512, AttackVector.SYN_FLOOD: 60, AttackVector.ACK_FLOOD: 60,
    AttackVector.TCP_FLOOD: 1000, AttackVector.ICMP_FLOOD: 1000, AttackVector.GRE_FLOOD: 1400,
    AttackVector.FRAGMENTS: 1400, AttackVector.CARPET_BOMBING: 512, AttackVector.OTHER: 1000,
}
# protocol, source port, destination port, TCP flags, fragment: what the collector's classes tell the vector by
# (collector/aggregate.py, collector/detect.py: vectors_from).
SHAPES: dict[AttackVector, tuple[int, int, int, int, bool]] = {
    AttackVector.UDP_FLOOD: (17, 1024, FLOOD_PORT, 0, False),
    AttackVector.SYN_FLOOD: (6, 1024, 443, TCP_SYN, False),
    AttackVector.ACK_FLOOD: (6, 1024, 443, TCP_ACK, False),
    AttackVector.TCP_FLOOD: (6, 1024, 443, TCP_PSH | TCP_ACK, False),
    AttackVector.ICMP_FLOOD: (1, 0, 0, 0, False),
    AttackVector.GRE_FLOOD: (47, 0, 0, 0, False),
    AttackVector.FRAGMENTS: (17, 0, 0, 0, True),
    AttackVector.CARPET_BOMBING: (17, 1024, FLOOD_PORT, 0, False),
    AttackVector.OTHER: (50, 0, 0, 0, False),  # ESP: a protocol no class claims
}


def address_option(value: str | None) -> tuple[str, int]:
    """`--dataplane` as (host, port); without it the port `netsim.demo` wrote, else the default."""
    try:
        return dataplane_address(value, Path(settings.BASE_DIR))
    except ValueError as error:
        raise CommandError(f"--dataplane: {error}") from error


def attack_streams(vector: AttackVector, target: str, bps: int, ingress: str, *,
                   prefix: str | None = None) -> list[dict[str, Any]]:
    """The data plane streams (as `add_stream` takes them) that make `bps` of `vector` on `target`, attack traffic
    entering at `ingress`. Carpet bombing spreads over hosts of `prefix` (the target's verified prefix)."""
    destination = ipaddress.ip_address(target)
    attackers = ipaddress.ip_network(ATTACKERS[destination.version])
    size = PACKET_SIZES[vector]
    if vector in AMPLIFICATION_SOURCE_PORTS:
        return [_stream(f"sim-{target}-{vector}-{index}", str(attackers[index + 1]), target, 17, bps // REFLECTORS,
                        ingress, size, source_port=AMPLIFICATION_SOURCE_PORTS[vector],
                        destination_port=40000 + index)
                for index in range(REFLECTORS)]
    protocol, source_port, destination_port, flags, fragment = SHAPES[vector]
    blocks = list(attackers.subnets(prefixlen_diff=5))  # 32 blocks
    if vector is AttackVector.CARPET_BOMBING:
        hosts = ipaddress.ip_network(prefix or target)
        if hosts.num_addresses < CARPET_FIRST_HOST + CARPET_HOSTS:
            raise CommandError(f"carpet bombing needs a prefix of {CARPET_FIRST_HOST + CARPET_HOSTS} addresses or more")
        targets = [str(hosts[CARPET_FIRST_HOST + index]) for index in range(CARPET_HOSTS)]
    else:
        targets = [target] * SPOOFED_BLOCKS
    return [_stream(f"sim-{target}-{vector}-{index}", str(block), host, protocol, bps // SPOOFED_BLOCKS, ingress,
                    size, source_port=source_port, destination_port=destination_port, tcp_flags=flags,
                    fragment=fragment)
            for index, (block, host) in enumerate(zip(blocks, targets, strict=True))]


def _stream(name: str, source: str, destination: str, protocol: int, bps: int, ingress: str, size: int,
            **fields: Any) -> dict[str, Any]:
    return {"name": name, "source": source, "destination": destination, "protocol": protocol, "bps": bps,
            "ingress": ingress, "packet_size": size, "attack": True, **fields}


class Command(BaseCommand):
    help = ("Send a simulated attack on a tenant's first verified prefix through the demo's data plane (or, with "
            "--direct, record its signal) and follow its detection, mitigation and verdicts to the end.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant", help="tenant slug")
        parser.add_argument("--vector", default=AttackVector.UDP_FLOOD.value, choices=[v.value for v in AttackVector])
        parser.add_argument("--gbps", type=float, default=10.0)
        parser.add_argument("--duration", type=float, default=30.0, help="seconds of attack before it stops")
        parser.add_argument("--target", help="address inside the tenant's verified space (default: its .10 host)")
        parser.add_argument("--wait", type=float, default=120.0, help="seconds to follow the mitigation after the end")
        parser.add_argument("--direct", action="store_true",
                            help="record the signal directly instead of sending traffic (no data plane needed)")
        parser.add_argument("--dataplane", help="the data plane's control address host:port "
                                                "(default: var/netsim/dataplane.port, else 127.0.0.1:4790)")
        parser.add_argument("--ingress", help="edge router the attack enters at (default: the first edge router)")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"no tenant {options['tenant']!r}")
        registry = self._first_prefix(tenant)
        network = ipaddress.ip_network(registry.prefix)
        target = options["target"] or str(network[10] if network.num_addresses > 10 else network[0])
        try:
            ipaddress.ip_address(target)
        except ValueError as error:
            raise CommandError(f"--target must be an address, got {target!r}") from error
        vector = AttackVector(options["vector"])
        bps = int(options["gbps"] * 1e9)
        follower = Follower(self)
        if not options["direct"]:
            address = address_option(options["dataplane"])
            try:
                dataplane_call(address, {"op": "state"})
            except DataPlaneUnreachable as error:
                self.stdout.write(f"{error}.\nStart the data plane with {START_COMMAND}, or pass --dataplane "
                                  "host:port.\nFalling back to --direct: the signal is recorded without traffic.")
            else:
                self._through_dataplane(address, tenant, vector, target, str(network), bps, follower, options)
                return
        self._direct(tenant, vector, target, bps, follower, options)

    def _first_prefix(self, tenant: Tenant) -> VerifiedPrefix:
        registry = VerifiedPrefix.objects.filter(tenant=tenant).order_by("prefix").first()
        if registry is None:
            raise CommandError(f"{tenant.slug} has no verified prefix")
        return registry

    def _direct(self, tenant: Tenant, vector: AttackVector, target: str, bps: int, follower: Follower,
                options: dict[str, Any]) -> None:
        signal = AttackSignal(target=target, vectors=(vector,), bps=bps, pps=bps // 8000, detector="simulate_attack")
        attack = record_signal(signal, acting_user=ACTOR)
        if attack is None:
            raise CommandError(f"{target} is not inside a verified prefix of {tenant.slug}; nothing was recorded")
        self.stdout.write(f"signal: {vector} at {options['gbps']} Gbps on {target} -> attack {attack.pk}")
        follower.follow(attack.pk, deadline=time.monotonic() + options["duration"])
        record_signal(AttackSignal(target=target, vectors=(vector,), bps=0, pps=0, phase=SignalPhase.END,
                                   detector="simulate_attack"), acting_user=ACTOR)
        self.stdout.write("signal: end (the mitigation holds for the tenant's hold-down, then withdraws)")
        follower.follow(attack.pk, deadline=time.monotonic() + options["wait"], until_end=True)

    def _through_dataplane(self, address: tuple[str, int], tenant: Tenant, vector: AttackVector, target: str,
                           prefix: str, bps: int, follower: Follower, options: dict[str, Any]) -> None:
        ingress = options["ingress"] or self._default_ingress()
        streams = attack_streams(vector, target, bps, ingress, prefix=prefix)
        watched = prefix if vector is AttackVector.CARPET_BOMBING else target
        since = time.time()
        with self._sending(address, streams):
            self.stdout.write(f"traffic: {vector} at {options['gbps']} Gbps on {watched} entering at {ingress} "
                              f"({len(streams)} streams from {ATTACKERS[ipaddress.ip_address(target).version]}) "
                              f"for {options['duration']:.0f} s")
            if vector is AttackVector.CARPET_BOMBING:
                self.stdout.write("  (carpet bombing is detected once the whole prefix is over its prefix-wide "
                                  "threshold, 16 times the host's for a /24)")
            deadline = time.monotonic() + options["duration"]
            attack_id = self._await_attack(watched, since, deadline, address, streams)
            if attack_id is not None:
                follower.follow(attack_id, deadline=deadline, dataplane=address, streams=streams)
        self.stdout.write("traffic: stopped (the detectors and counters see the attack end; the mitigation holds "
                          "for the tenant's hold-down, then withdraws)")
        if attack_id is None:
            self.stdout.write(f"no attack was detected on {watched}: is the collector running (manage.py "
                              f"run_collector) and {tenant.slug}'s threshold under {options['gbps']} Gbps?")
            return
        follower.follow(attack_id, deadline=time.monotonic() + options["wait"], until_end=True)

    def _default_ingress(self) -> str:
        """The first edge router the flows are exported from (whose exporter the collector accepts), else the
        first edge router."""
        routers = list(Router.objects.filter(enabled=True, role="edge").order_by("pk"))
        if not routers:
            raise CommandError("no edge router in the inventory: load the demo network (manage.py load_demo)")
        return next((r.name for r in routers if r.exporter_addresses), routers[0].name)

    @contextmanager
    def _sending(self, address: tuple[str, int], streams: list[dict[str, Any]]) -> Iterator[None]:
        """The streams in the data plane for the block's length; removed whatever ends it (Ctrl-C too)."""
        added = []
        try:
            for stream in streams:
                dataplane_call(address, {"op": "add_stream", "stream": stream})
                added.append(stream["name"])
            yield
        except DataPlaneUnreachable as error:
            raise CommandError(str(error)) from error
        finally:
            for name in added:
                try:
                    dataplane_call(address, {"op": "remove_stream", "name": name})
                except DataPlaneUnreachable as error:
                    self.stderr.write(f"could not remove stream {name}: {error}")

    def _await_attack(self, watched: str, since: float, deadline: float, address: tuple[str, int],
                      streams: list[dict[str, Any]]) -> int | None:
        """The attack the collector records on the watched target, once it does (None by the deadline)."""
        target = ipaddress.ip_network(watched)
        names = {stream["name"] for stream in streams}
        checked = False
        while time.monotonic() < deadline:
            attack = (Attack.objects.filter(target=target, status=AttackStatusChoices.ACTIVE)
                      .order_by("-started_at").first())
            if attack is not None:
                self.stdout.write(f"detected: {', '.join(attack.vectors)} at {rate_text(attack.bps)} on {attack.target} "
                                  f"by {', '.join(attack.detectors) or 'a detector'} -> attack {attack.pk} "
                                  f"({time.time() - since:.1f} s after the traffic started)")
                return attack.pk
            if not checked and time.time() - since > 3:
                checked = True
                offered = sum(s["offered_bps"] for s in dataplane_call(address, {"op": "state"})["streams"]
                              if s["name"] in names)
                if not offered:
                    self.stdout.write("  the data plane forwards none of the attack: does it know the ingress "
                                      "router? (--ingress)")
            time.sleep(0.5)
        return None


class Follower:
    """Prints what changes in a mitigation: its state and level, the reason for its plan, its verdicts and the
    closed loop's escalations, and what the data plane still delivers of the attack."""

    def __init__(self, command: BaseCommand) -> None:
        self.out = command.stdout
        self.seen: set[str] = set()
        self.verdict = ""
        self.override = ""
        self.delivered: float | None = None

    def follow(self, attack_id: int, *, deadline: float, until_end: bool = False,
               dataplane: tuple[str, int] | None = None, streams: list[dict[str, Any]] | None = None) -> None:
        names = {stream["name"] for stream in streams or []}
        while time.monotonic() < deadline:
            mitigation = Mitigation.objects.filter(attack_id=attack_id).select_related("center").first()
            if mitigation is not None:
                self._show(mitigation)
                if until_end and mitigation.state in FINAL_STATES:
                    return
            if dataplane is not None and names:
                self._show_traffic(dataplane, names)
            time.sleep(0.5)

    def _show(self, mitigation: Mitigation) -> None:
        line = f"{mitigation.state}: {mitigation.level}" + (f" via {mitigation.center.name}" if mitigation.center else "")
        if mitigation.state == "detected":  # the attack's detection line said it; no plan yet
            pass
        elif line not in self.seen:
            self.seen.add(line)
            self.out.write(line)
            if mitigation.reason and mitigation.state in ("applying", "planned", "awaiting_approval"):
                self.out.write(f"  why: {mitigation.reason}")
        if mitigation.override_by == str(CLOSED_LOOP) and mitigation.override_level != self.override:
            self.override = mitigation.override_level
            self.out.write(f"escalated by the closed loop: {mitigation.level} -> {mitigation.override_level}")
        if mitigation.verdict_summary and mitigation.verdict_summary != self.verdict:
            self.verdict = mitigation.verdict_summary
            self.out.write(f"verdict: {mitigation.verdict}: {mitigation.verdict_summary}")

    def _show_traffic(self, address: tuple[str, int], names: set[str]) -> None:
        """The attack's offered and delivered rates, when what gets through moved by a fifth."""
        try:
            streams = [s for s in dataplane_call(address, {"op": "state"})["streams"] if s["name"] in names]
        except DataPlaneUnreachable:
            return
        offered = sum(s["offered_bps"] for s in streams)
        delivered = sum(s["delivered_bps"] for s in streams)
        if self.delivered is None or abs(delivered - self.delivered) > 0.2 * max(delivered, self.delivered, 1e6):
            self.delivered = delivered
            self.out.write(f"data plane: {rate_text(delivered)} of {rate_text(offered)} still reaches the target")
