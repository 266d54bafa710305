"""Several detectors, one attack: each detector's last report is kept, the figures come from the live reports, the
vectors are the union, and the attack ends only when every detector that reported it ended or went silent."""

from __future__ import annotations

import datetime

import pytest
from django.conf import settings
from django.utils import timezone

from collector.signals import AttackSignal, SignalPhase
from core.actors import Actor
from mitigation.models import Attack, DetectorReport
from mitigation.services.signals import record_signal
from tests.support.world import World

pytestmark = pytest.mark.django_db
TARGET = "203.0.113.66"


def signal(detector: str, phase: str = "start", bps: int = 0, pps: int = 0,
           vectors: tuple[str, ...] = ("udp_flood",), sources: tuple[str, ...] = ()) -> Attack:
    attack = record_signal(AttackSignal(target=TARGET, vectors=vectors, bps=bps, pps=pps, phase=SignalPhase(phase),
                                        detector=detector, top_sources=sources), acting_user=Actor("detector", detector))
    assert attack is not None
    attack.refresh_from_db()
    return attack


def test_a_detector_without_figures_never_replaces_anothers(world: World) -> None:
    signal("collector", bps=30_000_000_000, pps=4_000_000, vectors=("dns_amplification",), sources=("192.0.2.53",))
    attack = signal("fastnetmon", bps=0, pps=5_000, vectors=("udp_flood",))
    assert (attack.bps, attack.pps) == (30_000_000_000, 4_000_000), "the largest live view holds"
    assert set(attack.vectors) == {"dns_amplification", "udp_flood"}
    assert attack.top_sources == ["192.0.2.53"]
    assert set(DetectorReport.objects.filter(attack=attack).values_list("detector", flat=True)) == {
        "collector", "fastnetmon"}


def test_the_attack_ends_only_when_every_detector_has_ended(world: World) -> None:
    signal("collector", bps=30_000_000_000, pps=4_000_000)
    signal("fastnetmon", bps=20_000_000_000, pps=3_000_000)
    attack = signal("fastnetmon", phase="end")
    assert attack.end_signalled_at is None, "the collector still sees it"
    assert (attack.bps, attack.pps) == (30_000_000_000, 4_000_000)
    attack = signal("collector", phase="end")
    assert attack.end_signalled_at is not None


def test_a_silent_detector_does_not_hold_the_attack_open(world: World) -> None:
    signal("collector", bps=30_000_000_000, pps=4_000_000)
    signal("fastnetmon", bps=10_000_000_000, pps=1_000_000)
    silent = timezone.now() - datetime.timedelta(minutes=settings.SLUICE_SIGNAL_EXPIRY_MINUTES + 1)
    DetectorReport.objects.filter(detector="collector").update(last_seen=silent)
    attack = signal("fastnetmon", bps=12_000_000_000, pps=1_200_000)
    assert attack.bps == 12_000_000_000, "a silent detector's figures are no longer live"
    attack = signal("fastnetmon", phase="end")
    assert attack.end_signalled_at is not None


def test_the_soc_sees_each_detectors_view(world: World) -> None:
    from tests.portal.test_customer_pages import client_as

    signal("collector", bps=30_000_000_000, pps=4_000_000)
    attack = signal("fastnetmon", bps=0, pps=5_000)
    from mitigation.models import Mitigation

    mitigation = Mitigation.objects.get(attack=attack)
    page = client_as("public", "admin").get(f"/soc/mitigations/{mitigation.pk}/")
    assert page.status_code == 200
    assert b"fastnetmon" in page.content and b"collector" in page.content
    api = client_as("public", "admin").get(f"/api/v1/attacks/{attack.pk}/")
    assert {r["detector"] for r in api.json()["reports"]} == {"collector", "fastnetmon"}
    customer = client_as("acme", "admin").get(f"/api/v1/attacks/{attack.pk}/")
    assert "reports" not in customer.json()
