"""A signal asks for a new plan only when it may change one: a new attack, new vectors or sources, or traffic that
moved by 10 % or more from what planning last saw. A detector's per-second wobble plans nothing."""

from __future__ import annotations

import pytest

from collector.signals import AttackSignal
from core.actors import Actor
from mitigation.services import signals
from tests.support.world import World

pytestmark = pytest.mark.django_db
DETECTOR = Actor("detector", "tests")


@pytest.fixture
def planning_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    runs: list[int] = []
    monkeypatch.setattr(signals, "_schedule_planning", lambda: runs.append(1))
    return runs


def send(bps: int, vectors: tuple[str, ...] = ("udp_flood",), sources: tuple[str, ...] = ()) -> None:
    signals.record_signal(AttackSignal(target="203.0.113.61", vectors=vectors, bps=bps, pps=1_000_000,
                                       top_sources=sources), acting_user=DETECTOR)


def test_only_changes_that_matter_ask_for_a_plan(world: World, planning_runs: list[int]) -> None:
    send(10_000_000_000)
    assert len(planning_runs) == 1, "a new attack is planned"
    from mitigation.models import Mitigation

    Mitigation.objects.filter(attack__target="203.0.113.61/32").update(state="active")
    for wobble in (10_400_000_000, 9_700_000_000, 10_900_000_000):
        send(wobble)
    assert len(planning_runs) == 1, "within 10 % of what planning saw: no new plan"
    send(12_000_000_000)
    assert len(planning_runs) == 2, "20 % more traffic is planned anew"
    send(12_000_000_000, vectors=("udp_flood", "dns_amplification"))
    assert len(planning_runs) == 3, "a new vector is planned anew"
    send(12_000_000_000, vectors=("udp_flood", "dns_amplification"), sources=("192.0.2.7",))
    assert len(planning_runs) == 4, "new sources are planned anew"
    # A slow climb, each step under 10 %, is planned once it is 10 % past what planning last saw.
    for step in (12_500_000_000, 13_000_000_000, 13_300_000_000):
        send(step, vectors=("udp_flood", "dns_amplification"), sources=("192.0.2.7",))
    assert len(planning_runs) == 5
