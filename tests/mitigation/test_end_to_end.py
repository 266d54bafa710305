"""One attack end to end with real components.

A tenant (acme, from the world), a network file whose speaker peers with a real BIRD receiver and whose edge
router is the emulated Junos, a real Celery worker and a real ASGI server. A signal posted to the API ends as a
diversion in BIRD's RIB and in the router's committed configuration, seen live by a SOC websocket client; the
end signal, after the hold-down, withdraws it everywhere.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from django.test import Client

from core.accounts.models import ApiToken, User
from core.actors import Actor
from mitigation.models import Attack, Mitigation
from netsim.bgplab import BirdRouter
from netsim.junos import JunosEmulator
from netsim.polling import wait_for
from tenants.services import ProfileInput, update_service_profile
from tests.support.lab import running_lab
from tests.support.processes import asgi_server, celery_worker
from tests.support.world import World, session_for


@pytest.fixture(scope="module")
def network(world: World, tmp_path_factory: pytest.TempPathFactory, django_db_blocker: Any) -> Iterator[dict]:
    base = tmp_path_factory.mktemp("e2e")
    with django_db_blocker.unblock():  # noqa: SIM117 - the lab's lifetime is nested inside database access
        with running_lab(base, bird_address="127.0.31.1", speaker_address="127.0.31.254") as lab:
            update_service_profile(world.acme, ProfileInput(latency_threshold_ms=40, application_profile="web",
                                   allowed_actions=("diversion",), hold_down_minutes=0),
                                   acting_user=Actor("system", "tests"))
            operator = User.objects.get(username="soc")
            key, prefix, digest = ApiToken.generate_key()
            ApiToken.objects.create(user=operator, name="e2e detector", key_prefix=prefix, key_hash=digest,
                                    scopes=["signals", "read"])
            soc_session = session_for("public", "soc")
            with celery_worker(base / "worker.log") as worker, asgi_server(base / "daphne.log") as port:
                yield {"emulator": lab.emulator, "bird": lab.bird, "token": key, "port": port,
                       "soc_session": soc_session, "worker": worker, "base": base}


def collect_events(
    port: int, session_key: str, stop: threading.Event, sink: list[dict], ready: threading.Event
) -> None:
    async def run() -> None:
        async with websockets.connect(
            f"ws://localhost:{port}/ws/live/", host="127.0.0.1", port=port,
            additional_headers={"Origin": f"http://localhost:{port}", "Cookie": f"sessionid={session_key}"},
        ) as socket:
            ready.set()  # the consumer joined its group before it accepted the handshake
            while not stop.is_set():
                try:
                    sink.append(json.loads(await asyncio.wait_for(socket.recv(), 0.2)))
                except TimeoutError:
                    continue

    asyncio.run(run())


def post_signal(token: str, phase: str) -> dict:
    response = Client(HTTP_HOST="localhost").post(
        "/api/v1/signals/",
        {"target": "203.0.113.77", "vectors": ["udp_flood"], "bps": 30_000_000_000, "pps": 4_000_000,
         "phase": phase, "detector": "e2e"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {token}",
    )
    assert response.status_code in (200, 202), response.content
    return response.json()


def router_has(emulator: JunosEmulator, text: str) -> bool:
    return any(text in line for line in emulator.committed_set())


def test_a_signal_becomes_a_verified_diversion_and_its_end_withdraws_it(
    network: dict, django_db_blocker: object
) -> None:
    bird: BirdRouter = network["bird"]
    emulator: JunosEmulator = network["emulator"]
    events: list[dict] = []
    stop, ready = threading.Event(), threading.Event()
    listener = threading.Thread(
        target=collect_events, args=(network["port"], network["soc_session"], stop, events, ready)
    )
    listener.start()
    try:
        assert ready.wait(30), "the SOC websocket did not connect"
        with django_db_blocker.unblock():
            attack = post_signal(network["token"], "start")
            wait_for(lambda: "203.0.113.0/24" in bird.unicast(4), timeout=60, what="diversion in BIRD's RIB")
            route = bird.unicast(4)["203.0.113.0/24"]
            assert route.next_hop == "192.0.2.10"
            wait_for(lambda: router_has(emulator, "203.0.113.0/24"), timeout=60, what="diversion on the router")
            mitigation = wait_for(
                lambda: Mitigation.objects.filter(attack_id=attack["id"], state="active").first(), timeout=30,
                what="mitigation active",
            )
            assert mitigation.level == "diversion"
            assert "Lab Frankfurt" in mitigation.reason
            assert mitigation.decisions.exists()
            assert {d.element for a in mitigation.actions.all() for d in a.deployments.all()} >= {
                "speaker:lab-speaker", "router:lab-edge-1"}

            post_signal(network["token"], "end")
            wait_for(lambda: "203.0.113.0/24" not in bird.unicast(4), timeout=60, what="withdrawn from BIRD")
            wait_for(lambda: not router_has(emulator, "203.0.113.0/24"), timeout=60, what="withdrawn from router")
            wait_for(lambda: Mitigation.objects.get(pk=mitigation.pk).state == "ended", timeout=30)
            assert Attack.objects.get(pk=attack["id"]).status == "ended"
        wait_for(lambda: "mitigation.ended" in {e["type"] for e in events}, timeout=10, what="ended event")
    finally:
        stop.set()
        listener.join(timeout=10)
    types = [e["type"] for e in events]
    for expected in ("attack.started", "mitigation.planned", "mitigation.active", "mitigation.ended"):
        assert expected in types, types
    assert all(e.get("tenant") in ("acme", None) for e in events)
