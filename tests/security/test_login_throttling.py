"""Throttling that cannot lock everyone out: per address and per username, and X-Forwarded-For only from proxies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from core.accounts.throttling import ADDRESS_LIMIT, USERNAME_LIMIT, reset_login_throttle
from portal.accounts.forms import client_address
from tests.support.world import World

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_counters() -> Iterator[None]:
    reset_login_throttle()
    yield
    reset_login_throttle()


def from_address(address: str, **extra: str) -> Client:
    return Client(HTTP_HOST="acme.localhost", REMOTE_ADDR=address, **extra)


def attempt(client: Client, username: str, password: str) -> int:
    return client.post("/login/", {"username": username, "password": password}).status_code


def test_twenty_bad_logins_from_one_address_leave_another_addresss_login_working(world: World) -> None:
    attacker = from_address("198.51.100.66")
    for index in range(ADDRESS_LIMIT):
        attempt(attacker, f"guess{index}", "wrong-password")
    assert attempt(attacker, "admin", world.acme_admin_password) == 200, "the attacking address is stopped"
    assert attempt(from_address("198.51.100.7"), "admin", world.acme_admin_password) == 302


def test_failures_against_a_username_never_lock_out_its_owner_on_a_clean_address(world: World) -> None:
    attacker = from_address("198.51.100.66")
    for _ in range(USERNAME_LIMIT):
        attempt(attacker, "admin", "wrong-password")
    assert attempt(attacker, "admin", world.acme_admin_password) == 200, "the guessing address is locked"
    assert attempt(from_address("198.51.100.7"), "admin", world.acme_admin_password) == 302, "the owner is not"


def test_x_forwarded_for_counts_only_from_a_trusted_proxy(settings: Any) -> None:
    class Request:
        def __init__(self, peer: str, forwarded: str) -> None:
            self.META = {"REMOTE_ADDR": peer, "HTTP_X_FORWARDED_FOR": forwarded}

    settings.SLUICE_TRUSTED_PROXIES = []
    assert client_address(Request("203.0.113.5", "192.0.2.1")) == "203.0.113.5", "no proxy trusted: the peer"
    settings.SLUICE_TRUSTED_PROXIES = ["10.0.0.0/24"]
    assert client_address(Request("203.0.113.5", "192.0.2.1")) == "203.0.113.5", "a stranger's header is ignored"
    assert client_address(Request("10.0.0.2", "192.0.2.1")) == "192.0.2.1"
    assert client_address(Request("10.0.0.2", "192.0.2.99, 192.0.2.1, 10.0.0.3")) == "192.0.2.1", \
        "the nearest address that is not a proxy: the earlier hops are the client's own claims"
    assert client_address(Request("10.0.0.2", "not-an-address")) == "10.0.0.2"
