"""A customer sees its own mitigation in its own words: no provider internals in its pages, API or reports, and
another tenant's ids answer exactly like ids that do not exist."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django_tenants.utils import schema_context

from core.accounts.models import ApiToken, User
from mitigation.models import Action, Attack, Decision, Deployment, Mitigation
from tests.portal.test_customer_pages import client_as
from tests.support.world import World

pytestmark = pytest.mark.django_db

# What only the provider should ever read.
INTERNALS = ("edge-lon-1", "speaker-fra", "198.51.100.201", "65010:666", "192.0.2.10", "user:soc", "soc@",
             "headroom 120", "cost", "Connection refused", "inputs", "next_hop")


def provider_heavy_mitigation(world: World) -> Mitigation:
    attack = Attack.objects.create(tenant=world.acme, target="203.0.113.77/32", vectors=["udp_flood"],
                                   bps=40_000_000_000, pps=5_000_000)
    mitigation = Mitigation.objects.create(
        attack=attack, tenant=world.acme, state="active", level="diversion", approved_by="user:soc",
        reason="Operator override by user:soc. divert to Lab Frankfurt. Frankfurt: headroom 120 Gbps, 4 ms; "
               "Amsterdam: headroom 20 Gbps, 11 ms",
        last_error="router:edge-lon-1: 127.0.0.1: cannot connect: Connection refused")
    Decision.objects.create(mitigation=mitigation, level="diversion", actor="user:soc", cost=12.5,
                            reason="divert to Lab Frankfurt. Frankfurt: headroom 120 Gbps",
                            inputs={"centers": {"fra": {"headroom_gbps": 120}}, "upstreams": ["198.51.100.201"]})
    action = Action.objects.create(
        mitigation=mitigation, kind="diversion", route_key="k-77", targets=["speaker:speaker-fra"],
        spec={"prefix": "203.0.113.0/24", "next_hop": "192.0.2.10", "communities": ["65010:666"],
              "neighbors": ["198.51.100.201"]},
        reason="divert 203.0.113.0/24 via 192.0.2.10 on speaker-fra")
    Deployment.objects.create(action=action, element="router:edge-lon-1", state="failed",
                              detail="Connection refused")
    Deployment.objects.create(action=action, element="speaker:speaker-fra", state="present")
    return mitigation


def token(schema: str, username: str) -> str:
    with schema_context(schema):
        key, prefix, digest = ApiToken.generate_key()
        ApiToken.objects.create(user=User.objects.get(username=username), name="t", key_prefix=prefix,
                                key_hash=digest, scopes=["read"])
    return key


def assert_clean(text: str, where: str) -> None:
    leaked = [word for word in INTERNALS if word in text]
    assert not leaked, f"{where} shows provider internals: {leaked}"


def test_the_customers_pages_api_and_reports_show_no_provider_internals(world: World) -> None:
    mitigation = provider_heavy_mitigation(world)
    page = client_as("acme", "admin")
    detail = page.get(f"/mitigations/{mitigation.pk}/")
    assert detail.status_code == 200
    body = detail.content.decode()
    assert "divert to Lab Frankfurt" in body and "203.0.113.0/24" in body and "carried on 1 element" in body
    assert_clean(body, "the mitigation page")
    assert_clean(page.get(f"/mitigations/{mitigation.pk}/report.csv").content.decode(), "the CSV report")
    headers = {"HTTP_AUTHORIZATION": f"Token {token('acme', 'admin')}"}
    api = client_as("acme", None)
    for path in (f"/api/v1/mitigations/{mitigation.pk}/", "/api/v1/decisions/", "/api/v1/actions/"):
        response = api.get(path, **headers)
        assert response.status_code == 200, path
        assert_clean(response.content.decode(), path)
    shown = json.loads(api.get(f"/api/v1/mitigations/{mitigation.pk}/", **headers).content)
    assert shown["approved_by"] == "your provider's operations team"
    assert shown["reason"].startswith("divert to Lab Frankfurt")
    # The SOC still sees all of it.
    soc = client_as("public", "admin").get(f"/soc/mitigations/{mitigation.pk}/")
    assert soc.status_code == 200 and b"edge-lon-1" in soc.content


@pytest.mark.parametrize("path", ["/api/v1/actions/?mitigation={}", "/api/v1/decisions/?mitigation={}"])
def test_another_tenants_id_answers_like_a_missing_one(world: World, path: str) -> None:
    theirs = provider_heavy_mitigation(world)  # acme's
    missing = Mitigation.objects.order_by("-pk").first().pk + 1000
    headers: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Token {token('globex', 'admin')}"}
    api = client_as("globex", None)
    other = api.get(path.format(theirs.pk), **headers)
    absent = api.get(path.format(missing), **headers)
    assert (other.status_code, other.content.replace(str(theirs.pk).encode(), b"ID")) == \
        (absent.status_code, absent.content.replace(str(missing).encode(), b"ID"))
    assert api.get(f"/api/v1/mitigations/{theirs.pk}/", **headers).status_code == 404
