"""The isolation matrix: every customer page and API endpoint, every role, another tenant's ids -> the same as missing.

A tenant must not be able to tell another tenant's id from an id that does not exist, by status or by content,
and a customer's session is worth nothing at another tenant's domain or at the provider's.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from core.actors import Actor
from mitigation.choices import MitigationStateChoices
from mitigation.models import Mitigation
from tenants.customer.models import ProtectedPrefix
from tenants.services import request_prefix
from tests.portal.test_customer_pages import ROLES, client_as, make_mitigation
from tests.support.world import World

pytestmark = pytest.mark.django_db

MISSING = 987654321
PAIRS = (("acme", "globex"), ("globex", "acme"))


@dataclass(frozen=True)
class Probe:
    """One URL with an object id in it, and how it is called."""

    name: str
    method: str
    path: str  # with {id}
    kind: str  # which object's id: mitigation, attack, action, decision

    def url(self, ids: dict[str, int], missing: bool = False) -> str:
        return self.path.format(id=MISSING if missing else ids[self.kind])


PAGE_PROBES = (
    Probe("page mitigation", "get", "/mitigations/{id}/", "mitigation"),
    Probe("page report", "get", "/mitigations/{id}/report.csv", "mitigation"),
    Probe("page approve", "post", "/mitigations/{id}/approve/", "mitigation"),
    Probe("page reject", "post", "/mitigations/{id}/reject/", "mitigation"),
    Probe("page withdraw", "post", "/mitigations/{id}/withdraw/", "mitigation"),
    Probe("page report pdf", "get", "/mitigations/{id}/report.pdf", "mitigation"),
    Probe("page live part", "get", "/mitigations/{id}/?part=live", "mitigation"),
)
API_READ_PROBES = (
    Probe("api attack", "get", "/api/v1/attacks/{id}/", "attack"),
    Probe("api mitigation", "get", "/api/v1/mitigations/{id}/", "mitigation"),
    Probe("api center reports", "get", "/api/v1/mitigations/{id}/center-reports/", "mitigation"),
    Probe("api action", "get", "/api/v1/actions/{id}/", "action"),
    Probe("api decision", "get", "/api/v1/decisions/{id}/", "decision"),
)
API_WRITE_PROBES = (
    Probe("api approve", "post", "/api/v1/mitigations/{id}/approve/", "mitigation"),
    Probe("api reject", "post", "/api/v1/mitigations/{id}/reject/", "mitigation"),
    Probe("api withdraw", "post", "/api/v1/mitigations/{id}/withdraw/", "mitigation"),
    Probe("api escalate", "post", "/api/v1/mitigations/{id}/escalate/", "mitigation"),
    Probe("api move", "post", "/api/v1/mitigations/{id}/move/", "mitigation"),
)


def foreign_objects(world: World, owner: str) -> tuple[Mitigation, dict[str, int]]:
    """A mitigation of `owner` awaiting approval, with the ids of its attack, action and decision."""
    tenant = world.acme if owner == "acme" else world.globex
    target = "203.0.113.77/32" if owner == "acme" else "198.51.100.77/32"
    mitigation = make_mitigation(tenant, target=target)
    ids = {
        "mitigation": mitigation.pk,
        "attack": mitigation.attack_id,
        "action": mitigation.actions.get().pk,
        "decision": mitigation.decisions.get().pk,
    }
    return mitigation, ids


def call(client: Client, probe: Probe, url: str) -> int:
    if probe.method == "post":
        return client.post(url, {"reason": "probe"}).status_code
    return client.get(url).status_code


@pytest.mark.parametrize(("home", "owner"), PAIRS)
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("probe", PAGE_PROBES + API_READ_PROBES + API_WRITE_PROBES, ids=lambda p: p.name)
def test_foreign_ids_answer_like_missing_ids(world: World, home: str, owner: str, role: str, probe: Probe) -> None:
    mitigation, ids = foreign_objects(world, owner)
    client = client_as(home, role)
    foreign = call(client, probe, probe.url(ids))
    missing = call(client, probe, probe.url(ids, missing=True))
    assert foreign == missing
    if probe in API_WRITE_PROBES and role == "viewer":
        # DRF checks the role before it looks the object up: 403 for every id, which tells nothing either.
        assert foreign == 403
    else:
        assert foreign == 404
    mitigation.refresh_from_db()
    assert mitigation.state == MitigationStateChoices.AWAITING_APPROVAL


@pytest.mark.parametrize(("home", "owner"), PAIRS)
@pytest.mark.parametrize("role", ROLES)
def test_lists_and_pages_never_show_another_tenants_rows(world: World, home: str, owner: str, role: str) -> None:
    _, ids = foreign_objects(world, owner)
    foreign_target = "198.51.100.77" if owner == "globex" else "203.0.113.77"
    client = client_as(home, role)
    for url in ("/", "/board/fragment/", "/api/v1/attacks/", "/api/v1/mitigations/", "/api/v1/actions/",
                "/api/v1/decisions/", f"/api/v1/actions/?mitigation={ids['mitigation']}",
                f"/api/v1/decisions/?mitigation={ids['mitigation']}"):
        response = client.get(url)
        assert response.status_code in {200, 400}, url
        assert foreign_target.encode() not in response.content, url
        if url.startswith("/api/") and response.status_code == 200:
            assert ids["mitigation"] not in [row.get("mitigation", row.get("id")) for row in rows(response.json())]


def rows(payload: object) -> list[dict[str, object]]:
    if isinstance(payload, dict):
        return list(payload.get("results", []))
    return list(payload) if isinstance(payload, list) else []


@pytest.mark.parametrize(("home", "owner"), PAIRS)
@pytest.mark.parametrize("role", ROLES)
def test_prefix_and_profile_api_are_the_domains_own(world: World, home: str, owner: str, role: str) -> None:
    """Prefixes and the profile live in the tenant's schema: another schema's id is not even addressable."""
    owner_tenant = world.acme if owner == "acme" else world.globex
    foreign = request_prefix(owner_tenant, "192.0.2.192/26", acting_user=Actor("user", "admin", owner))
    client = client_as(home, role)
    with schema_context(home):
        own_has_same_id = ProtectedPrefix.objects.filter(pk=foreign.pk).exists()
    response = client.get(f"/api/v1/prefixes/{foreign.pk}/")
    if own_has_same_id:
        assert b"192.0.2.192" not in response.content
    else:
        assert response.status_code == client.get(f"/api/v1/prefixes/{MISSING}/").status_code == 404
    assert b"192.0.2.192" not in client.get("/api/v1/prefixes/").content
    assert b"192.0.2.192" not in client.get("/prefixes/").content
    page = client.get("/profile/")
    assert page.context["form"].initial["latency_threshold_ms"] == (40 if home == "acme" else 25)


@pytest.mark.parametrize("home", ["acme", "globex"])
def test_profile_api_is_the_domains_own(world: World, home: str) -> None:
    profile = client_as(home, "viewer").get("/api/v1/profile/").json()
    assert profile["latency_threshold_ms"] == (40 if home == "acme" else 25)


PUBLIC_URLS = ("/", "/soc/board/fragment/", "/soc/prefixes/", "/soc/inventory/", "/soc/audit/", "/soc/onboard/",
               "/soc/panic/", "/api/v1/attacks/", "/api/v1/mitigations/")


@pytest.mark.parametrize("customer", ["acme", "globex"])
@pytest.mark.parametrize("role", ROLES)
def test_no_customer_session_works_at_the_public_domain(world: World, customer: str, role: str) -> None:
    mitigation = make_mitigation(world.acme if customer == "acme" else world.globex,
                                 target="203.0.113.78/32" if customer == "acme" else "198.51.100.78/32")
    logged_in = client_as(customer, role)
    public = Client(HTTP_HOST="localhost")
    public.cookies = logged_in.cookies
    for url in PUBLIC_URLS:
        response = public.get(url)
        if url.startswith("/api/"):
            assert response.status_code in {401, 403}, url
        else:
            assert response.status_code == 302 and response["Location"].startswith("/login/"), url
    assert public.post(f"/soc/mitigations/{mitigation.pk}/approve/").status_code == 302
    assert public.post(f"/api/v1/mitigations/{mitigation.pk}/approve/").status_code in {401, 403}
    mitigation.refresh_from_db()
    assert mitigation.state == MitigationStateChoices.AWAITING_APPROVAL


@pytest.mark.parametrize(("home", "other"), PAIRS)
@pytest.mark.parametrize("role", ROLES)
def test_a_customer_session_is_worthless_at_another_tenants_domain(world: World, home: str, other: str,
                                                                   role: str) -> None:
    logged_in = client_as(home, role)
    elsewhere = Client(HTTP_HOST=f"{other}.localhost")
    elsewhere.cookies = logged_in.cookies
    for url in ("/", "/prefixes/", "/profile/", "/users/"):
        response = elsewhere.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url
    assert elsewhere.get("/api/v1/mitigations/").status_code in {401, 403}
