"""Login throttling per username at a domain and per client address, and the idle timeout of sessions."""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from core.accounts import throttling
from core.accounts.throttling import LOCKED_MESSAGE, reset_login_throttle
from core.redis import redis_client
from tests.support.world import OPERATOR_PASSWORD, World, password_login

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_login_counters() -> Iterator[None]:
    """These tests fail logins on purpose: each starts from zero and leaves nothing locked for the next."""
    reset_login_throttle()
    yield
    reset_login_throttle()


def test_five_failures_lock_the_username_at_that_domain(world: World) -> None:
    client = Client(HTTP_HOST="acme.localhost")
    for _ in range(throttling.USERNAME_LIMIT):
        assert password_login(client, "admin", "wrong-password") == 200
    response = client.post("/login/", {"username": "admin", "password": world.acme_admin_password})
    assert response.status_code == 200 and LOCKED_MESSAGE.encode() in response.content
    assert client.get("/").status_code == 302
    assert password_login(Client(HTTP_HOST="acme.localhost"), "viewer", "viewer-test-password") == 302, "other names work"
    assert password_login(Client(HTTP_HOST="globex.localhost"), "admin", world.globex_admin_password) == 302, \
        "the same name at another domain is another user"


def test_counters_expire_by_themselves(world: World) -> None:
    password_login(Client(HTTP_HOST="acme.localhost"), "admin", "wrong-password")
    attempt = throttling.LoginAttempt("acme", "admin", "127.0.0.1")
    for key, _ in attempt.counters():
        assert 0 < redis_client().ttl(key) <= throttling.WINDOW_SECONDS


def test_a_lock_lasts_fifteen_minutes_from_the_last_failure(world: World) -> None:
    client = Client(HTTP_HOST="acme.localhost")
    for _ in range(throttling.USERNAME_LIMIT):
        password_login(client, "admin", "wrong-password")
    key = throttling.LoginAttempt("acme", "admin", "127.0.0.1").counters()[0][0]
    assert throttling.LOCK_SECONDS - 5 <= redis_client().ttl(key) <= throttling.LOCK_SECONDS


def test_a_successful_login_forgives_earlier_typos(world: World) -> None:
    client = Client(HTTP_HOST="acme.localhost")
    for _ in range(throttling.USERNAME_LIMIT - 1):
        password_login(client, "admin", "wrong-password")
    assert password_login(client, "admin", world.acme_admin_password) == 302
    assert password_login(Client(HTTP_HOST="acme.localhost"), "admin", "wrong-password") == 200
    assert password_login(Client(HTTP_HOST="acme.localhost"), "admin", world.acme_admin_password) == 302


def test_twenty_failures_lock_the_client_address(world: World) -> None:
    client = Client(HTTP_HOST="globex.localhost", REMOTE_ADDR="127.0.0.9")
    for index in range(throttling.ADDRESS_LIMIT):
        assert password_login(client, f"nobody-{index}", "wrong-password") == 200
    response = client.post("/login/", {"username": "admin", "password": world.globex_admin_password})
    assert LOCKED_MESSAGE.encode() in response.content
    elsewhere = Client(HTTP_HOST="globex.localhost", REMOTE_ADDR="127.0.0.10")
    assert password_login(elsewhere, "admin", world.globex_admin_password) == 302


def test_wrong_codes_count_like_wrong_passwords(world: World) -> None:
    client = Client(HTTP_HOST="localhost")
    for _ in range(throttling.USERNAME_LIMIT):
        assert password_login(client, "soc", OPERATOR_PASSWORD) == 302
        assert client.post("/login/verify/", {"code": "000000x"}).status_code == 200
    assert LOCKED_MESSAGE.encode() in client.post(
        "/login/", {"username": "soc", "password": OPERATOR_PASSWORD}).content


def test_an_idle_session_expires(world: World) -> None:
    client = Client(HTTP_HOST="acme.localhost")
    assert password_login(client, "viewer", "viewer-test-password") == 302
    assert client.get("/").status_code == 200
    key = client.session.session_key
    with schema_context("acme"):
        session = Session.objects.get(session_key=key)
        remaining = session.expire_date - timezone.now()
        assert remaining > datetime.timedelta(seconds=settings.SESSION_COOKIE_AGE - 60), "each request renews it"
        Session.objects.filter(session_key=key).update(expire_date=timezone.now() - datetime.timedelta(seconds=1))
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
