"""The values the route-engineering engine reads and writes: plain frozen dataclasses, no ORM.

The services layer loads the public schema into these values (a `NetworkSnapshot`, one `PolicyInput` per
tenant, one `LiveAttack` per attack), calls `plan_mitigations()`, and stores the `PlanResult`. Keeping the engine
free of the ORM makes it testable by properties and fast enough to replan every live attack at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from collector.signals import AttackVector
from devices.drivers.base import FlowSpecRule, UnicastRoute


class AppProfile(StrEnum):
    """What the tenant runs behind the prefix; it decides which actions hurt the service least."""

    WEB = "web"
    API = "api"
    DNS = "dns"
    GAMING = "gaming"
    VOIP = "voip"
    GENERIC = "generic"


# Profiles whose users feel every millisecond: they prefer filtering at the edge to a detour through a center.
REALTIME_PROFILES = frozenset({AppProfile.GAMING, AppProfile.VOIP})


class ActionKind(StrEnum):
    """The kinds of routing change Sluice can make, and the names tenants use to allow them."""

    FLOWSPEC = "flowspec"
    DIVERSION = "diversion"
    RTBH = "rtbh"


class Level(StrEnum):
    """The escalation ladder. `rank` orders it, so that hysteresis can tell escalation from de-escalation."""

    NONE = "none"
    FLOWSPEC = "flowspec"
    DIVERSION = "diversion"
    RTBH = "rtbh"

    @property
    def rank(self) -> int:
        return _LEVEL_RANKS[self]


_LEVEL_RANKS = {Level.NONE: 0, Level.FLOWSPEC: 1, Level.DIVERSION: 2, Level.RTBH: 3}


@dataclass(frozen=True)
class ScrubbingCenterState:
    """A scrubbing center as the engine sees it: capacity, current load, health and how to send traffic to it.

    `stale` says the load figures were not refreshed recently (less trusted); `data_age_s` is how old they are,
    and beyond `EngineSettings.max_data_age_s` the center counts as unhealthy. `next_hop_v4`/`next_hop_v6` are
    where diverted traffic goes; a center without one for a family cannot take that family by BGP diversion.
    `redirect_target` ("ASN:NN") names its VRF for FlowSpec redirect, the fallback when BGP diversion is filtered.
    """

    id: int
    name: str
    region: str
    capacity_gbps: float
    capacity_mpps: float
    load_gbps: float = 0.0
    load_mpps: float = 0.0
    healthy: bool = True
    stale: bool = False
    data_age_s: float = 0.0
    next_hop_v4: str | None = None
    next_hop_v6: str | None = None
    redirect_target: str | None = None
    vrf: str | None = None


@dataclass(frozen=True)
class UpstreamPeerState:
    """A transit or peering session at a scrubbing center, and what the ISP honours on it.

    `utilisation` is a fraction of `capacity_gbps` (0..1). Communities are the ISP's own values: `blackhole_community`
    for RTBH, `prepend_community` to ask the ISP to prepend towards its peers, `no_export_community` to keep a
    route inside the ISP. `flowspec_rule_limit` is how many FlowSpec rules the ISP accepts from us.
    """

    id: int
    center_id: int
    isp: str
    asn: int
    neighbor_address: str
    capacity_gbps: float
    utilisation: float = 0.0
    session_up: bool = True
    stale: bool = False
    blackhole_community: str | None = None
    prepend_community: str | None = None
    no_export_community: str | None = None
    flowspec_accepted: bool = False
    flowspec_rule_limit: int = 0

    @property
    def target(self) -> str:
        """How planned actions name this peer in `PlannedAction.targets`."""
        return f"peer:{self.id}"


# How planned actions name the provider's own edge routers (all of them hold every Sluice FlowSpec rule).
EDGE_TARGET = "edge"


@dataclass(frozen=True)
class NetworkSnapshot:
    """The provider's network at one moment: every scrubbing center and upstream peer."""

    centers: tuple[ScrubbingCenterState, ...]
    peers: tuple[UpstreamPeerState, ...]
    taken_at: datetime


@dataclass(frozen=True)
class PolicyInput:
    """What the engine must respect for one tenant: its verified space, latency limits, profile and permissions.

    The latency threshold is looked up per center first, then per region, then the default. `latency_ms` holds
    the measured latency from each center (by id) to the tenant; a center without a measurement is never chosen,
    because the engine cannot promise the threshold there.
    """

    tenant_id: int
    slug: str
    verified_prefixes: tuple[str, ...]
    latency_threshold_ms: float = 50.0
    center_thresholds_ms: Mapping[int, float] = field(default_factory=dict)
    region_thresholds_ms: Mapping[str, float] = field(default_factory=dict)
    latency_ms: Mapping[int, float] = field(default_factory=dict)
    profile: AppProfile = AppProfile.GENERIC
    allowed_actions: frozenset[ActionKind] = frozenset({ActionKind.FLOWSPEC, ActionKind.DIVERSION})

    def threshold_for(self, center: ScrubbingCenterState) -> float:
        if center.id in self.center_thresholds_ms:
            return self.center_thresholds_ms[center.id]
        return self.region_thresholds_ms.get(center.region, self.latency_threshold_ms)

    def allows(self, kind: ActionKind) -> bool:
        return kind in self.allowed_actions


@dataclass(frozen=True)
class LiveAttack:
    """An attack in progress on `target` (an address or a prefix) of one tenant."""

    id: int
    tenant_id: int
    target: str
    vectors: tuple[AttackVector, ...]
    bps: int
    pps: int
    top_sources: tuple[str, ...] = ()

    @property
    def source_blocks(self) -> tuple[str, ...]:
        """Every source of the attack, when its detector named them all as blocks ("192.0.2.7/32"): what a detector
        does when a few sources carry the attack (see collector.detect). Plain addresses are only the heaviest of
        many sources, and give nothing to match on."""
        if not self.top_sources or not all("/" in source for source in self.top_sources):
            return ()
        return self.top_sources

    @property
    def gbps(self) -> float:
        return self.bps / 1e9

    @property
    def mpps(self) -> float:
        return self.pps / 1e6


@dataclass(frozen=True)
class PreviousPlan:
    """What the last plan did for an attack and since when, so that the next plan does not flap."""

    attack_id: int
    level: Level
    center_id: int | None
    since: datetime


@dataclass(frozen=True)
class EngineSettings:
    """The knobs of the planner and of its cost function, in one place so the benchmark's ILP sees the same ones.

    Costs are in abstract units. The ladder is encoded in them: any feasible diversion costs far less than RTBH,
    and RTBH far less than leaving an attack unmitigated.
    """

    headroom_reserve: float = 0.05
    stale_headroom_factor: float = 0.5
    max_data_age_s: float = 600.0
    upstream_saturation: float = 0.85
    hot_utilisation: float = 0.8
    hot_weight: float = 1.0
    divert_base: float = 10.0
    latency_weight: float = 10.0
    realtime_ms_weight: float = 1.0
    stale_penalty: float = 15.0
    upstream_penalty: float = 20.0
    redirect_penalty: float = 5.0
    move_penalty: float = 15.0
    deescalate_penalty: float = 20.0
    deescalate_hold_s: float = 300.0
    deescalate_hold_penalty: float = 400.0
    flowspec_exact: float = 15.0
    flowspec_exact_realtime: float = 5.0
    flowspec_partial: float = 120.0
    flowspec_partial_realtime: float = 40.0
    flowspec_only_max_gbps: float = 100.0
    rtbh_cost: float = 5000.0
    unmitigated_cost: float = 100000.0
    prepend_count: int = 3
    edge_rule_cap: int = 3000
    # An attack from few sources gets each of its rules once per source block, at most this many blocks per rule.
    source_blocks_max: int = 8
    dns_response_rate_bps: int = 50_000_000
    icmp_rate_bps: int = 10_000_000
    realtime_udp_rate_bps: int = 1_000_000_000
    syn_rate_bps: int = 100_000_000
    rtbh_next_hop_v4: str = "192.0.2.1"
    rtbh_next_hop_v6: str = "100::1"
    search_budget_ms: float = 15.0


@dataclass(frozen=True)
class PlannedAction:
    """One routing change: a FlowSpec rule, a diversion route or an RTBH route, where it goes, and why.

    `targets` names the receivers: `EDGE_TARGET` for the provider's edge routers, `peer:<id>` for upstreams.
    """

    kind: ActionKind
    route: FlowSpecRule | UnicastRoute
    targets: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class PlannedMitigation:
    """The plan for one attack: its level on the ladder, its center, its actions, and the reasons for them."""

    attack_id: int
    tenant_id: int
    center_id: int | None
    level: Level
    actions: tuple[PlannedAction, ...]
    reason: str
    inputs: dict[str, object]
    cost: float


@dataclass(frozen=True)
class CenterLoad:
    """A center's load once the plan is in place (including traffic the plan diverts to it)."""

    center_id: int
    name: str
    load_gbps: float
    load_mpps: float
    capacity_gbps: float
    capacity_mpps: float
    attacks: int


@dataclass(frozen=True)
class PlanResult:
    """Every live attack's plan, the centers' loads after it, and the total cost the planner minimised."""

    mitigations: tuple[PlannedMitigation, ...]
    center_loads: dict[int, CenterLoad]
    total_cost: float

    def for_attack(self, attack_id: int) -> PlannedMitigation:
        for mitigation in self.mitigations:
            if mitigation.attack_id == attack_id:
                return mitigation
        raise KeyError(attack_id)
