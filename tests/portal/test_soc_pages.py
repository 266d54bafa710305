"""The SOC console at the provider's domain: pages per role, operator actions, the prefix queue, and a fast board."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from core.actors import Actor
from core.models import AuditEvent
from devices.drivers.base import PortClosedError
from devices.health import record_push_failure, record_push_success
from devices.models import BgpSpeaker, Router, ScrubbingCenter, UpstreamPeer
from mitigation.choices import MitigationStateChoices
from mitigation.models import ControlSwitch, Mitigation
from portal.soc.views import flatten_inputs
from tenants.customer.models import ProtectedPrefix
from tenants.models import Tenant, VerifiedPrefix
from tenants.services import request_prefix
from tests.portal.test_customer_pages import ROLES, client_as, make_mitigation
from tests.support.world import World

pytestmark = pytest.mark.django_db

ROUTER_SECRET = "s3cret-router-password"


@pytest.fixture
def network() -> ScrubbingCenter:
    """A small inventory: two centers, a router (with a password), an upstream and a speaker."""
    fra = ScrubbingCenter.objects.create(slug="fra", name="Frankfurt", capacity_gbps=400, capacity_mpps=200,
                                         load_gbps=300, load_mpps=20)
    ScrubbingCenter.objects.create(slug="ams", name="Amsterdam", capacity_gbps=100, capacity_mpps=50, load_gbps=95)
    router = Router.objects.create(name="mx-fra-1", vendor="juniper", platform="junos", mgmt_host="192.0.2.10",
                                   username="sluice", password=ROUTER_SECRET, center=fra)
    UpstreamPeer.objects.create(name="transit-a", isp="Transit A", asn=64500, router=router, center=fra,
                                neighbor_address="192.0.2.1", capacity_gbps=100, utilisation=0.42,
                                session_state="established")
    BgpSpeaker.objects.create(name="spk-fra", router_id="192.0.2.20", local_as=64512, local_address="192.0.2.20",
                              center=fra)
    return fra


def soc_mitigation(world: World, center: ScrubbingCenter | None = None) -> Mitigation:
    mitigation = make_mitigation(world.acme)
    mitigation.center = center
    mitigation.save()
    return mitigation


PAGES = ("/", "/soc/board/fragment/", "/soc/prefixes/", "/soc/inventory/", "/soc/audit/",
         "/soc/audit/?tenant=acme&action=tenant&actor=tests&since=2000-01-01&until=2999-01-01&page=1")


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_for_every_operator_role(world: World, network: ScrubbingCenter, role: str,
                                                    page: str) -> None:
    soc_mitigation(world, network)
    assert client_as("public", role).get(page).status_code == 200


@pytest.mark.parametrize("role", ROLES)
def test_detail_pages_render_for_every_role(world: World, role: str) -> None:
    mitigation = soc_mitigation(world)
    client = client_as("public", role)
    assert client.get(f"/soc/mitigations/{mitigation.pk}/").status_code == 200
    assert client.get(f"/soc/attacks/{mitigation.attack_id}/").status_code == 302


@pytest.mark.parametrize("page", ["/soc/onboard/", "/soc/panic/"])
def test_admin_pages_are_for_admins(world: World, page: str) -> None:
    assert client_as("public", "admin").get(page).status_code == 200
    assert client_as("public", "operator").get(page).status_code == 403
    assert client_as("public", "viewer").get(page).status_code == 403


SOC_PAGES = ("/", "/soc/board/fragment/", "/soc/prefixes/", "/soc/inventory/", "/soc/audit/", "/soc/onboard/",
             "/soc/panic/", "/soc/mitigations/1/", "/soc/attacks/1/")


@pytest.mark.parametrize("page", SOC_PAGES)
def test_anonymous_users_are_sent_to_login(world: World, page: str) -> None:
    response = client_as("public", None).get(page)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


@pytest.mark.parametrize("page", SOC_PAGES)
def test_a_customer_session_is_anonymous_at_the_public_domain(world: World, page: str) -> None:
    customer = client_as("acme", "admin")
    public = client_as("public", None)
    public.cookies = customer.cookies
    response = public.get(page)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


@pytest.mark.parametrize("page", ["/soc/", "/soc/inventory/", "/soc/prefixes/", "/soc/onboard/"])
def test_soc_pages_do_not_exist_at_a_tenant_domain(world: World, page: str) -> None:
    assert client_as("acme", "admin").get(page).status_code == 404


def test_board_shows_attacks_mitigations_load_and_peers(world: World, network: ScrubbingCenter) -> None:
    soc_mitigation(world, network)
    make_mitigation(world.globex, target="198.51.100.9/32", state=MitigationStateChoices.ACTIVE)
    body = client_as("public", "viewer").get("/").content.decode()
    for text in ("203.0.113.10/32", "198.51.100.9/32", "Frankfurt", "300.0 / 400 Gbps (75%)", "transit-a",
                 "Established", "FlowSpec drop of udp", 'class="bar bad"'):
        assert text in body, text


def test_inventory_never_shows_router_credentials(world: World, network: ScrubbingCenter) -> None:
    response = client_as("public", "admin").get("/soc/inventory/")
    body = response.content.decode()
    assert "mx-fra-1" in body and "spk-fra" in body and "Transit A" in body
    assert ROUTER_SECRET not in body
    assert all("password" not in row for row in response.context["routers"])


def test_decision_inputs_are_shown_as_a_table(world: World) -> None:
    mitigation = soc_mitigation(world)
    body = client_as("public", "viewer").get(f"/soc/mitigations/{mitigation.pk}/").content.decode()
    assert "<td>attack.bps</td><td>4000000000</td>" in body
    assert "<td>policy.latency_ms</td><td>40</td>" in body
    assert "udp flood fits FlowSpec" in body


def test_flatten_inputs_reads_nested_json() -> None:
    rows = list(flatten_inputs({"a": {"b": 1}, "c": [{"d": "x"}], "e": [1, 2], "f": {}}))
    assert [(r.key, r.value) for r in rows] == [("a.b", "1"), ("c[0].d", "x"), ("e", "[1, 2]"), ("f", "{}")]


def test_operator_approves_and_withdraws(world: World) -> None:
    mitigation = soc_mitigation(world)
    client = client_as("public", "operator")
    assert client.post(f"/soc/mitigations/{mitigation.pk}/approve/").status_code == 302
    mitigation.refresh_from_db()
    assert mitigation.state == MitigationStateChoices.APPLYING
    assert mitigation.approved_by == "user:operator-public"
    client.post(f"/soc/mitigations/{mitigation.pk}/withdraw/", {"reason": "customer call"})
    mitigation.refresh_from_db()
    assert mitigation.state == MitigationStateChoices.WITHDRAWING
    assert AuditEvent.objects.filter(action="mitigation.withdraw", reason="customer call", actor_kind="user").exists()


def test_viewer_cannot_act(world: World) -> None:
    mitigation = soc_mitigation(world)
    assert client_as("public", "viewer").post(f"/soc/mitigations/{mitigation.pk}/approve/").status_code == 403
    mitigation.refresh_from_db()
    assert mitigation.state == MitigationStateChoices.AWAITING_APPROVAL


def test_panic_needs_the_typed_word(world: World) -> None:
    client = client_as("public", "admin")
    response = client.post("/soc/panic/", {"confirm": "panic", "reason": "test"})
    assert response.status_code == 200
    assert response.context["form"].errors["confirm"]
    assert not ControlSwitch.current().panic


def test_panic_withdraws_everything_and_can_be_cleared(world: World) -> None:
    mitigation = make_mitigation(world.acme, state=MitigationStateChoices.ACTIVE)
    client = client_as("public", "admin")
    assert client.post("/soc/panic/", {"confirm": "PANIC", "reason": "bad route leak"}).status_code == 302
    mitigation.refresh_from_db()
    assert ControlSwitch.current().panic
    assert mitigation.state in {MitigationStateChoices.WITHDRAWING, MitigationStateChoices.ENDED}
    assert b"PANIC is on" in client.get("/").content
    client.post("/soc/panic/", {"clear": "1", "reason": "leak fixed"})
    assert not ControlSwitch.current().panic


def test_operator_cannot_panic(world: World) -> None:
    assert client_as("public", "operator").post("/soc/panic/", {"confirm": "PANIC", "reason": "x"}).status_code == 403
    assert not ControlSwitch.current().panic


def test_prefix_queue_lists_pending_prefixes_of_every_tenant_and_verifies(world: World) -> None:
    actor = Actor("user", "admin", "acme", "admin")
    acme_prefix = request_prefix(world.acme, "192.0.2.0/26", acting_user=actor)
    globex_prefix = request_prefix(world.globex, "192.0.2.128/26", acting_user=Actor("user", "admin", "globex"))
    client = client_as("public", "admin")
    body = client.get("/soc/prefixes/").content.decode()
    assert "192.0.2.0/26" in body and "192.0.2.128/26" in body
    assert client.post(f"/soc/prefixes/acme/{acme_prefix.pk}/verify/").status_code == 302
    assert VerifiedPrefix.objects.filter(tenant=world.acme, prefix="192.0.2.0/26").exists()
    client.post(f"/soc/prefixes/globex/{globex_prefix.pk}/reject/", {"reason": "not in your RIR allocation"})
    with schema_context("globex"):
        rejected = ProtectedPrefix.objects.get(pk=globex_prefix.pk)
    assert (rejected.status, rejected.status_reason) == ("rejected", "not in your RIR allocation")
    assert [item.prefix.pk for item in client.get("/soc/prefixes/").context["pending"]] == []


def test_verifying_an_overlap_with_another_tenant_is_refused_with_the_reason(world: World) -> None:
    clash = request_prefix(world.globex, "203.0.113.0/25", acting_user=Actor("user", "admin", "globex"))
    response = client_as("public", "admin").post(f"/soc/prefixes/globex/{clash.pk}/verify/", follow=True)
    assert b"verified for another tenant" in response.content
    assert not VerifiedPrefix.objects.filter(tenant=world.globex, prefix="203.0.113.0/25").exists()


def test_prefix_actions_need_an_admin_and_a_real_prefix(world: World) -> None:
    pending = request_prefix(world.acme, "192.0.2.64/26", acting_user=Actor("user", "admin", "acme"))
    assert client_as("public", "operator").post(f"/soc/prefixes/acme/{pending.pk}/verify/").status_code == 403
    admin = client_as("public", "admin")
    assert admin.post("/soc/prefixes/acme/999999/verify/").status_code == 404
    assert admin.post(f"/soc/prefixes/nobody/{pending.pk}/verify/").status_code == 404
    assert admin.post(f"/soc/prefixes/public/{pending.pk}/verify/").status_code == 404


def test_audit_log_filters_and_pages(world: World) -> None:
    AuditEvent.objects.bulk_create(
        AuditEvent(actor_kind="user", actor="alice", tenant_slug="acme", action="prefix.request") for _ in range(60)
    )
    AuditEvent.objects.create(actor_kind="user", actor="bob", tenant_slug="globex", action="profile.update")
    client = client_as("public", "viewer")
    first = client.get("/soc/audit/?tenant=acme&actor=alic")
    assert first.context["page"].paginator.count == 60
    assert len(first.context["page"].object_list) == 50
    assert b"page=2" in first.content and b"tenant=acme" in first.content
    second = client.get("/soc/audit/?tenant=acme&actor=alic&page=2")
    assert len(second.context["page"].object_list) == 10
    assert client.get("/soc/audit/?action=profile.&tenant=globex").context["page"].paginator.count >= 1
    assert client.get("/soc/audit/?until=2000-01-01").context["page"].paginator.count == 0


def add_tenants_with_attacks(world: World, count: int, center: ScrubbingCenter) -> None:
    """More tenants, each with a live attack and mitigation. Rows only: the board never reads tenant schemas."""
    start = Tenant.objects.count()
    tenants = Tenant.objects.bulk_create(
        Tenant(schema_name=f"bench_{start + n}", slug=f"bench-{start + n}", name=f"Bench {start + n}")
        for n in range(count)
    )
    for n, tenant in enumerate(tenants):
        mitigation = make_mitigation(tenant, target=f"192.0.2.{start + n}/32", state=MitigationStateChoices.ACTIVE)
        mitigation.center = center
        mitigation.save()


def board_queries(world: World) -> int:
    client = client_as("public", "viewer")
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/soc/board/fragment/").status_code == 200
    return len(queries)


def test_board_query_count_is_small_and_independent_of_tenants(
    world: World, network: ScrubbingCenter, django_assert_max_num_queries: object
) -> None:
    add_tenants_with_attacks(world, 3, network)
    few = board_queries(world)
    add_tenants_with_attacks(world, 12, network)
    many = board_queries(world)
    assert few == many
    client = client_as("public", "viewer")
    # django-tenants sends `SET search_path` before every statement unless TENANT_LIMIT_SET_CALLS is on (as it
    # should be in production); the budget is for the board's own statements.
    with override_settings(TENANT_LIMIT_SET_CALLS=True), django_assert_max_num_queries(20):  # type: ignore[operator]
        response = client.get("/")
    assert response.content.count(b"192.0.2.") >= 15


def test_board_statements_without_search_path_resets_stay_under_twenty(world: World, network: ScrubbingCenter) -> None:
    add_tenants_with_attacks(world, 8, network)
    client = client_as("public", "viewer")
    with CaptureQueriesContext(connection) as queries:
        client.get("/")
    statements = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith("SET search_path")]
    assert len(statements) <= 20


def test_inventory_shows_each_elements_push_state(world: World, network: ScrubbingCenter) -> None:
    record_push_failure("router:mx-fra-1", PortClosedError("192.0.2.10:830 refused the connection"))
    body = client_as("public", "admin").get("/soc/inventory/").content.decode()
    assert "Unreachable since" in body and "refused the connection" in body and "next try" in body
    record_push_success("router:mx-fra-1")
    body = client_as("public", "admin").get("/soc/inventory/").content.decode()
    assert "Unreachable since" not in body


def test_a_degraded_mitigation_names_the_element_to_the_soc_only(world: World) -> None:
    mitigation = make_mitigation(world.acme, state=MitigationStateChoices.ACTIVE)
    mitigation.last_error = "degraded: mx-fra-1 unreachable since 14:02"
    mitigation.save()
    soc = client_as("public", "admin").get(f"/soc/mitigations/{mitigation.pk}/").content.decode()
    assert "Degraded" in soc and "mx-fra-1 unreachable since 14:02" in soc
    customer = client_as("acme", "admin").get(f"/mitigations/{mitigation.pk}/").content.decode()
    assert "Degraded" in customer and "mx-fra-1" not in customer


def test_an_operator_puts_a_router_into_maintenance_and_back_with_a_reason(world: World, network: ScrubbingCenter) -> None:
    client = client_as("public", "operator")
    page = client.get("/soc/inventory/").content.decode()
    assert 'name="element" value="router:mx-fra-1"' in page
    response = client.post("/soc/inventory/maintenance/", {"element": "router:mx-fra-1", "maintenance": "on",
                                                           "reason": "RE switchover"})
    assert response.status_code == 302
    assert "In maintenance" in client.get("/soc/inventory/").content.decode()
    assert AuditEvent.objects.filter(action="element.maintenance.on", reason="RE switchover").exists()
    client.post("/soc/inventory/maintenance/", {"element": "router:mx-fra-1", "maintenance": "off", "reason": ""})
    assert "In maintenance" in client.get("/soc/inventory/").content.decode(), "no reason, no change"
    client.post("/soc/inventory/maintenance/", {"element": "router:mx-fra-1", "maintenance": "off", "reason": "done"})
    assert "In maintenance" not in client.get("/soc/inventory/").content.decode()
    assert client.post("/soc/inventory/maintenance/", {"element": "router:nope", "maintenance": "on",
                                                       "reason": "x"}).status_code == 404


def test_a_viewer_cannot_put_an_element_into_maintenance(world: World, network: ScrubbingCenter) -> None:
    client = client_as("public", "viewer")
    assert 'name="element"' not in client.get("/soc/inventory/").content.decode()
    response = client.post("/soc/inventory/maintenance/", {"element": "router:mx-fra-1", "maintenance": "on",
                                                           "reason": "x"})
    assert response.status_code in (302, 403)
    assert not AuditEvent.objects.filter(action="element.maintenance.on").exists()
