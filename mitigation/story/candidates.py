"""The centers the engine compared for a decision, side by side, from `Decision.inputs`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mitigation.choices import MitigationLevelChoices
from mitigation.engine.problem import CENTER_OK, STATUS_WORDS
from mitigation.models import Decision


@dataclass(frozen=True)
class CandidateCenter:
    """One center the engine compared for a decision, with the figures it used (None where not recorded)."""

    center_id: int | None
    name: str
    status: int | None
    chosen: bool
    headroom_gbps: float | None
    headroom_mpps: float | None
    latency_ms: float | None
    threshold_ms: float | None
    cost: float | None
    stale: bool
    why: str

    @property
    def within_threshold(self) -> bool | None:
        if self.latency_ms is None or self.threshold_ms is None:
            return None
        return self.latency_ms <= self.threshold_ms


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _why(view: dict[str, Any], chosen: bool, decision: Decision, chosen_cost: float | None) -> str:
    """Chosen, or why not, in words."""
    status = view.get("status")
    if chosen:
        return "chosen"
    if isinstance(status, int) and status in STATUS_WORDS:
        return STATUS_WORDS[status]
    cost = _number(view.get("cost"))
    if decision.level != MitigationLevelChoices.DIVERSION:
        label = MitigationLevelChoices(decision.level).label if decision.level in MitigationLevelChoices.values \
            else decision.level
        better = f" (cost {chosen_cost:.1f} against {cost:.1f})" if cost is not None and chosen_cost is not None \
            else ""
        return f"{label} was the better option{better}"
    if cost is not None and chosen_cost is not None:
        return f"costs more ({cost:.1f} against {chosen_cost:.1f})"
    return "not chosen" if status in (CENTER_OK, None) else f"status {status}"


def candidate_centers(decision: Decision) -> list[CandidateCenter]:
    """The centers the engine compared for `decision`, side by side, from what `Decision.inputs` recorded
    (mitigation.engine.planner._inputs). Old decisions without candidates give an empty list; missing fields
    give None."""
    inputs = decision.inputs if isinstance(decision.inputs, dict) else {}
    views = [view for view in inputs.get("candidates") or () if isinstance(view, dict)]
    if decision.level == MitigationLevelChoices.DIVERSION:
        chosen_cost = next((_number(v.get("cost")) for v in views if v.get("center") == decision.center_id), None)
    else:
        costs = inputs.get("option_costs") if isinstance(inputs.get("option_costs"), dict) else {}
        chosen_cost = _number(costs.get(decision.level)) if costs else None
    candidates = []
    for view in views:
        chosen = decision.level == MitigationLevelChoices.DIVERSION and view.get("center") == decision.center_id \
            and decision.center_id is not None
        status = view.get("status")
        candidates.append(CandidateCenter(
            center_id=view.get("center") if isinstance(view.get("center"), int) else None,
            name=str(view.get("name") or view.get("center") or "?"),
            status=status if isinstance(status, int) else None, chosen=chosen,
            headroom_gbps=_number(view.get("headroom_gbps")), headroom_mpps=_number(view.get("headroom_mpps")),
            latency_ms=_number(view.get("latency_ms")), threshold_ms=_number(view.get("threshold_ms")),
            cost=_number(view.get("cost")), stale=bool(view.get("stale")),
            why=_why(view, chosen, decision, chosen_cost),
        ))
    return candidates
