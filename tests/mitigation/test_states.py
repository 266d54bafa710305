"""One state machine: the table refuses what it does not allow, and planning never writes over a person's action.

The race tests run planning and a person's action in two threads against PostgreSQL, with committed rows: planning
is held inside its run (after it read the mitigations) while the other thread withdraws, rejects or panics.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection, transaction

from core.actors import Actor
from core.models import AuditEvent
from mitigation.choices import MitigationStateChoices as S
from mitigation.models import Attack, ControlSwitch, Mitigation
from mitigation.services import planning, states
from mitigation.services.lifecycle import reject_mitigation, withdraw_mitigation
from mitigation.services.panic import panic
from tests.support.world import World

CUSTOMER = Actor("user", "acme:admin")


def test_the_table_allows_the_lifecycle_and_nothing_backwards() -> None:
    path = [S.DETECTED, S.PLANNED, S.AWAITING_APPROVAL, S.APPLYING, S.ACTIVE, S.WITHDRAWING, S.ENDED, S.DETECTED]
    for source, target in itertools.pairwise(path):
        assert states.allowed(source, target), (source, target)
    for source, target in [(S.WITHDRAWING, S.APPLYING), (S.WITHDRAWING, S.ACTIVE), (S.ENDED, S.ACTIVE),
                           (S.REJECTED, S.APPLYING), (S.ACTIVE, S.DETECTED), (S.FAILED, S.ACTIVE)]:
        assert not states.allowed(source, target), (source, target)
    assert set(states.ALLOWED) == set(S.values), "every state has a row"


@pytest.mark.django_db
def test_an_illegal_transition_is_refused_and_changes_nothing(world: World) -> None:
    attack = Attack.objects.create(tenant=world.acme, target="203.0.113.41/32")
    mitigation = Mitigation.objects.create(attack=attack, tenant=world.acme, state=S.WITHDRAWING)
    with transaction.atomic():
        row = states.locked([mitigation.pk])[0]
        with pytest.raises(states.IllegalTransition, match="from withdrawing to applying"):
            states.transition(row, S.APPLYING, acting_user=CUSTOMER, action="test")
    mitigation.refresh_from_db()
    assert mitigation.state == S.WITHDRAWING
    assert not AuditEvent.objects.filter(object_id=str(mitigation.pk), action="test").exists()


def test_a_change_outside_a_transaction_is_refused() -> None:
    mitigation = Mitigation(state=S.ACTIVE)
    with pytest.raises(RuntimeError, match="inside a transaction"):
        states.Transitions(CUSTOMER).move(mitigation, S.WITHDRAWING, action="test")


@pytest.fixture
def committed(world: World, django_db_blocker: Any) -> Iterator[None]:
    with django_db_blocker.unblock():
        yield
        Attack.objects.filter(target__net_contained_or_equal="203.0.113.40/29").delete()
        ControlSwitch.objects.update(panic=False)


def _in_thread(work: Callable[[], object], errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            work()
        except BaseException as error:  # handed to the test thread, which fails on it
            errors.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _race(monkeypatch: pytest.MonkeyPatch, action: Callable[[], object]) -> list[BaseException]:
    """Hold planning inside its run (rows read, plan not yet written), run `action` beside it, then let it go."""
    entered, release = threading.Event(), threading.Event()
    engine = planning.plan_mitigations

    def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(20)
        return engine(*args, **kwargs)

    monkeypatch.setattr(planning, "plan_mitigations", held)
    errors: list[BaseException] = []
    planner = _in_thread(planning.plan_attacks, errors)
    assert entered.wait(20), "planning never started"
    other = _in_thread(action, errors)
    other.join(0.5)  # without row locks the action would be done by now, and planning would write over it
    release.set()
    planner.join(30)
    other.join(30)
    return errors


def _trail(mitigation: Mitigation) -> Any:
    return AuditEvent.objects.filter(object_type="mitigation.Mitigation", object_id=str(mitigation.pk)).order_by("pk")


def _mitigation(world: World, state: str, address: str) -> Mitigation:
    attack = Attack.objects.create(tenant=world.acme, target=f"{address}/32", vectors=["udp_flood"],
                                   bps=30_000_000_000, pps=4_000_000)
    # On the network at diversion: the planner (with no network loaded) plans it anew, so it wants to move it.
    return Mitigation.objects.create(attack=attack, tenant=world.acme, state=state, level="diversion")


@pytest.mark.usefixtures("committed")
def test_a_withdraw_during_planning_is_never_lost(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    mitigation = _mitigation(world, S.ACTIVE, "203.0.113.42")
    errors = _race(monkeypatch, lambda: withdraw_mitigation(mitigation.pk, acting_user=CUSTOMER, reason="done"))
    assert not errors, errors
    mitigation.refresh_from_db()
    assert mitigation.state == S.WITHDRAWING
    trail = list(_trail(mitigation).values_list("action", "diff"))
    assert [action for action, _ in trail] == ["mitigation.replan", "mitigation.withdraw"]
    assert trail[-1][1]["state"] == [S.APPLYING, S.WITHDRAWING]


@pytest.mark.usefixtures("committed")
def test_a_rejection_during_planning_is_never_lost(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    mitigation = _mitigation(world, S.AWAITING_APPROVAL, "203.0.113.43")
    errors = _race(monkeypatch, lambda: reject_mitigation(mitigation.pk, acting_user=CUSTOMER, reason="no"))
    assert not errors, errors
    mitigation.refresh_from_db()
    assert mitigation.state == S.REJECTED and mitigation.ended_at is not None


@pytest.mark.usefixtures("committed")
def test_panic_during_planning_withdraws_everything(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    active = _mitigation(world, S.ACTIVE, "203.0.113.44")
    detected = _mitigation(world, S.DETECTED, "203.0.113.45")
    errors = _race(monkeypatch, lambda: panic(acting_user=CUSTOMER, reason="race test"))
    assert not errors, errors
    for mitigation in (active, detected):
        mitigation.refresh_from_db()
        # Withdrawing, or already ended: panic converged the (empty) network itself.
        assert mitigation.state in {S.WITHDRAWING, S.ENDED}, mitigation
        assert _trail(mitigation).filter(action="mitigation.panic").exists()
