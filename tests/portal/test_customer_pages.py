"""The customer portal at a tenant's domain: every page renders for every role, and the buttons change state."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from core.accounts.choices import UserRoleChoices
from core.accounts.models import User
from core.models import AuditEvent
from mitigation.choices import MitigationStateChoices
from mitigation.models import Action, Attack, Decision, Deployment, Mitigation
from tenants.customer.models import ProtectedPrefix, ServiceProfile
from tenants.models import Tenant, TenantPolicy
from tests.support.world import OPERATOR_TOTP_SECRET, World, signed_in

pytestmark = pytest.mark.django_db

ROLES = ("viewer", "operator", "admin")
HOSTS = {"acme": "acme.localhost", "globex": "globex.localhost", "public": "localhost"}


def user_for(schema: str, role: str) -> User:
    """A user of `role` in `schema`: the world's own where there is one, else made inside the test transaction."""
    with schema_context(schema):
        user = User.objects.filter(role=role, is_active=True).order_by("pk").first()
        if user is None:
            # Provider staff of every role must have TOTP; the world's code secret stands in for their app.
            enrolled = {"totp_secret": OPERATOR_TOTP_SECRET} if schema == "public" else {}
            user = User.objects.create_user(username=f"{role}-{schema}", password="unused-password-x9", role=role,
                                            **enrolled)
        return user


def client_as(schema: str, role: str | None) -> Client:
    """A browser at the domain of `schema`, logged in there as a user of `role` (or anonymous)."""
    client = Client(HTTP_HOST=HOSTS[schema])
    if role is not None:
        user = user_for(schema, role)
        with schema_context(schema):
            signed_in(client, user)
    return client


def make_mitigation(
    tenant: Tenant, *, state: str = MitigationStateChoices.AWAITING_APPROVAL, target: str = "203.0.113.10/32"
) -> Mitigation:
    """An attack with a planned mitigation (decision, action, deployment), as the engine would leave them."""
    attack = Attack.objects.create(tenant=tenant, target=target, vectors=["udp_flood"], bps=4_000_000_000, pps=900_000)
    mitigation = Mitigation.objects.create(
        attack=attack, tenant=tenant, state=state, level="flowspec", reason=f"FlowSpec drop of udp towards {target}"
    )
    Decision.objects.create(
        mitigation=mitigation, level="flowspec", reason="udp flood fits FlowSpec; no center needed",
        inputs={"attack": {"bps": attack.bps, "vectors": attack.vectors}, "policy": {"latency_ms": 40}},
    )
    action = Action.objects.create(
        mitigation=mitigation, kind="flowspec", spec={"destination": target, "protocol": [17]},
        route_key=f"key-{target}", targets=["speaker:s1"], reason="drop udp",
    )
    Deployment.objects.create(action=action, element="speaker:s1", state="absent")
    return mitigation


@pytest.fixture
def acme_mitigation(world: World) -> Mitigation:
    return make_mitigation(world.acme)


PAGES: tuple[Callable[[Mitigation], str], ...] = (
    lambda m: "/",
    lambda m: "/board/fragment/",
    lambda m: f"/mitigations/{m.pk}/",
    lambda m: f"/mitigations/{m.pk}/report.csv",
    lambda m: "/prefixes/",
    lambda m: "/profile/",
)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_for_every_role(
    world: World, acme_mitigation: Mitigation, role: str, page: Callable[[Mitigation], str]
) -> None:
    response = client_as("acme", role).get(page(acme_mitigation))
    assert response.status_code == 200
    url = page(acme_mitigation)
    assert b"Acme Corp" in response.content or url.endswith(("fragment/", ".csv"))


def test_dashboard_shows_live_attacks_and_mitigations_and_reason(world: World, acme_mitigation: Mitigation) -> None:
    body = client_as("acme", "viewer").get("/").content.decode()
    assert "203.0.113.10/32" in body
    assert "Awaiting approval" in body
    assert "FlowSpec drop of udp" in body
    assert 'data-fragment="/board/fragment/"' in body


def test_dashboard_never_shows_another_tenants_attacks(world: World) -> None:
    make_mitigation(world.globex, target="198.51.100.7/32")
    body = client_as("acme", "admin").get("/").content.decode()
    assert "198.51.100.7" not in body


def test_mitigation_detail_shows_actions_and_decisions(world: World, acme_mitigation: Mitigation) -> None:
    body = client_as("acme", "viewer").get(f"/mitigations/{acme_mitigation.pk}/").content.decode()
    assert "udp flood fits FlowSpec" in body
    assert "not yet verified" in body and "speaker:s1" not in body, "how far it is, not on which element"
    assert "Approve" not in body  # a viewer gets no buttons


def test_users_page_is_for_admins_only(world: World) -> None:
    assert client_as("acme", "admin").get("/users/").status_code == 200
    assert client_as("acme", "operator").get("/users/").status_code == 403
    assert client_as("acme", "viewer").get("/users/").status_code == 403


@pytest.mark.parametrize("page", ["/", "/board/fragment/", "/prefixes/", "/profile/", "/users/", "/mitigations/1/"])
def test_anonymous_users_are_sent_to_login(world: World, page: str) -> None:
    response = client_as("acme", None).get(page)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_operator_approves_a_pending_mitigation(world: World, acme_mitigation: Mitigation) -> None:
    client = client_as("acme", "operator")
    response = client.post(f"/mitigations/{acme_mitigation.pk}/approve/")
    assert response.status_code == 302
    acme_mitigation.refresh_from_db()
    assert acme_mitigation.state == MitigationStateChoices.APPLYING
    assert "operator-acme@acme" in acme_mitigation.approved_by
    assert AuditEvent.objects.filter(action="mitigation.approve", tenant_slug="acme").exists()
    assert b"applying" in client.get(f"/mitigations/{acme_mitigation.pk}/").content.lower()


def test_operator_rejects_with_a_reason(world: World, acme_mitigation: Mitigation) -> None:
    client_as("acme", "operator").post(f"/mitigations/{acme_mitigation.pk}/reject/", {"reason": "false positive"})
    acme_mitigation.refresh_from_db()
    assert acme_mitigation.state == MitigationStateChoices.REJECTED
    assert AuditEvent.objects.filter(action="mitigation.reject", reason="false positive").exists()


def test_operator_requests_a_withdrawal(world: World) -> None:
    mitigation = make_mitigation(world.acme, state=MitigationStateChoices.ACTIVE)
    client_as("acme", "admin").post(f"/mitigations/{mitigation.pk}/withdraw/", {"reason": "maintenance"})
    mitigation.refresh_from_db()
    assert mitigation.state == MitigationStateChoices.WITHDRAWING


def test_viewer_cannot_approve(world: World, acme_mitigation: Mitigation) -> None:
    assert client_as("acme", "viewer").post(f"/mitigations/{acme_mitigation.pk}/approve/").status_code == 403
    acme_mitigation.refresh_from_db()
    assert acme_mitigation.state == MitigationStateChoices.AWAITING_APPROVAL


def test_approving_twice_says_why_not(world: World, acme_mitigation: Mitigation) -> None:
    client = client_as("acme", "operator")
    client.post(f"/mitigations/{acme_mitigation.pk}/approve/")
    response = client.post(f"/mitigations/{acme_mitigation.pk}/approve/", follow=True)
    assert b"only a mitigation awaiting approval can be approved" in response.content


def test_actions_need_post_and_csrf(world: World, acme_mitigation: Mitigation) -> None:
    client = client_as("acme", "operator")
    assert client.get(f"/mitigations/{acme_mitigation.pk}/approve/").status_code == 405
    strict = Client(HTTP_HOST="acme.localhost", enforce_csrf_checks=True)
    with schema_context("acme"):
        signed_in(strict, user_for("acme", "operator"))
    assert strict.post(f"/mitigations/{acme_mitigation.pk}/approve/").status_code == 403
    acme_mitigation.refresh_from_db()
    assert acme_mitigation.state == MitigationStateChoices.AWAITING_APPROVAL


def test_admin_requests_a_prefix_which_stays_pending(world: World) -> None:
    response = client_as("acme", "admin").post("/prefixes/", {"prefix": "192.0.2.0/25", "description": "lab"})
    assert response.status_code == 302
    with schema_context("acme"):
        assert ProtectedPrefix.objects.get(prefix="192.0.2.0/25").status == "pending"


def test_a_refused_prefix_is_shown_on_the_field(world: World) -> None:
    response = client_as("acme", "admin").post("/prefixes/", {"prefix": "203.0.113.128/25"})
    assert response.status_code == 200
    assert response.context["form"].errors["prefix"]


def test_viewer_cannot_request_a_prefix(world: World) -> None:
    assert client_as("acme", "viewer").post("/prefixes/", {"prefix": "192.0.2.0/25"}).status_code == 403


def profile_post(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "latency_threshold_ms": 35, "application_profile": "web", "automation_mode": "manual",
        "approval_window_minutes": 5, "allowed_actions": ["flowspec", "diversion"], "hold_down_minutes": 10,
        "detection_threshold_bps": 1_000_000_000, "detection_threshold_pps": 200_000, "latency_overrides": "",
    }
    data.update(changes)
    return data


def test_admin_changes_the_profile_and_sees_it_in_the_history(world: World) -> None:
    client = client_as("acme", "admin")
    assert client.post("/profile/", profile_post(latency_overrides="center:fra=30")).status_code == 302
    policy = TenantPolicy.objects.get(tenant=world.acme)
    assert (policy.latency_threshold_ms, policy.automation_mode) == (35, "manual")
    assert policy.latency_overrides == {"center:fra": 30}
    with schema_context("acme"):
        assert ServiceProfile.objects.get().latency_threshold_ms == 35
    body = client.get("/profile/").content.decode()
    assert "latency_threshold_ms: 40 → 35" in body


def test_profile_refusals_name_the_field(world: World) -> None:
    response = client_as("acme", "admin").post("/profile/", profile_post(latency_overrides="planet:mars=3"))
    assert response.status_code == 200
    assert "latency_overrides" in response.context["form"].errors
    assert TenantPolicy.objects.get(tenant=world.acme).latency_threshold_ms == 40


def test_operator_cannot_change_the_profile(world: World) -> None:
    assert client_as("acme", "operator").post("/profile/", profile_post()).status_code == 403


def test_admin_creates_a_user_and_sees_the_password_once(world: World) -> None:
    client = client_as("acme", "admin")
    response = client.post("/users/", {"username": "noc-bob", "email": "bob@acme.example", "role": "operator"})
    assert response.status_code == 200
    _username, password = response.context["created"]
    assert password.encode() in response.content
    with schema_context("acme"):
        bob = User.objects.get(username="noc-bob")
        assert bob.role == UserRoleChoices.OPERATOR and bob.check_password(password)
    assert password.encode() not in client.get("/users/").content
    assert AuditEvent.objects.filter(action="user.create", tenant_slug="acme").exists()
    again = client.post("/users/", {"username": "noc-bob", "role": "viewer"})
    assert again.context["form"].errors["username"]


def test_report_csv_lists_attack_decisions_and_actions(world: World, acme_mitigation: Mitigation) -> None:
    response = client_as("acme", "viewer").get(f"/mitigations/{acme_mitigation.pk}/report.csv")
    assert response["Content-Type"] == "text/csv"
    lines = response.content.decode().splitlines()
    assert [line.split(",")[0] for line in lines] == ["section", "attack", "mitigation", "verdict", "decision", "action"]
    assert "203.0.113.10/32" in lines[1] and "carried on 0 element(s)" in lines[5]
    assert "speaker:s1" not in response.content.decode(), "element names are the provider's"
