"""The control-plane API: signals in with clear errors, and every read scoped to the caller's tenant."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from core.accounts.models import ApiToken, User
from mitigation.models import Attack, Mitigation
from tests.support.world import World

pytestmark = pytest.mark.django_db


def token_for(schema: str, username: str, scopes: list[str]) -> str:
    with schema_context(schema):
        key, prefix, digest = ApiToken.generate_key()
        ApiToken.objects.create(user=User.objects.get(username=username), name="t", key_prefix=prefix,
                                key_hash=digest, scopes=scopes)
    return key


def post(host: str, token: str, body: dict[str, Any], path: str = "/api/v1/signals/") -> Any:
    return Client(HTTP_HOST=host).post(path, body, content_type="application/json",
                                       HTTP_AUTHORIZATION=f"Token {token}")


def get(host: str, token: str, path: str) -> Any:
    return Client(HTTP_HOST=host).get(path, HTTP_AUTHORIZATION=f"Token {token}")


GOOD = {"target": "203.0.113.9", "vectors": ["dns_amplification"], "bps": 5_000_000_000, "pps": 900_000}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"target": "203.0.113.9/24"}, "target"),
        ({"target": "not-an-ip"}, "target"),
        ({"vectors": ["laser_beam"]}, "vectors"),
        ({"vectors": []}, "vectors"),
        ({"bps": -1}, "bps"),
        ({"pps": "lots"}, "pps"),
        ({"phase": "maybe"}, "phase"),
        ({"top_sources": ["999.1.1.1"]}, "top_sources"),
    ],
)
def test_a_malformed_signal_is_a_400_naming_the_field_and_records_nothing(
    world: World, change: dict[str, Any], field: str
) -> None:
    token = token_for("public", "soc", ["signals"])
    response = post("localhost", token, {**GOOD, **change})
    assert response.status_code == 400
    assert field in response.json()["fields"]
    assert not Attack.objects.exists()


def test_a_good_signal_records_an_attack_for_the_owning_tenant(world: World) -> None:
    response = post("localhost", token_for("public", "soc", ["signals"]), GOOD)
    assert response.status_code == 202
    attack = Attack.objects.get(pk=response.json()["id"])
    assert attack.tenant == world.acme and str(attack.target) == "203.0.113.9/32"
    assert Mitigation.objects.get(attack=attack).state == "detected"
    again = post("localhost", token_for("public", "soc", ["signals"]), {**GOOD, "vectors": ["udp_flood"]})
    assert again.json()["id"] == attack.pk, "signals on the same target deduplicate into one attack"
    assert sorted(Attack.objects.get(pk=attack.pk).vectors) == ["dns_amplification", "udp_flood"]


def test_a_token_without_the_signals_scope_cannot_post_signals(world: World) -> None:
    assert post("localhost", token_for("public", "soc", ["read"]), GOOD).status_code == 403


def test_a_viewer_cannot_post_signals(world: World) -> None:
    assert post("acme.localhost", token_for("acme", "viewer", ["signals"]), GOOD).status_code == 403


def test_a_tenant_may_signal_only_inside_its_own_space(world: World) -> None:
    token = token_for("acme", "admin", ["signals", "read"])
    assert post("acme.localhost", token, GOOD).status_code == 202
    response = post("acme.localhost", token, {**GOOD, "target": "198.51.100.9"})
    assert response.status_code == 400 and response.json()["field"] == "target"


def test_a_tenant_token_does_not_work_at_another_domain(world: World) -> None:
    token = token_for("acme", "admin", ["signals", "read"])
    assert get("globex.localhost", token, "/api/v1/attacks/").status_code == 401
    assert get("localhost", token, "/api/v1/attacks/").status_code == 401


def test_reads_are_scoped_to_the_tenant_and_foreign_ids_are_404(world: World) -> None:
    operator = token_for("public", "soc", ["signals", "read"])
    acme_attack = post("localhost", operator, GOOD).json()["id"]
    globex_attack = post("localhost", operator, {**GOOD, "target": "198.51.100.9"}).json()["id"]
    acme = token_for("acme", "admin", ["read", "write"])
    listed = get("acme.localhost", acme, "/api/v1/attacks/").json()["results"]
    assert [a["id"] for a in listed] == [acme_attack]
    assert get("acme.localhost", acme, f"/api/v1/attacks/{globex_attack}/").status_code == 404
    assert get("acme.localhost", acme, "/api/v1/attacks/999999/").status_code == 404
    globex_mitigation = Mitigation.objects.get(attack_id=globex_attack).pk
    assert get("acme.localhost", acme, f"/api/v1/mitigations/{globex_mitigation}/").status_code == 404
    response = post("acme.localhost", acme, {}, f"/api/v1/mitigations/{globex_mitigation}/withdraw/")
    assert response.status_code == 404
    assert Mitigation.objects.get(pk=globex_mitigation).state == "detected"
    operator_view = get("localhost", operator, "/api/v1/attacks/").json()["results"]
    assert {a["id"] for a in operator_view} == {acme_attack, globex_attack}


def test_approving_a_mitigation_that_is_not_pending_is_a_clear_400(world: World) -> None:
    operator = token_for("public", "soc", ["signals", "read", "write"])
    attack = post("localhost", operator, GOOD).json()["id"]
    mitigation = Mitigation.objects.get(attack_id=attack).pk
    response = post("localhost", operator, {}, f"/api/v1/mitigations/{mitigation}/approve/")
    assert response.status_code == 400
    assert "awaiting approval" in response.json()["error"]


def test_the_openapi_schema_is_served(world: World) -> None:
    response = get("localhost", token_for("public", "soc", ["read"]), "/api/v1/schema/")
    assert response.status_code == 200
    assert b"/api/v1/signals/" in response.content


def test_past_the_signal_rate_a_token_gets_429_with_retry_after_and_another_token_does_not(
    world: World, settings: Any,
) -> None:
    from django.core.cache import caches

    caches["throttle"].clear()
    settings.SLUICE_SIGNAL_RATE = "3/min"
    busy, other = token_for("public", "soc", ["signals"]), token_for("public", "soc", ["signals"])
    answers = [post("localhost", busy, GOOD).status_code for _ in range(4)]
    assert answers == [202, 202, 202, 429]
    refused = post("localhost", busy, GOOD)
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "error" in refused.json()
    assert post("localhost", other, GOOD).status_code == 202
    caches["throttle"].clear()


def test_an_update_before_any_start_starts_the_attack(world: World) -> None:
    """FastNetMon may call attack_details (an update) before ban (the start): the update is not lost."""
    token = token_for("public", "soc", ["signals"])
    response = post("localhost", token, {**GOOD, "target": "203.0.113.199", "phase": "update",
                                         "detector": "fastnetmon"})
    assert response.status_code == 202
    attack = Attack.objects.get(target="203.0.113.199/32", status="active")
    again = post("localhost", token, {**GOOD, "target": "203.0.113.199", "phase": "start", "detector": "fastnetmon"})
    assert again.status_code == 202 and again.json()["id"] == attack.pk


def test_the_signal_rate_is_one_count_shared_by_concurrent_requests(settings: Any) -> None:
    """Many web threads and processes count into one Redis counter: under a burst exactly the rate gets in."""
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from core.accounts.models import ApiToken
    from mitigation.api.throttling import SignalRateThrottle

    settings.SLUICE_SIGNAL_RATE = "25/min"
    request = SimpleNamespace(auth=ApiToken(pk=987_654), user=None, META={})
    from core.redis import redis_client

    for key in redis_client().scan_iter("sluice-throttle:signals:token:987654:*"):
        redis_client().delete(key)
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda _: SignalRateThrottle().allow_request(request, None), range(80)))  # type: ignore[arg-type]
    assert answers.count(True) == 25
    refused = SignalRateThrottle()
    assert not refused.allow_request(request, None)  # type: ignore[arg-type]
    assert refused.wait() is not None and 0 < refused.wait() <= 60  # type: ignore[operator]
