"""The pure route-engineering engine: from live attacks, the network and tenants' policies to explained plans.

No ORM and no I/O here: the services layer loads values, calls `plan_mitigations`, validates (again) with
`mitigation.safety`, and stores the result.
"""

from mitigation.engine.planner import plan_mitigations
from mitigation.engine.types import (
    EDGE_TARGET,
    REALTIME_PROFILES,
    ActionKind,
    AppProfile,
    CenterLoad,
    EngineSettings,
    Level,
    LiveAttack,
    NetworkSnapshot,
    PlannedAction,
    PlannedMitigation,
    PlanResult,
    PolicyInput,
    PreviousPlan,
    ScrubbingCenterState,
    UpstreamPeerState,
)

__all__ = [
    "EDGE_TARGET",
    "REALTIME_PROFILES",
    "ActionKind",
    "AppProfile",
    "CenterLoad",
    "EngineSettings",
    "Level",
    "LiveAttack",
    "NetworkSnapshot",
    "PlanResult",
    "PlannedAction",
    "PlannedMitigation",
    "PolicyInput",
    "PreviousPlan",
    "ScrubbingCenterState",
    "UpstreamPeerState",
    "plan_mitigations",
]
