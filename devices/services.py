"""Service functions of the inventory: drivers and speakers for rows, center load reports, telemetry polls.

Drivers know nothing of the ORM; this module is where inventory rows become driver arguments (credentials are
decrypted here and handed over, never logged).
"""

from __future__ import annotations

import logging
import math
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from core.actors import SYSTEM, Actor
from core.audit import record_audit
from core.errors import ValidationProblem
from core.events import publish
from devices.choices import UpstreamPeerSessionStateChoices
from devices.drivers.base import ConfigDriver, DriverError, HostKeyError
from devices.drivers.bgp import BgpNeighborConfig, ExaBgpProcess, ExaBgpSpeaker
from devices.drivers.hostkeys import fingerprint
from devices.drivers.junos import JunosDriver
from devices.drivers.napalm_driver import NapalmDriver
from devices.models import BgpSpeaker, Router, ScrubbingCenter, UpstreamPeer

logger = logging.getLogger(__name__)

DRIVER_TIMEOUT_S = 30
# Junos / NAPALM peer states mapped onto ours; anything else a router says (OpenSent, OpenConfirm) is "connect".
_SESSION_STATES = {
    "established": UpstreamPeerSessionStateChoices.ESTABLISHED,
    "idle": UpstreamPeerSessionStateChoices.IDLE,
    "active": UpstreamPeerSessionStateChoices.ACTIVE,
    "connect": UpstreamPeerSessionStateChoices.CONNECT,
    "opensent": UpstreamPeerSessionStateChoices.CONNECT,
    "openconfirm": UpstreamPeerSessionStateChoices.CONNECT,
}


def driver_for(router: Router, *, timeout: int = DRIVER_TIMEOUT_S) -> ConfigDriver:
    """A driver for `router` (not yet opened): PyEZ for Juniper, NAPALM with the row's platform for the rest.

    The driver checks the router's SSH host key when it opens, before logging in, against `trust_host_key`: the
    first key seen is recorded, a changed key is refused (HostKeyError) until an operator confirms it.
    """
    def trust(presented: str) -> str:
        return trust_host_key(router, presented)

    if router.uses_pyez:
        return JunosDriver(router.mgmt_host, router.mgmt_port, router.username, router.password, timeout=timeout,
                           host_key=router.ssh_host_key or None, trust_host_key=trust)
    return NapalmDriver(router.platform, router.mgmt_host, router.mgmt_port, router.username, router.password,
                        timeout=timeout, host_key=router.ssh_host_key or None, trust_host_key=trust)


def trust_host_key(router: Router, presented: str) -> str:
    """The key to accept from `router`, given the one it `presented`; raises HostKeyError when it changed.

    First contact records the presented key (audited). A different key than the recorded one is kept as
    `ssh_host_key_offered` with an audit row (once per offered key), and the router is refused until an operator
    confirms it (`confirm_router_host_key`).
    """
    router.refresh_from_db(fields=["ssh_host_key", "ssh_host_key_offered"])
    if not router.ssh_host_key:
        with transaction.atomic():
            if Router.objects.filter(pk=router.pk, ssh_host_key="").update(ssh_host_key=presented):
                record_audit(SYSTEM, "router.host_key.record", obj=router,
                             diff={"host": f"{router.mgmt_host}:{router.mgmt_port}",
                                   "fingerprint": fingerprint(presented)})
        router.refresh_from_db(fields=["ssh_host_key", "ssh_host_key_offered"])  # another process may have won
    recorded = router.ssh_host_key
    if presented != recorded:
        if router.ssh_host_key_offered != presented:
            with transaction.atomic():
                Router.objects.filter(pk=router.pk).update(ssh_host_key_offered=presented)
                record_audit(SYSTEM, "router.host_key.mismatch", obj=router,
                             diff={"recorded": fingerprint(recorded), "offered": fingerprint(presented)})
            router.ssh_host_key_offered = presented
        logger.error("router %s: SSH host key changed to %s; refusing to connect until an operator confirms it",
                     router.name, fingerprint(presented))
        raise HostKeyError(f"{router.mgmt_host}: SSH host key {fingerprint(presented)} is not the recorded "
                           f"{fingerprint(recorded)}; refusing to connect", presented=presented)
    return recorded


def confirm_router_host_key(router: Router, *, fingerprint_seen: str, acting_user: Actor) -> str:
    """Accept the key the router offered instead of its recorded one; `fingerprint_seen` must name it.

    The operator reads the fingerprint from the router's console (or its vendor) and passes it, so a key is never
    accepted blindly. Audited. Returns the new fingerprint; raises ValidationProblem.
    """
    with transaction.atomic():
        router = Router.objects.select_for_update().get(pk=router.pk)
        offered = router.ssh_host_key_offered
        if not offered:
            raise ValidationProblem("ssh_host_key", f"router {router.name} has no changed host key to confirm")
        if fingerprint_seen.strip() != fingerprint(offered):
            raise ValidationProblem("fingerprint", f"the offered key is {fingerprint(offered)}, not {fingerprint_seen}")
        old = router.ssh_host_key
        Router.objects.filter(pk=router.pk).update(ssh_host_key=offered, ssh_host_key_offered="")
        record_audit(acting_user, "router.host_key.confirm", obj=router,
                     diff={"old": fingerprint(old) if old else "", "new": fingerprint(offered)})
    return fingerprint(offered)


def speaker_client(speaker: BgpSpeaker) -> ExaBgpSpeaker:
    """A client for the running speaker of this row (cheap; no connection is kept)."""
    return ExaBgpSpeaker(speaker.workdir)


def neighbor_configs(speaker: BgpSpeaker) -> list[BgpNeighborConfig]:
    return [
        BgpNeighborConfig(
            peer_address=neighbor.peer_address, peer_as=neighbor.peer_as, families=tuple(neighbor.families),
            passive=neighbor.passive, port=neighbor.port, description=neighbor.description,
        )
        for neighbor in speaker.neighbors.order_by("peer_address")
    ]


def speaker_process(speaker: BgpSpeaker) -> ExaBgpProcess:
    """The supervisor of this speaker's ExaBGP, configured from the row and its neighbor rows (not started)."""
    if speaker.kind != "exabgp":
        raise ValidationProblem("kind", f"speaker kind {speaker.kind!r} is not implemented")
    return ExaBgpProcess(speaker.workdir, speaker.router_id, speaker.local_as, speaker.local_address,
                         neighbor_configs(speaker))


def _check_rate(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationProblem(field, "must be a number")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValidationProblem(field, "must be a finite number >= 0")
    return number


def record_center_load(
    center: ScrubbingCenter, *, load_gbps: float, load_mpps: float, healthy: bool = True, acting_user: Actor,
    now: datetime | None = None,
) -> ScrubbingCenter:
    """Store a load report of a center's appliances and tell the SOC (on commit).

    Reports arrive every few seconds, so only a change of health is audited; the load itself is telemetry.
    """
    gbps = _check_rate("load_gbps", load_gbps)
    mpps = _check_rate("load_mpps", load_mpps)
    if not isinstance(healthy, bool):
        raise ValidationProblem("healthy", "must be true or false")
    with transaction.atomic():
        locked = ScrubbingCenter.objects.select_for_update().get(pk=center.pk)
        was_healthy = locked.healthy
        locked.load_gbps, locked.load_mpps, locked.healthy = gbps, mpps, healthy
        locked.load_updated_at = now or timezone.now()
        locked.save(update_fields=["load_gbps", "load_mpps", "healthy", "load_updated_at"])
        if was_healthy != healthy:
            record_audit(acting_user, "center.health", obj=locked, diff={"healthy": [was_healthy, healthy]},
                         reason="reported by the center's telemetry")
        publish("center.load", {"center": locked.slug, "load_gbps": gbps, "load_mpps": mpps, "healthy": healthy},
                tenant_schema=None)
    return locked


def _session_state(neighbor: dict[str, object] | None) -> str:
    if neighbor is None:
        return UpstreamPeerSessionStateChoices.DOWN
    if neighbor.get("is_up"):
        return UpstreamPeerSessionStateChoices.ESTABLISHED
    state = str(neighbor.get("state", "")).lower()
    return _SESSION_STATES.get(state, UpstreamPeerSessionStateChoices.DOWN)


def _utilisation(peer: UpstreamPeer, counters: dict[str, int] | None, now: datetime) -> tuple[float | None, dict]:
    """The link's busier direction over the time since the last sample, as a fraction of capacity.

    Returns (utilisation or None when it cannot be computed yet, the new sample to keep). A counter that went
    backwards (reset, wrap, replaced line card) gives no figure this time and starts a new sample.
    """
    if counters is None:
        return None, {}
    sample = {"rx_octets": int(counters.get("rx_octets", 0)), "tx_octets": int(counters.get("tx_octets", 0)),
              "at": now.timestamp()}
    previous = peer.telemetry_sample or {}
    elapsed = sample["at"] - float(previous.get("at", sample["at"]))
    if not previous or elapsed <= 0 or peer.capacity_gbps <= 0:
        return None, sample
    deltas = [sample[key] - int(previous.get(key, 0)) for key in ("rx_octets", "tx_octets")]
    if min(deltas) < 0:
        return None, sample
    bits_per_second = max(deltas) * 8 / elapsed
    return min(bits_per_second / (peer.capacity_gbps * 1e9), 1.0), sample


def poll_router_telemetry(router: Router, *, now: datetime | None = None) -> dict[str, object]:
    """Read BGP sessions and interface counters from `router` and update its upstream peers.

    Device I/O: one driver session (read-only RPCs). A DriverError is logged and marks the router's peers
    `unknown`; it is never raised, so beat's fan-out keeps going; the result says what happened.
    """
    peers = list(router.upstreams.all())
    try:
        with driver_for(router) as driver:
            neighbors = driver.get_bgp_neighbors()
            counters = driver.get_interfaces_counters() if any(peer.interface for peer in peers) else {}
    except DriverError as error:
        logger.warning("telemetry poll of router %s failed: %s: %s", router.name, type(error).__name__, error)
        UpstreamPeer.objects.filter(router=router).update(session_state=UpstreamPeerSessionStateChoices.UNKNOWN)
        return {"router": router.name, "ok": False, "error": type(error).__name__, "transient": error.transient,
                "peers": len(peers)}
    now = now or timezone.now()
    with transaction.atomic():
        for peer in peers:
            peer.session_state = _session_state(neighbors.get(peer.neighbor_address))
            utilisation, peer.telemetry_sample = _utilisation(
                peer, counters.get(peer.interface) if peer.interface else None, now)
            if utilisation is not None:
                peer.utilisation = utilisation
            peer.telemetry_updated_at = now
            peer.save(update_fields=["session_state", "utilisation", "telemetry_sample", "telemetry_updated_at"])
        Router.objects.filter(pk=router.pk).update(last_seen_at=now)
    return {"router": router.name, "ok": True, "peers": len(peers),
            "up": sum(1 for peer in peers if peer.session_up)}
