"""Verification writes the tenant's row and the public registry together; overlaps across tenants never exist."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django_tenants.utils import schema_context

from core.actors import Actor
from core.errors import ValidationProblem
from core.models import AuditEvent
from tenants.customer.models import ProtectedPrefix
from tenants.models import TenantPolicy, VerifiedPrefix
from tenants.services import ProfileInput, reject_prefix, request_prefix, update_service_profile, verify_prefix
from tests.support.world import World

pytestmark = pytest.mark.django_db

OPERATOR = Actor("user", "soc")
CUSTOMER = Actor("user", "admin", tenant_slug="acme")


def test_customer_request_is_pending_until_an_operator_verifies(world: World) -> None:
    prefix = request_prefix(world.acme, "192.0.2.0/25", acting_user=CUSTOMER)
    assert prefix.status == "pending"
    assert not VerifiedPrefix.objects.filter(prefix="192.0.2.0/25").exists()
    with pytest.raises(ValidationProblem, match="only a provider operator"):
        verify_prefix(world.acme, prefix.pk, acting_user=CUSTOMER)
    verify_prefix(world.acme, prefix.pk, acting_user=OPERATOR)
    assert VerifiedPrefix.objects.get(prefix="192.0.2.0/25").tenant == world.acme
    with schema_context("acme"):
        assert ProtectedPrefix.objects.get(pk=prefix.pk).status == "verified"
    assert AuditEvent.objects.filter(action="prefix.verify", tenant_slug="acme").exists()


def test_verifying_an_overlap_with_another_tenant_is_refused_and_changes_nothing(world: World) -> None:
    prefix = request_prefix(world.globex, "203.0.113.64/26", acting_user=Actor("user", "admin", "globex"))
    with pytest.raises(ValidationProblem, match="verified for another tenant"):
        verify_prefix(world.globex, prefix.pk, acting_user=OPERATOR)
    with schema_context("globex"):
        assert ProtectedPrefix.objects.get(pk=prefix.pk).status == "pending"
    assert not VerifiedPrefix.objects.filter(tenant=world.globex, prefix="203.0.113.64/26").exists()


def test_the_database_itself_refuses_cross_tenant_overlaps(world: World) -> None:
    with pytest.raises(IntegrityError, match="verified_prefix_no_cross_tenant_overlap"), transaction.atomic():
        VerifiedPrefix.objects.create(tenant=world.globex, prefix="203.0.113.0/28", tenant_prefix_id=0, verified_by="x")
    with pytest.raises(IntegrityError), transaction.atomic():
        VerifiedPrefix.objects.create(tenant=world.globex, prefix="2001:db8::/32", tenant_prefix_id=0, verified_by="x")


def test_rejection_removes_the_prefix_from_the_registry(world: World) -> None:
    with schema_context("acme"):
        prefix = ProtectedPrefix.objects.get(prefix="2001:db8:100::/48")
    reject_prefix(world.acme, prefix.pk, reason="not yours", acting_user=OPERATOR)
    assert not VerifiedPrefix.objects.filter(prefix="2001:db8:100::/48").exists()


def test_profile_update_refreshes_the_public_mirror_in_the_same_transaction(world: World) -> None:
    update_service_profile(
        world.acme,
        ProfileInput(latency_threshold_ms=25, application_profile="voip", latency_overrides={"center:fra": 15}),
        acting_user=CUSTOMER,
    )
    policy = TenantPolicy.objects.get(tenant=world.acme)
    assert (policy.latency_threshold_ms, policy.application_profile) == (25, "voip")
    assert policy.latency_overrides == {"center:fra": 15}
    event = AuditEvent.objects.filter(action="profile.update").first()
    assert event is not None and event.diff["latency_threshold_ms"] == [40, 25]


def test_invalid_profile_changes_nothing(world: World) -> None:
    with pytest.raises(ValidationProblem, match="latency_ms"):
        update_service_profile(world.acme, ProfileInput(latency_threshold_ms=0), acting_user=CUSTOMER)
    assert TenantPolicy.objects.get(tenant=world.acme).latency_threshold_ms == 40


def test_the_audit_is_append_only(world: World) -> None:
    event = AuditEvent.objects.first()
    assert event is not None
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(reason="rewritten")
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
