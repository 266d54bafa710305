"""Per-prefix detection thresholds: customers set them within the provider's bounds, the provider sets them and the
bounds; pages and API refuse bad values with a clear 400 or message (never a 500), and the collector reads them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from core.actors import Actor
from core.errors import ValidationProblem
from core.models import AuditEvent
from mitigation.management.commands.run_collector import load_prefixes
from tenants.customer.models import ProtectedPrefix
from tenants.models import Tenant, VerifiedPrefix
from tenants.services import (
    PrefixThresholds,
    ThresholdBounds,
    set_prefix_thresholds,
    set_threshold_bounds,
    threshold_bounds,
)
from tests.portal.test_customer_pages import client_as
from tests.support.world import World

pytestmark = pytest.mark.django_db

OPERATOR = Actor("user", "soc")
CUSTOMER = Actor("user", "admin", tenant_slug="acme")


def acme_prefix(cidr: str = "203.0.113.0/24") -> ProtectedPrefix:
    with schema_context("acme"):
        return ProtectedPrefix.objects.get(prefix=cidr)


def put_json(client: Client, url: str, body: Mapping[str, object]) -> Any:
    return client.put(url, json.dumps(body), content_type="application/json")


def refused_field(body: Mapping[str, object]) -> object:
    """The field a 400 names: a service's refusal says {"field", "error"}, a serializer's {"error", "fields"}."""
    fields = body.get("fields")
    return next(iter(fields)) if isinstance(fields, dict) else body.get("field")


def test_a_customer_sets_host_and_prefix_wide_thresholds_and_the_collector_reads_them(world: World) -> None:
    prefix = acme_prefix()
    values = PrefixThresholds(threshold_bps=200_000_000, threshold_pps=30_000, prefix_threshold_pps=300_000)
    set_prefix_thresholds(world.acme, prefix.pk, values, acting_user=CUSTOMER)
    mirror = VerifiedPrefix.objects.get(prefix="203.0.113.0/24")
    assert (mirror.threshold_pps, mirror.prefix_threshold_pps, mirror.prefix_threshold_bps) == (30_000, 300_000, None)
    watched = {p.cidr: p for p in load_prefixes()}["203.0.113.0/24"]
    assert (watched.host_pps, watched.prefix_pps) == (30_000, 300_000)
    assert watched.prefix_bps == 200_000_000 * 16, "an unset prefix-wide threshold scales with the prefix"
    event = AuditEvent.objects.get(action="prefix.thresholds")
    assert event.diff["threshold_pps"] == [None, 30_000]


@pytest.mark.parametrize(("values", "field", "words"), [
    (PrefixThresholds(threshold_pps=10), "threshold_pps", "between 1000 and"),
    (PrefixThresholds(threshold_bps=10**15), "threshold_bps", "bounds your provider set"),
    (PrefixThresholds(threshold_pps=50_000, prefix_threshold_pps=20_000), "prefix_threshold_pps", "cannot be below"),
    (PrefixThresholds(threshold_pps=0), "threshold_pps", "positive"),
])
def test_a_customer_is_held_to_the_bounds_and_refusals_change_nothing(
    world: World, values: PrefixThresholds, field: str, words: str
) -> None:
    prefix = acme_prefix()
    with pytest.raises(ValidationProblem, match=words) as refused:
        set_prefix_thresholds(world.acme, prefix.pk, values, acting_user=CUSTOMER)
    assert refused.value.field == field
    assert VerifiedPrefix.objects.get(prefix="203.0.113.0/24").threshold_pps is None


def test_the_provider_sets_bounds_and_may_set_thresholds_outside_them(world: World) -> None:
    set_threshold_bounds(world.acme, ThresholdBounds(min_bps=10**6, max_bps=10**9, min_pps=100, max_pps=10**5),
                         acting_user=OPERATOR)
    tenant = Tenant.objects.get(pk=world.acme.pk)
    assert threshold_bounds(tenant).max_pps == 10**5
    prefix = acme_prefix()
    with pytest.raises(ValidationProblem, match="between 100 and 100000"):
        set_prefix_thresholds(tenant, prefix.pk, PrefixThresholds(threshold_pps=200_000), acting_user=CUSTOMER)
    set_prefix_thresholds(tenant, prefix.pk, PrefixThresholds(threshold_pps=200_000), acting_user=OPERATOR)
    assert VerifiedPrefix.objects.get(prefix="203.0.113.0/24").threshold_pps == 200_000
    with pytest.raises(ValidationProblem, match="only a provider operator"):
        set_threshold_bounds(tenant, threshold_bounds(tenant), acting_user=CUSTOMER)
    with pytest.raises(ValidationProblem, match="below the minimum"):
        set_threshold_bounds(tenant, ThresholdBounds(min_bps=10, max_bps=5, min_pps=1, max_pps=2), acting_user=OPERATOR)


def test_the_customer_api_sets_thresholds_and_refuses_with_400s(world: World) -> None:
    prefix = acme_prefix()
    url = f"/api/v1/prefixes/{prefix.pk}/thresholds/"
    admin = client_as("acme", "admin")
    shown = admin.get(url).json()
    assert shown["threshold_pps"] is None and shown["bounds"]["min_pps"] == 1000
    response = put_json(admin, url, {"threshold_pps": 40_000, "prefix_threshold_pps": 400_000})
    assert response.status_code == 200, response.content
    assert response.json()["prefix_threshold_pps"] == 400_000
    for body, field in (({"threshold_pps": 5}, "threshold_pps"), ({"threshold_bps": "lots"}, "threshold_bps"),
                        ({"threshold_pps": -1}, "threshold_pps"), ({"threshold_pps": 10**30}, "threshold_pps")):
        refused = put_json(admin, url, body)
        assert refused.status_code == 400, (body, refused.content)
        assert refused_field(refused.json()) == field, refused.json()
    assert put_json(client_as("acme", "viewer"), url, {"threshold_pps": 40_000}).status_code == 403
    assert put_json(admin, "/api/v1/prefixes/999999/thresholds/", {}).status_code == 404


def test_the_provider_api_sets_bounds_and_thresholds(world: World) -> None:
    operator = client_as("public", "admin")
    bounds_url = f"/api/v1/tenants/{world.acme.pk}/threshold-bounds/"
    body = {"min_bps": 1_000_000, "max_bps": 10**10, "min_pps": 500, "max_pps": 10**6}
    assert put_json(operator, bounds_url, body).json() == body
    refused = put_json(operator, bounds_url, {**body, "max_pps": 1})
    assert refused.status_code == 400 and refused_field(refused.json()) == "max_pps"
    prefix = acme_prefix("2001:db8:100::/48")
    url = f"/api/v1/tenants/{world.acme.pk}/prefixes/{prefix.pk}/thresholds/"
    response = put_json(operator, url, {"threshold_pps": 10**7})
    assert response.status_code == 200 and response.json()["threshold_pps"] == 10**7
    listed = operator.get(f"/api/v1/tenants/{world.acme.pk}/prefixes/").json()
    assert {row["prefix"]: row["threshold_pps"] for row in listed}["2001:db8:100::/48"] == 10**7
    assert put_json(operator, f"/api/v1/tenants/{world.acme.pk}/prefixes/999999/thresholds/", {}).status_code == 404


def test_the_customer_page_sets_thresholds_and_shows_refusals(world: World) -> None:
    prefix = acme_prefix()
    admin = client_as("acme", "admin")
    page = admin.get("/prefixes/")
    assert page.status_code == 200 and b"Whole prefix" in page.content
    saved = admin.post(f"/prefixes/{prefix.pk}/thresholds/", {"threshold_pps": "25000"}, follow=True)
    assert b"detection thresholds saved" in saved.content
    refused = admin.post(f"/prefixes/{prefix.pk}/thresholds/", {"threshold_pps": "3"}, follow=True)
    assert refused.status_code == 200 and b"Thresholds not changed: threshold_pps" in refused.content
    garbage = admin.post(f"/prefixes/{prefix.pk}/thresholds/", {"threshold_bps": "ten"}, follow=True)
    assert garbage.status_code == 200 and b"Thresholds not changed" in garbage.content
    assert VerifiedPrefix.objects.get(prefix="203.0.113.0/24").threshold_pps == 25_000
    assert client_as("acme", "viewer").post(f"/prefixes/{prefix.pk}/thresholds/", {}).status_code == 403


def test_the_soc_page_sets_bounds_and_thresholds(world: World) -> None:
    prefix = acme_prefix()
    admin = client_as("public", "admin")
    page = admin.get("/soc/tenants/acme/thresholds/")
    assert page.status_code == 200 and b"203.0.113.0/24" in page.content
    bounds = {"min_bps": "1000000", "max_bps": "1000000000", "min_pps": "100", "max_pps": "100000"}
    assert b"threshold bounds saved" in admin.post("/soc/tenants/acme/threshold-bounds/", bounds, follow=True).content
    assert b"Bounds not changed" in admin.post("/soc/tenants/acme/threshold-bounds/", {**bounds, "max_pps": "1"},
                                               follow=True).content
    saved = admin.post(f"/soc/tenants/acme/prefixes/{prefix.pk}/thresholds/", {"threshold_pps": "900000"}, follow=True)
    assert b"detection thresholds saved" in saved.content, "the provider is not held to the customer's bounds"
    assert admin.get("/soc/tenants/nobody/thresholds/").status_code == 404
    assert client_as("public", "viewer").post("/soc/tenants/acme/threshold-bounds/", bounds).status_code == 403
