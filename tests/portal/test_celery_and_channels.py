"""Celery carries the tenant across the broker; websockets deliver each tenant's events to that tenant only."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from django_tenants.utils import schema_context

from core.events import publish
from portal.tasks import schema_probe
from tests.support.processes import asgi_server, celery_worker
from tests.support.world import World, session_for


@pytest.fixture(scope="module")
def worker(world: World, tmp_path_factory: pytest.TempPathFactory, django_db_blocker: object) -> object:
    with celery_worker(tmp_path_factory.mktemp("celery") / "worker.log") as process:
        yield process


@pytest.fixture(scope="module")
def server(world: World, tmp_path_factory: pytest.TempPathFactory) -> object:
    with asgi_server(tmp_path_factory.mktemp("asgi") / "daphne.log") as port:
        yield port


def test_a_task_sent_for_acme_runs_in_acmes_schema_on_a_real_worker(worker: object) -> None:
    with schema_context("acme"):
        result = schema_probe.apply_async()
    outcome = result.get(timeout=60)
    assert outcome == {"schema": "acme", "prefixes": ["203.0.113.0/24", "2001:db8:100::/48"]}
    with schema_context("globex"):
        assert schema_probe.apply_async().get(timeout=60)["schema"] == "globex"


def connect(port: int, host: str, session_key: str | None = None, query: str = "") -> websockets.ClientConnection:
    """Open the live websocket as a browser at `host` would: the URL names the host, the socket goes to loopback."""
    headers = {"Origin": f"http://{host}:{port}"}
    if session_key:
        headers["Cookie"] = f"sessionid={session_key}"
    return websockets.connect(
        f"ws://{host}:{port}/ws/live/{query}", host="127.0.0.1", port=port, additional_headers=headers
    )


async def collect(port: int, host: str, session_key: str, seconds: float, ready: asyncio.Event) -> list[dict]:
    events = []
    try:
        socket = await connect(port, host, session_key)
    finally:
        ready.set()
    async with socket:
        try:
            async with asyncio.timeout(seconds):
                async for message in socket:
                    events.append(json.loads(message))
        except TimeoutError:
            pass
    return events


def test_websocket_clients_get_their_own_tenants_events_only(world: World, server: int, django_db_blocker: object) -> None:
    with django_db_blocker.unblock():
        acme_session = session_for("acme", "admin")
        globex_session = session_for("globex", "admin")
        soc_session = session_for("public", "soc")

    async def scenario() -> tuple[list[dict], list[dict], list[dict]]:
        ready = [asyncio.Event() for _ in range(3)]
        tasks = [
            asyncio.create_task(collect(server, "acme.localhost", acme_session, 3.0, ready[0])),
            asyncio.create_task(collect(server, "globex.localhost", globex_session, 3.0, ready[1])),
            asyncio.create_task(collect(server, "localhost", soc_session, 3.0, ready[2])),
        ]
        await asyncio.gather(*(event.wait() for event in ready))
        await asyncio.sleep(0.3)  # group membership is registered right after the handshake completes
        await asyncio.to_thread(publish, "attack.started", {"target": "203.0.113.7"}, tenant_schema="acme")
        await asyncio.to_thread(publish, "attack.started", {"target": "198.51.100.9"}, tenant_schema="globex")
        await asyncio.sleep(0)
        return tuple(await asyncio.gather(*tasks))  # type: ignore[return-value]

    with django_db_blocker.unblock():
        acme, globex, soc = asyncio.run(scenario())
    assert [e["data"]["target"] for e in acme] == ["203.0.113.7"]
    assert [e["data"]["target"] for e in globex] == ["198.51.100.9"]
    assert sorted(e["data"]["target"] for e in soc) == ["198.51.100.9", "203.0.113.7"]


def test_websocket_without_a_session_is_refused(world: World, server: int) -> None:
    async def attempt() -> int | None:
        async with connect(server, "acme.localhost") as socket:
            await socket.recv()
        return None

    with pytest.raises(websockets.exceptions.WebSocketException):
        asyncio.run(attempt())


def test_websocket_at_an_unknown_host_is_refused(world: World, server: int) -> None:
    async def attempt() -> None:
        async with connect(server, "nobody.localhost") as socket:
            await socket.recv()

    with pytest.raises(websockets.exceptions.WebSocketException):
        asyncio.run(attempt())


def test_a_reconnecting_client_catches_up_from_the_backlog(world: World, server: int, django_db_blocker: object) -> None:
    with django_db_blocker.unblock():
        session = session_for("acme", "admin")
        publish("mitigation.active", {"n": 1}, tenant_schema="acme")
        publish("mitigation.active", {"n": 2}, tenant_schema="acme")
    from core.events import backlog_since, flush_events, tenant_group

    flush_events()

    backlog = backlog_since(tenant_group("acme"), 0)
    since = backlog[-2]["seq"] - 1

    async def reconnect() -> list[dict]:
        events = []
        async with connect(server, "acme.localhost", session, f"?since={since}") as socket:
            for _ in range(2):
                events.append(json.loads(await asyncio.wait_for(socket.recv(), 10)))
        return events

    assert [e["data"]["n"] for e in asyncio.run(reconnect())] == [1, 2]
