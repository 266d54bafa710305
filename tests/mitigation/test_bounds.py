"""Bounds that lose nothing: lost jobs are caught up, history is pruned, tenants past their caps are held back."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.utils import timezone

from collector.signals import AttackSignal
from core.actors import Actor
from core.models import AuditEvent
from mitigation.models import Attack, Mitigation, SignalRecord
from mitigation.services.signals import record_signal
from mitigation.tasks import reconcile_task
from tenants.models import Tenant
from tests.support.world import World

pytestmark = pytest.mark.django_db


def test_the_reconcile_loop_plans_what_a_lost_job_left_waiting(world: World) -> None:
    attack = record_signal(AttackSignal(target="203.0.113.40", vectors=("udp_flood",), bps=9_000_000_000,
                                        pps=900_000, detector="tests"), acting_user=Actor("detector", "tests"))
    assert attack is not None
    mitigation = Mitigation.objects.get(attack=attack)
    assert mitigation.state == "detected", "its planning job is lost: no worker ran it"
    reconcile_task()
    mitigation.refresh_from_db()
    assert mitigation.state != "detected", "the next reconcile cycle planned it, however fresh it was"


def test_old_history_of_finished_mitigations_is_pruned_and_live_history_kept(world: World) -> None:
    from mitigation.models import Decision
    from mitigation.services.retention import prune_history
    from tests.portal.test_customer_pages import make_mitigation

    over = make_mitigation(world.acme, state="ended", target="203.0.113.41/32")
    live = make_mitigation(world.acme, state="active", target="203.0.113.42/32")
    over.attack.status = "ended"
    over.attack.save()
    for mitigation in (over, live):
        SignalRecord.objects.create(attack=mitigation.attack, detector="tests", phase="start", bps=1, pps=1)
    long_ago = timezone.now() - datetime.timedelta(days=400)
    Decision.objects.update(created_at=long_ago)
    SignalRecord.objects.update(received_at=long_ago)
    assert prune_history() == {"signal_records": 1, "decisions": 1, "center_samples": 0, "counter_samples": 0}
    assert Decision.objects.filter(mitigation=live).exists() and SignalRecord.objects.filter(attack=live.attack).exists()
    assert not Decision.objects.filter(mitigation=over).exists()
    assert prune_history() == {"signal_records": 0, "decisions": 0, "center_samples": 0, "counter_samples": 0}


def _signal(target: str) -> Attack | None:
    return record_signal(AttackSignal(target=target, vectors=("udp_flood",), bps=9_000_000_000, pps=900_000,
                                      detector="tests"), acting_user=Actor("detector", "tests"))


def test_a_suspended_tenants_attack_is_recorded_not_mitigated_until_it_is_active_again(world: World) -> None:
    Tenant.objects.filter(pk=world.acme.pk).update(status="suspended")
    attack = _signal("203.0.113.50")
    assert attack is not None and attack.tenant_id == world.acme.pk
    assert not Mitigation.objects.filter(attack=attack).exists()
    assert SignalRecord.objects.filter(attack=attack).count() == 1
    assert AuditEvent.objects.filter(action="attack.held_back", object_id=str(attack.pk)).exists()
    Tenant.objects.filter(pk=world.acme.pk).update(status="active")
    _signal("203.0.113.50")
    assert Mitigation.objects.filter(attack=attack).exists()


def test_past_its_cap_a_tenants_attacks_are_recorded_and_held_back(world: World, settings: Any) -> None:
    settings.SLUICE_TENANT_MAX_ATTACKS = 2
    attacks = [_signal(f"203.0.113.{60 + i}") for i in range(3)]
    assert all(a is not None for a in attacks)
    assert Mitigation.objects.filter(tenant=world.acme).count() == 2
    assert Attack.objects.filter(tenant=world.acme, status="active").count() == 3, "nothing dropped"
    held = attacks[2]
    assert held is not None and AuditEvent.objects.filter(action="attack.held_back", object_id=str(held.pk)).exists()


def test_one_convergence_job_runs_at_a_time_and_a_second_asks_it_to_run_again(world: World) -> None:
    from mitigation import jobs
    from mitigation.services.network import element_locks
    from mitigation.tasks import SINGLE_FLIGHT, converge_network_task

    jobs.take_rerun(jobs.CONVERGE_NETWORK)
    with element_locks([SINGLE_FLIGHT], required=True, wait_s=0.01) as held:
        assert held == {SINGLE_FLIGHT}
        assert converge_network_task() == {"deferred": True}, "another job is converging: this one only asks"
    assert jobs.take_rerun(jobs.CONVERGE_NETWORK), "the running job is asked to run once more"
    assert "changed" in converge_network_task(), "with none running, a job converges"
    assert not jobs.take_rerun(jobs.CONVERGE_NETWORK)
