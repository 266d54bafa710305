"""Watch one attack go the whole way: signal, decision, routes on the routers, withdrawal."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from collector.signals import AttackSignal, AttackVector, SignalPhase
from core.actors import Actor
from mitigation.models import Mitigation
from mitigation.services.signals import record_signal
from tenants.models import Tenant, VerifiedPrefix

ACTOR = Actor("detector", "simulate_attack")


class Command(BaseCommand):
    help = "Post a simulated attack on a tenant's first verified prefix and follow its mitigation to the end."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant", help="tenant slug")
        parser.add_argument("--vector", default=AttackVector.UDP_FLOOD.value, choices=[v.value for v in AttackVector])
        parser.add_argument("--gbps", type=float, default=10.0)
        parser.add_argument("--duration", type=float, default=30.0, help="seconds of attack before the end signal")
        parser.add_argument("--target", help="address inside the tenant's verified space (default: its .10 host)")
        parser.add_argument("--wait", type=float, default=120.0, help="seconds to follow the mitigation after the end")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"no tenant {options['tenant']!r}")
        target = options["target"] or self._default_target(tenant)
        bps = int(options["gbps"] * 1e9)
        signal = AttackSignal(target=target, vectors=(options["vector"],), bps=bps, pps=bps // 8000,
                              detector="simulate_attack")
        attack = record_signal(signal, acting_user=ACTOR)
        if attack is None:
            raise CommandError(f"{target} is not inside a verified prefix of {tenant.slug}; nothing was recorded")
        self.stdout.write(f"signal: {options['vector']} at {options['gbps']} Gbps on {target} -> attack {attack.pk}")
        seen = self._follow(attack.pk, deadline=time.monotonic() + options["duration"])
        record_signal(AttackSignal(target=target, vectors=(options["vector"],), bps=0, pps=0, phase=SignalPhase.END,
                                   detector="simulate_attack"), acting_user=ACTOR)
        self.stdout.write("signal: end (the mitigation holds for the tenant's hold-down, then withdraws)")
        self._follow(attack.pk, deadline=time.monotonic() + options["wait"], seen=seen, until_end=True)

    def _default_target(self, tenant: Tenant) -> str:
        registry = VerifiedPrefix.objects.filter(tenant=tenant).order_by("prefix").first()
        if registry is None:
            raise CommandError(f"{tenant.slug} has no verified prefix")
        network = ipaddress.ip_network(registry.prefix)
        return str(network[10] if network.num_addresses > 10 else network[0])

    def _follow(self, attack_id: int, *, deadline: float, seen: set[str] | None = None, until_end: bool = False) -> set[str]:
        seen = seen if seen is not None else set()
        while time.monotonic() < deadline:
            mitigation = Mitigation.objects.filter(attack_id=attack_id).select_related("center").first()
            if mitigation is not None:
                line = f"{mitigation.state}: {mitigation.level}" + (f" via {mitigation.center.name}" if mitigation.center else "")
                if line not in seen:
                    seen.add(line)
                    self.stdout.write(line)
                    if mitigation.reason and mitigation.state == "applying":
                        self.stdout.write(f"  why: {mitigation.reason}")
                if until_end and mitigation.state in {"ended", "failed", "rejected"}:
                    return seen
            time.sleep(0.5)
        return seen
