"""Requests are routed by host; users log in only at their own domain."""

from __future__ import annotations

import pytest
from django.test import Client

from core.accounts.throttling import reset_login_throttle
from tests.support.world import OPERATOR_PASSWORD, World, login_with_code, password_login

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_login_counters() -> None:
    """Some tests here fail logins on purpose; they must not lock out the next ones."""
    reset_login_throttle()


def test_tenant_host_gets_its_own_login_page(world: World) -> None:
    response = Client(HTTP_HOST="acme.localhost").get("/login/")
    assert response.status_code == 200
    assert b"Acme Corp" in response.content


def test_public_host_gets_the_operator_console_login(world: World) -> None:
    response = Client(HTTP_HOST="localhost").get("/login/")
    assert response.status_code == 200
    assert b"operator console" in response.content


def test_unknown_host_is_a_404(world: World) -> None:
    assert Client(HTTP_HOST="nobody.localhost").get("/login/").status_code == 404


def test_customer_logs_in_at_its_own_domain(world: World) -> None:
    client = Client(HTTP_HOST="acme.localhost")
    assert password_login(client, "admin", world.acme_admin_password) == 302
    assert client.get("/").status_code == 200


def test_credentials_of_one_tenant_never_work_at_another_tenants_domain(world: World) -> None:
    client = Client(HTTP_HOST="globex.localhost")
    assert password_login(client, "admin", world.acme_admin_password) == 200  # the form again, with an error
    assert client.get("/").status_code == 302


def test_customer_credentials_do_not_work_at_the_public_domain(world: World) -> None:
    client = Client(HTTP_HOST="localhost")
    assert password_login(client, "admin", world.acme_admin_password) == 200
    assert client.get("/").status_code == 302


def test_operator_credentials_do_not_work_at_a_tenant_domain(world: World) -> None:
    client = Client(HTTP_HOST="acme.localhost")
    assert password_login(client, "soc", OPERATOR_PASSWORD) == 200
    public = Client(HTTP_HOST="localhost")
    assert login_with_code(public, "soc", OPERATOR_PASSWORD).status_code == 302
    assert public.get("/").status_code == 200


def test_a_session_cookie_from_one_tenant_is_worthless_at_another(world: World) -> None:
    acme = Client(HTTP_HOST="acme.localhost")
    password_login(acme, "admin", world.acme_admin_password)
    globex = Client(HTTP_HOST="globex.localhost")
    globex.cookies = acme.cookies
    assert globex.get("/").status_code == 302
