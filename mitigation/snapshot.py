"""The engine's view of the inventory: the network snapshot it plans against.

Read from the public schema in a fixed number of queries however large the network is, because the engine
replans every live attack on each signal.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from devices.models import ScrubbingCenter, UpstreamPeer
from mitigation.engine.types import NetworkSnapshot, ScrubbingCenterState, UpstreamPeerState

# The age reported for figures that never arrived: finite (it is stored in JSON), beyond any sane maximum age.
NEVER_REPORTED_AGE_S = 1e9


def _age(updated_at: datetime | None, now: datetime) -> float:
    if updated_at is None:
        return NEVER_REPORTED_AGE_S
    return max((now - updated_at).total_seconds(), 0.0)


def center_state(center: ScrubbingCenter, now: datetime) -> ScrubbingCenterState:
    """The engine's view of one center; stale when its load is missing or older than its reporting interval."""
    return ScrubbingCenterState(
        id=center.pk,
        name=center.name,
        region=center.region,
        capacity_gbps=center.capacity_gbps,
        capacity_mpps=center.capacity_mpps,
        load_gbps=center.load_gbps,
        load_mpps=center.load_mpps,
        healthy=center.healthy,
        stale=center.stale_at(now),
        data_age_s=_age(center.load_updated_at, now),
        next_hop_v4=center.diversion_next_hop_v4 or None,
        next_hop_v6=center.diversion_next_hop_v6 or None,
        redirect_target=center.route_target or None,
        vrf=center.routing_instance or None,
    )


def peer_state(peer: UpstreamPeer, now: datetime) -> UpstreamPeerState:
    """The engine's view of one upstream; stale when its polled figures are missing or older than the interval."""
    return UpstreamPeerState(
        id=peer.pk,
        center_id=peer.center_id,
        isp=peer.isp,
        asn=peer.asn,
        neighbor_address=peer.neighbor_address,
        capacity_gbps=peer.capacity_gbps,
        utilisation=peer.utilisation,
        session_up=peer.session_up,
        stale=peer.stale_at(now),
        blackhole_community=peer.blackhole_community or None,
        prepend_community=peer.prepend_community or None,
        no_export_community=peer.no_export_community or None,
        flowspec_accepted=peer.flowspec_accepted,
        flowspec_rule_limit=peer.flowspec_rule_limit,
    )


def network_snapshot(now: datetime | None = None) -> NetworkSnapshot:
    """Every scrubbing center and upstream peer as the engine sees them at `now` (two queries)."""
    now = now or timezone.now()
    centers = tuple(center_state(center, now) for center in ScrubbingCenter.objects.order_by("pk"))
    peers = tuple(peer_state(peer, now) for peer in UpstreamPeer.objects.order_by("pk"))
    return NetworkSnapshot(centers=centers, peers=peers, taken_at=now)
