"""Onboarding from the SOC: onboard_tenant's rules, refusals on the named field, the password shown once."""

from __future__ import annotations

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from core.models import AuditEvent
from tenants.customer.models import ProtectedPrefix
from tenants.models import Tenant, TenantPolicy, VerifiedPrefix
from tests.portal.test_customer_pages import client_as
from tests.support.world import World

pytestmark = pytest.mark.django_db


def form(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "Initech", "slug": "initech", "domain": "initech.localhost", "admin_email": "noc@initech.example",
        "prefixes": "192.0.2.0/25\n\n2001:db8:300::/48\n", "latency_ms": 30, "profile": "api",
        "automation_mode": "manual", "verify": "on",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def test_operator_onboards_a_tenant_and_sees_the_password_once(world: World) -> None:
    soc = client_as("public", "admin")
    response = soc.post("/soc/onboard/", form())
    assert response.status_code == 200
    result = response.context["result"]
    assert result.admin_password.encode() in response.content
    assert response["Cache-Control"].startswith("max-age=0")
    tenant = Tenant.objects.get(slug="initech")
    policy = TenantPolicy.objects.get(tenant=tenant)
    assert (policy.latency_threshold_ms, policy.application_profile, policy.automation_mode) == (30, "api", "manual")
    assert VerifiedPrefix.objects.filter(tenant=tenant).count() == 2
    assert AuditEvent.objects.filter(action="tenant.onboard", tenant_slug="initech", actor="soc").exists()
    assert result.admin_password.encode() not in soc.get("/soc/onboard/").content

    customer = Client(HTTP_HOST="initech.localhost")
    assert customer.post("/login/", {"username": "admin", "password": result.admin_password}).status_code == 302
    assert b"Initech" in customer.get("/").content


def test_unverified_prefixes_wait_in_the_queue(world: World) -> None:
    client_as("public", "admin").post("/soc/onboard/", form(verify=None))
    tenant = Tenant.objects.get(slug="initech")
    assert not VerifiedPrefix.objects.filter(tenant=tenant).exists()
    with schema_context(tenant.schema_name):
        assert set(ProtectedPrefix.objects.values_list("status", flat=True)) == {"pending"}
    queue = client_as("public", "viewer").get("/soc/prefixes/").context["pending"]
    assert {str(item.prefix.prefix) for item in queue if item.tenant.slug == "initech"} == {
        "192.0.2.0/25", "2001:db8:300::/48"
    }


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"slug": "Not A Slug"}, "slug", ""),
        ({"slug": "acme"}, "slug", "taken"),
        ({"domain": "acme.localhost"}, "domain", "taken"),
        ({"domain": "localhost"}, "domain", "host name"),
        ({"name": "   "}, "name", ""),
        ({"admin_email": "nobody"}, "admin_email", "email"),
        ({"prefixes": "not-a-prefix"}, "prefixes", ""),
        ({"prefixes": "10.0.0.0/8"}, "prefixes", ""),
        ({"prefixes": "192.0.2.0/24\n192.0.2.0/25"}, "prefixes", "same request"),
        ({"prefixes": "203.0.113.0/25"}, "prefixes", "another tenant"),
        ({"latency_ms": 5000}, "latency_ms", "1000"),
    ],
)
def test_refusals_name_the_field_and_leave_nothing_behind(
    world: World, changes: dict[str, object], field: str, words: str
) -> None:
    response = client_as("public", "admin").post("/soc/onboard/", form(**changes))
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors, errors
    assert words in " ".join(errors[field])
    assert not Tenant.objects.filter(slug="initech").exists()


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_admins_onboard(world: World, role: str) -> None:
    assert client_as("public", role).post("/soc/onboard/", form()).status_code == 403
    assert not Tenant.objects.filter(slug="initech").exists()


def test_customers_cannot_reach_onboarding(world: World) -> None:
    assert client_as("acme", "admin").post("/soc/onboard/", form()).status_code == 404
