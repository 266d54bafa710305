"""A mitigation never sits in detected or planned because a job was lost: the reconcile loop plans it."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from collector.signals import AttackSignal
from core.actors import Actor
from mitigation.models import Mitigation
from mitigation.services.planning import stuck_in_planning
from mitigation.services.signals import record_signal
from mitigation.tasks import reconcile_task
from tests.support.world import World

pytestmark = pytest.mark.django_db


def test_the_reconcile_loop_plans_what_a_lost_job_left_waiting(world: World) -> None:
    attack = record_signal(AttackSignal(target="203.0.113.40", vectors=("udp_flood",), bps=9_000_000_000,
                                        pps=900_000, detector="tests"), acting_user=Actor("detector", "tests"))
    assert attack is not None
    mitigation = Mitigation.objects.get(attack=attack)
    assert mitigation.state == "detected"
    assert not stuck_in_planning(), "a fresh mitigation is the planning job's, not yet the loop's"
    later = timezone.now() + datetime.timedelta(minutes=1)
    Mitigation.objects.filter(pk=mitigation.pk).update(updated_at=timezone.now() - datetime.timedelta(minutes=1))
    assert stuck_in_planning(later)
    reconcile_task()
    mitigation.refresh_from_db()
    assert mitigation.state != "detected"
    assert not stuck_in_planning()


def test_old_history_of_finished_mitigations_is_pruned_and_live_history_kept(world: World) -> None:
    from mitigation.models import Decision, SignalRecord
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
    assert prune_history() == {"signal_records": 1, "decisions": 1}
    assert Decision.objects.filter(mitigation=live).exists() and SignalRecord.objects.filter(attack=live.attack).exists()
    assert not Decision.objects.filter(mitigation=over).exists()
    assert prune_history() == {"signal_records": 0, "decisions": 0}
