"""Per-prefix traffic graphs: fed by the collector's aggregates, each tenant sees only its own prefixes."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from collector import RedisStore
from collector.store import DEFAULT_NAMESPACE
from core.redis import redis_client
from mitigation.models import Attack
from tests.support.world import OPERATOR_PASSWORD, World, login_with_code, password_login

pytestmark = pytest.mark.django_db


def logged_in(host: str, password: str) -> Client:
    client = Client(HTTP_HOST=host)
    assert password_login(client, "admin", password) == 302
    return client


@pytest.fixture
def one_second_of_traffic() -> int:
    """One second of aggregates for acme's /24, written as a collector writes them."""
    store = RedisStore(redis_client(), DEFAULT_NAMESPACE)
    second = int(time.time()) - 3
    store.push(second, {"203.0.113.0/24": {"b": 125_000_000, "p": 90_000}})
    return second


def test_a_customer_gets_graphs_of_its_own_prefixes_only(world: World, one_second_of_traffic: int) -> None:
    client = logged_in("acme.localhost", world.acme_admin_password)
    data = client.get("/traffic.json").json()
    graphs = {g["prefix"]: g["series"] for g in data["graphs"]}
    assert set(graphs) == {"203.0.113.0/24", "2001:db8:100::/48"}
    point = next(p for p in graphs["203.0.113.0/24"] if p["second"] == one_second_of_traffic)
    assert (point["bps"], point["pps"]) == (1_000_000_000, 90_000)
    assert all(g["tenant"] == "acme" for g in data["graphs"])
    assert b"Traffic per protected prefix" in client.get("/").content


def test_the_soc_sees_the_prefixes_under_attack(world: World) -> None:
    Attack.objects.create(tenant=world.globex, target="198.51.100.9/32", vectors=["udp_flood"])
    client = Client(HTTP_HOST="localhost")
    login_with_code(client, "soc", OPERATOR_PASSWORD)
    data = client.get("/soc/traffic.json").json()
    assert [(g["prefix"], g["tenant"]) for g in data["graphs"]] == [("198.51.100.0/24", "globex")]


def test_graphs_need_a_login(world: World) -> None:
    assert Client(HTTP_HOST="acme.localhost").get("/traffic.json").status_code == 302
