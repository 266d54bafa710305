"""The inventory API on the provider's domain and the center load endpoint for scrubbing appliances."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from core.accounts.choices import UserRoleChoices
from core.accounts.models import ApiToken, User
from devices.models import Router, ScrubbingCenter
from tests.support.world import World

pytestmark = pytest.mark.django_db
PUBLIC = "localhost"


def token_for(username: str, scopes: list[str], *, schema: str = "public",
              role: str = UserRoleChoices.ADMIN) -> str:
    with schema_context(schema):
        user = User.objects.filter(username=username).first() or User.objects.create_user(
            username=username, password="unused-password-123", role=role)
        key, prefix, digest = ApiToken.generate_key()
        ApiToken.objects.create(user=user, name="test", key_prefix=prefix, key_hash=digest, scopes=scopes)
    return key


def api(host: str = PUBLIC, key: str | None = None) -> Client:
    headers = {"HTTP_AUTHORIZATION": f"Token {key}"} if key else {}
    return Client(HTTP_HOST=host, **headers)


@pytest.fixture
def center(world: World) -> ScrubbingCenter:
    return ScrubbingCenter.objects.create(slug="fra", name="Frankfurt", capacity_gbps=400, capacity_mpps=300)


def post_load(client: Client, body: object, slug: str = "fra") -> object:
    return client.post(f"/api/v1/centers/{slug}/load/", data=json.dumps(body), content_type="application/json")


def test_telemetry_token_records_load(center: ScrubbingCenter) -> None:
    client = api(key=token_for("appliance-fra", ["telemetry"], role=UserRoleChoices.OPERATOR))
    response = post_load(client, {"load_gbps": 55.5, "load_mpps": 12, "healthy": False})
    assert response.status_code == 200, response.content
    assert response.json()["load_gbps"] == 55.5
    center.refresh_from_db()
    assert (center.load_gbps, center.load_mpps, center.healthy) == (55.5, 12.0, False)
    assert center.load_updated_at is not None
    assert post_load(client, {"load_gbps": 1, "load_mpps": 1}).json()["healthy"] is False  # omitted: kept


def test_wrong_scope_and_session_logins_are_refused(center: ScrubbingCenter) -> None:
    response = post_load(api(key=token_for("reader", ["read", "write"])), {"load_gbps": 1, "load_mpps": 1})
    assert response.status_code == 403
    assert post_load(api(), {"load_gbps": 1, "load_mpps": 1}).status_code in (401, 403)
    center.refresh_from_db()
    assert center.load_updated_at is None


def test_tenant_token_is_rejected_at_the_public_domain(world: World, center: ScrubbingCenter) -> None:
    key = token_for("acme-bot", ["telemetry", "read", "write"], schema=world.acme.schema_name)
    assert post_load(api(key=key), {"load_gbps": 1, "load_mpps": 1}).status_code == 401
    assert api(key=key).get("/api/v1/routers/").status_code == 401
    center.refresh_from_db()
    assert center.load_updated_at is None


@pytest.mark.parametrize(("body", "field"), [
    ({"load_mpps": 1}, "load_gbps"),
    ({"load_gbps": -3, "load_mpps": 1}, "load_gbps"),
    ({"load_gbps": "lots", "load_mpps": 1}, "load_gbps"),
    ({"load_gbps": 1, "load_mpps": 1, "healthy": "perhaps"}, "healthy"),
    ({"load_gbps": 1, "load_mpps": None}, "load_mpps"),
])
def test_bad_body_is_a_400_naming_the_field(center: ScrubbingCenter, body: dict, field: str) -> None:
    response = post_load(api(key=token_for("appliance", ["telemetry"])), body)
    assert response.status_code == 400
    assert field in json.dumps(response.json())
    center.refresh_from_db()
    assert center.load_updated_at is None


def test_non_json_and_unknown_center(center: ScrubbingCenter) -> None:
    client = api(key=token_for("appliance", ["telemetry"]))
    response = client.post("/api/v1/centers/fra/load/", data="{not json", content_type="application/json")
    assert response.status_code == 400
    response = client.post("/api/v1/centers/fra/load/", data=json.dumps([1, 2]), content_type="application/json")
    assert response.status_code == 400
    assert post_load(client, {"load_gbps": 1, "load_mpps": 1}, slug="nowhere").status_code == 404


def test_router_password_is_write_only_and_masked(center: ScrubbingCenter) -> None:
    client = api(key=token_for("admin-bot", ["read", "write"]))
    response = client.post("/api/v1/routers/", data=json.dumps({
        "name": "edge-api-1", "vendor": "juniper", "platform": "junos", "role": "edge", "center": "fra",
        "mgmt_host": "127.0.0.1", "mgmt_port": 18399, "username": "sluice", "password": "api-secret-pw",
    }), content_type="application/json")
    assert response.status_code == 201, response.content
    assert response.json()["password"] == "••••" and "api-secret-pw" not in response.content.decode()
    router = Router.objects.get(name="edge-api-1")
    assert router.password == "api-secret-pw" and router.center == center
    listing = client.get("/api/v1/routers/")
    assert listing.status_code == 200 and "api-secret-pw" not in listing.content.decode()
    patch = client.patch(f"/api/v1/routers/{router.pk}/", data=json.dumps({"mgmt_port": 18398}),
                         content_type="application/json")
    assert patch.status_code == 200
    router.refresh_from_db()
    assert (router.mgmt_port, router.password) == (18398, "api-secret-pw")


def test_viewers_read_but_do_not_write(center: ScrubbingCenter) -> None:
    client = api(key=token_for("soc-viewer", ["read", "write"], role=UserRoleChoices.VIEWER))
    assert client.get("/api/v1/centers/").status_code == 200
    response = client.patch("/api/v1/centers/fra/", data=json.dumps({"capacity_gbps": 1}),
                            content_type="application/json")
    assert response.status_code == 403
    assert ScrubbingCenter.objects.get(slug="fra").capacity_gbps == 400


def test_inventory_is_not_served_at_a_tenant_domain(world: World, center: ScrubbingCenter) -> None:
    key = token_for("acme-reader", ["read"], schema=world.acme.schema_name)
    assert api("acme.localhost", key).get("/api/v1/centers/").status_code == 404


def test_a_nul_in_a_related_rows_name_is_a_400_not_a_server_error(center: ScrubbingCenter) -> None:
    """The fuzzer's find: PostgreSQL refuses NUL in text, and a related row is looked up by the name as sent."""
    client = api(key=token_for("soc-admin-nul", ["read", "write"]))
    response = client.post("/api/v1/tenant-latencies/", data=json.dumps(
        {"center": "\u00005fra", "tenant": "acme", "latency_ms": 10}), content_type="application/json")
    assert response.status_code == 400, response.content
    assert "center" in response.json()["fields"], response.json()
