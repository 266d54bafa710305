"""The per-attack PDF report: a real PDF of the tenant's own mitigation, and a 404 for anyone else's."""

from __future__ import annotations

import datetime

import pytest

from core.audit import record_audit
from mitigation.models import SignalRecord
from portal.customer.reports import customer_timeline, time_to_mitigate
from tests.portal.test_customer_pages import client_as, make_mitigation
from tests.support.world import TEST_ACTOR, World

pytestmark = pytest.mark.django_db


def test_a_customer_gets_a_pdf_of_its_own_mitigation(world: World) -> None:
    mitigation = make_mitigation(world.acme, state="active")
    attack = mitigation.attack
    SignalRecord.objects.create(attack=attack, phase="start", detector="fnm", vectors=["udp_flood"],
                                bps=4_000_000_000, pps=900_000, actor="tests")
    record_audit(TEST_ACTOR, "mitigation.approve", tenant_slug="acme", obj=mitigation, reason="looks right")
    mitigation.activated_at = attack.started_at + datetime.timedelta(seconds=42)
    mitigation.save()
    response = client_as("acme", "viewer").get(f"/mitigations/{mitigation.pk}/report.pdf")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-") and len(response.content) > 1000
    assert f"mitigation-{mitigation.pk}.pdf" in response["Content-Disposition"]
    assert time_to_mitigate(attack, mitigation) == datetime.timedelta(seconds=42)
    entries = customer_timeline(world.acme, mitigation)
    assert {"signal", "decision", "state"} <= {entry.kind for entry in entries}
    assert any(entry.detail == f"{TEST_ACTOR.name}: looks right" or entry.detail.endswith(": looks right")
               for entry in entries)


@pytest.mark.parametrize("role", ["viewer", "admin"])
def test_another_tenants_mitigation_is_a_404(world: World, role: str) -> None:
    mitigation = make_mitigation(world.acme)
    assert client_as("globex", role).get(f"/mitigations/{mitigation.pk}/report.pdf").status_code == 404
    assert client_as("globex", role).get("/mitigations/999999/report.pdf").status_code == 404


def test_anonymous_users_are_sent_to_login(world: World) -> None:
    mitigation = make_mitigation(world.acme)
    response = client_as("acme", None).get(f"/mitigations/{mitigation.pk}/report.pdf")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
