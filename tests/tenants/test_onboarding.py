"""Onboarding: all or nothing, and every refusal names its problem."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django_tenants.utils import schema_context, schema_exists

from core.models import AuditEvent
from tenants.customer.models import ProtectedPrefix, ServiceProfile
from tenants.models import Domain, Tenant, TenantPolicy, VerifiedPrefix
from tests.support.world import World

pytestmark = pytest.mark.django_db


def onboard(*args: str) -> str:
    out = io.StringIO()
    call_command("onboard_tenant", *args, stdout=out)
    return out.getvalue()


BASE = ["--name", "Initech", "--domain", "initech.localhost", "--admin-email", "ops@initech.example",
        "--latency-ms", "30", "--profile", "dns"]


def assert_nothing_left(slug: str, domain: str) -> None:
    assert not Tenant.objects.filter(slug=slug).exists()
    assert not Domain.objects.filter(domain=domain).exists()
    assert not schema_exists(slug.replace("-", "_"))


def test_onboarding_creates_tenant_schema_domain_admin_prefixes_and_profile(world: World) -> None:
    output = onboard("initech", *BASE, "--prefix", "192.0.2.0/24", "--prefix", "2001:db8:300::/48", "--verify")
    assert "One-time password:" in output
    tenant = Tenant.objects.get(slug="initech")
    assert schema_exists("initech")
    assert Domain.objects.get(domain="initech.localhost").tenant == tenant
    assert {str(v.prefix) for v in VerifiedPrefix.objects.filter(tenant=tenant)} == {"192.0.2.0/24", "2001:db8:300::/48"}
    assert TenantPolicy.objects.get(tenant=tenant).application_profile == "dns"
    assert AuditEvent.objects.filter(action="tenant.onboard", tenant_slug="initech").exists()
    with schema_context("initech"):
        assert ProtectedPrefix.objects.filter(status="verified").count() == 2
        assert ServiceProfile.objects.get().latency_threshold_ms == 30
        from core.accounts.models import User

        admin = User.objects.get(username="admin")
        password = output.split("One-time password:")[1].strip()
        assert admin.check_password(password) and admin.role == "admin"


def test_pending_prefixes_are_not_in_the_registry(world: World) -> None:
    onboard("initech", *BASE, "--prefix", "192.0.2.0/24")
    assert not VerifiedPrefix.objects.filter(tenant__slug="initech").exists()
    with schema_context("initech"):
        assert ProtectedPrefix.objects.get().status == "pending"


def test_overlap_with_another_tenants_verified_prefix_is_refused_and_leaves_nothing(world: World) -> None:
    with pytest.raises(CommandError, match=r"203\.0\.113\.128/25 overlaps 203\.0\.113\.0/24"):
        onboard("evil", *BASE[:2], "--domain", "evil.localhost", *BASE[4:], "--prefix", "203.0.113.128/25",
                "--verify")
    assert_nothing_left("evil", "evil.localhost")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prefix", "192.0.2.1/24"], "host bits set"),
        (["--prefix", "10.1.0.0/16"], "private or special-purpose"),
        (["--prefix", "fe80::/64"], "private or special-purpose"),
        (["--prefix", "not-a-prefix"], "not an IPv4 or IPv6 prefix"),
        (["--prefix", "8.0.0.0/6"], "wider than /8"),
        (["--prefix", "192.0.2.0/24", "--prefix", "192.0.2.128/25"], "in the same request"),
    ],
)
def test_bad_prefixes_are_refused_with_a_named_problem(world: World, args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        onboard("initech", *BASE, *args)
    assert_nothing_left("initech", "initech.localhost")


@pytest.mark.parametrize(
    ("slug", "domain", "message"),
    [
        ("acme", "other.localhost", "'acme' is taken"),
        ("initech", "acme.localhost", "'acme.localhost' is taken"),
        ("initech", "localhost", "not a valid host name"),
        ("initech", "bad_host!.localhost", "not a valid host name"),
        ("Bad Slug", "initech.localhost", "lowercase letters"),
        ("public", "initech.localhost", "reserved"),
    ],
)
def test_bad_names_are_refused(world: World, slug: str, domain: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        onboard(slug, "--name", "X", "--domain", domain, "--admin-email", "a@x.example", "--latency-ms", "30",
                "--profile", "web", "--prefix", "192.0.2.0/24")
    assert not Domain.objects.filter(domain="initech.localhost").exists()


def test_bogons_need_the_flag(world: World) -> None:
    onboard("lab", *BASE[:2], "--domain", "lab.localhost", *BASE[4:], "--prefix", "10.20.0.0/16", "--allow-bogons")
    assert Tenant.objects.filter(slug="lab").exists()


def test_production_refuses_documentation_space(world: World, settings: object) -> None:
    settings.SLUICE_ALLOW_DOCUMENTATION_PREFIXES = False  # type: ignore[attr-defined]
    settings.SLUICE_ALLOW_BOGON_FLAG = False  # type: ignore[attr-defined]
    with pytest.raises(CommandError, match="documentation space"):
        onboard("initech", *BASE, "--prefix", "192.0.2.0/24")
    with pytest.raises(CommandError, match="cannot be allowed in production"):
        onboard("initech", *BASE, "--prefix", "192.0.2.0/24", "--allow-bogons")
    assert_nothing_left("initech", "initech.localhost")


def test_a_late_failure_inside_the_transaction_rolls_back_the_schema(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refusal found after CREATE SCHEMA (here: the database's own overlap constraint) leaves nothing."""
    from tenants import services

    monkeypatch.setattr(services, "_check_no_cross_tenant_overlap", lambda *a, **k: None)
    with pytest.raises(CommandError, match="overlaps a prefix verified for another tenant"):
        onboard("evil", *BASE[:2], "--domain", "evil.localhost", *BASE[4:], "--prefix", "198.51.100.0/25", "--verify")
    connection.set_schema_to_public()
    assert_nothing_left("evil", "evil.localhost")
