"""Customer admins make API tokens: shown once, stored hashed, scoped, expiring, revocable, and tenant-bound."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from core.accounts.models import ApiToken
from tests.support.world import World

pytestmark = pytest.mark.django_db


def admin_client(host: str, password: str) -> Client:
    client = Client(HTTP_HOST=host)
    assert client.post("/login/", {"username": "admin", "password": password}).status_code == 302
    return client


def make_token(client: Client, scopes: list[str], days: int = 30) -> str:
    response = client.post("/tokens/", {"name": "detector", "user": "admin", "scopes": scopes, "expires_in_days": days})
    assert response.status_code == 200
    match = re.search(rb"slc_[0-9a-f]{12}_[A-Za-z0-9_-]+", response.content)
    assert match, "the new key is shown once"
    return match.group().decode()


def test_a_token_is_shown_once_stored_hashed_and_works_within_its_scope(world: World) -> None:
    client = admin_client("acme.localhost", world.acme_admin_password)
    key = make_token(client, ["read"])
    assert key.encode() not in client.get("/tokens/").content
    with schema_context("acme"):
        token = ApiToken.objects.get(name="detector")
        assert key not in token.key_hash and token.scopes == ["read"]
    api = Client(HTTP_HOST="acme.localhost", HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/v1/attacks/").status_code == 200
    assert api.post("/api/v1/prefixes/", {"prefix": "192.0.2.0/28"}).status_code == 403
    assert Client(HTTP_HOST="globex.localhost", HTTP_AUTHORIZATION=f"Token {key}").get(
        "/api/v1/attacks/").status_code == 401


def test_an_expired_or_revoked_token_stops_working(world: World) -> None:
    client = admin_client("acme.localhost", world.acme_admin_password)
    key = make_token(client, ["read"])
    api = Client(HTTP_HOST="acme.localhost", HTTP_AUTHORIZATION=f"Token {key}")
    with schema_context("acme"):
        token = ApiToken.objects.get(name="detector")
        ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now())
    assert api.get("/api/v1/attacks/").status_code == 401
    assert client.post(f"/tokens/{token.pk}/revoke/").status_code == 302
    with schema_context("acme"):
        assert not ApiToken.objects.filter(pk=token.pk).exists()


def test_bad_input_is_refused_on_the_form(world: World) -> None:
    client = admin_client("acme.localhost", world.acme_admin_password)
    response = client.post("/tokens/", {"name": "x", "user": "admin", "scopes": [], "expires_in_days": 999})
    assert response.status_code == 200 and b"slc_" not in response.content


def test_only_admins_manage_tokens_and_foreign_ids_are_404(world: World) -> None:
    viewer = Client(HTTP_HOST="acme.localhost")
    viewer.post("/login/", {"username": "viewer", "password": "viewer-test-password"})
    assert viewer.get("/tokens/").status_code == 403
    globex = admin_client("globex.localhost", world.globex_admin_password)
    make_token(globex, ["read"])
    with schema_context("globex"):
        foreign = ApiToken.objects.get(name="detector").pk
    acme = admin_client("acme.localhost", world.acme_admin_password)
    with schema_context("acme"):
        ApiToken.objects.filter(pk=foreign).delete()
    assert acme.post(f"/tokens/{foreign}/revoke/").status_code == 404
    with schema_context("globex"):
        assert ApiToken.objects.filter(pk=foreign).exists()
