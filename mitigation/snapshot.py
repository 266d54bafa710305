"""The engine's view of the inventory: the network snapshot it plans against.

Read from the public schema in a fixed number of queries however large the network is, because the engine
replans every live attack on each signal.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from django.utils import timezone

from devices import health
from devices.models import Router, ScrubbingCenter, UpstreamPeer
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
    """Every scrubbing center and upstream peer as the engine sees them at `now` (a fixed number of queries).

    Routers out of service (in maintenance, or failing their pushes) take what stands behind them out of the
    plan: their upstreams count as down, and a center whose every router is out counts as unhealthy, so the
    engine plans around them as it does around any unhealthy center.
    """
    now = now or timezone.now()
    out = {name.split(":", 1)[1] for name in health.out_of_service() if name.startswith("router:")}
    routers = list(Router.objects.values_list("pk", "name", "center_id"))
    out_ids = {pk for pk, name, _ in routers if name in out}
    by_center: dict[int, set[int]] = {}
    for pk, _, center_id in routers:
        if center_id is not None:
            by_center.setdefault(center_id, set()).add(pk)
    centers: list[ScrubbingCenterState] = []
    for center in ScrubbingCenter.objects.order_by("pk"):
        state = center_state(center, now)
        behind = by_center.get(center.pk)
        if behind and behind <= out_ids:
            state = dataclasses.replace(state, healthy=False)
        centers.append(state)
    peers: list[UpstreamPeerState] = []
    for peer in UpstreamPeer.objects.order_by("pk"):
        peer_view = peer_state(peer, now)
        if peer.router_id in out_ids:
            peer_view = dataclasses.replace(peer_view, session_up=False)
        peers.append(peer_view)
    return NetworkSnapshot(centers=tuple(centers), peers=tuple(peers), taken_at=now)
