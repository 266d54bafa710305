"""Tenancy edges: a suspended tenant answers nothing, and an attack whose prefix moved to another tenant never mixes the two tenants' signals."""

from __future__ import annotations

import pytest

from collector.signals import AttackSignal
from core.actors import Actor
from core.models import AuditEvent
from mitigation.models import Attack, Mitigation
from mitigation.services.signals import record_signal
from tenants.models import VerifiedPrefix
from tests.support.world import World

pytestmark = pytest.mark.django_db
DETECTOR = Actor("detector", "tests")


def signal(bps: int) -> Attack | None:
    return record_signal(AttackSignal(target="203.0.113.88", vectors=("udp_flood",), bps=bps, pps=1_000_000),
                         acting_user=DETECTOR)


def test_a_moved_prefix_starts_a_new_attack_for_its_new_owner(world: World) -> None:
    before = signal(30_000_000_000)
    assert before is not None and before.tenant_id == world.acme.pk
    Mitigation.objects.filter(attack=before).update(state="active", level="diversion")
    VerifiedPrefix.objects.filter(prefix="203.0.113.0/24").update(tenant=world.globex)

    after = signal(2_000_000_000)
    assert after is not None and after.pk != before.pk
    assert after.tenant_id == world.globex.pk and after.bps == 2_000_000_000 and after.peak_bps == 2_000_000_000
    before.refresh_from_db()
    assert before.status == "ended" and before.peak_bps == 30_000_000_000, "acme's figures stay acme's"
    assert Mitigation.objects.get(attack=before).state == "withdrawing"
    assert Mitigation.objects.get(attack=after).tenant_id == world.globex.pk
    assert list(after.signals.values_list("bps", flat=True)) == [2_000_000_000]
    assert AuditEvent.objects.filter(action="attack.prefix_moved", object_id=str(before.pk)).exists()


def test_a_suspended_tenant_cannot_sign_in_or_use_its_tokens(world: World) -> None:
    from django.test import Client

    from tenants.models import Tenant
    from tests.portal.test_customer_pages import client_as
    from tests.security.test_customer_view import token

    key = token("globex", "admin")
    signed_in = client_as("globex", "admin")
    Tenant.objects.filter(pk=world.globex.pk).update(status="suspended")
    assert signed_in.get("/").status_code == 403
    login = Client(HTTP_HOST="globex.localhost").post("/login/", {"username": "admin",
                                                                  "password": world.globex_admin_password})
    assert login.status_code == 403
    api = Client(HTTP_HOST="globex.localhost").get("/api/v1/mitigations/", HTTP_AUTHORIZATION=f"Token {key}")
    assert api.status_code == 403 and b"suspended" in api.content
    assert client_as("public", "admin").get("/soc/tenants/").status_code in (200, 404), "the SOC is unaffected"
    assert client_as("acme", "admin").get("/").status_code == 200
