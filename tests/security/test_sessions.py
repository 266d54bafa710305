"""Sessions end after a person's inactivity, not later because a page keeps refreshing itself; a session that
ends (signed out, or idle) closes its websockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client
from django_tenants.utils import schema_context

from core.accounts.sessions import LAST_ACTION_KEY
from tests.support.processes import asgi_server
from tests.support.world import World, session_for


def client_with(session_key: str, host: str = "acme.localhost") -> Client:
    client = Client(HTTP_HOST=host)
    client.cookies[settings.SESSION_COOKIE_NAME] = session_key
    return client


def last_action(session_key: str, schema: str = "acme") -> float | None:
    with schema_context(schema):
        return SessionStore(session_key=session_key).get(LAST_ACTION_KEY)


def set_last_action(session_key: str, when: float, schema: str = "acme") -> None:
    with schema_context(schema):
        session = SessionStore(session_key=session_key)
        session[LAST_ACTION_KEY] = when
        session.save()


@pytest.mark.django_db
def test_background_refreshes_do_not_keep_a_session_alive(world: World) -> None:
    key = session_for("acme", "admin")
    client = client_with(key)
    assert client.get("/board/fragment/", HTTP_X_SLUICE_BACKGROUND="1").status_code == 200
    assert last_action(key) is None, "a background refresh is not a person's action"
    assert client.get("/").status_code == 200
    noted = last_action(key)
    assert noted is not None
    assert client.get("/board/fragment/", HTTP_X_SLUICE_BACKGROUND="1").status_code == 200
    assert last_action(key) == noted


@pytest.mark.django_db
def test_an_idle_session_is_ended_by_its_next_request(world: World) -> None:
    key = session_for("acme", "admin")
    set_last_action(key, time.time() - settings.SLUICE_SESSION_IDLE_SECONDS - 5)
    response = client_with(key).get("/board/fragment/", HTTP_X_SLUICE_BACKGROUND="1")
    assert response.status_code == 401
    with schema_context("acme"):
        assert not SessionStore().exists(key), "the session is gone, not only refused"
    other = session_for("acme", "admin")
    set_last_action(other, time.time() - settings.SLUICE_SESSION_IDLE_SECONDS - 5)
    page = client_with(other).get("/prefixes/")
    assert page.status_code == 302 and page["Location"].startswith("/login/")


@pytest.fixture(scope="module")
def server(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    # A short idle limit and a quick websocket check, so an idle socket is closed within the test.
    with asgi_server(tmp_path_factory.mktemp("asgi") / "daphne.log", SESSION_IDLE_SECONDS="3",
                     SLUICE_SESSION_CHECK_SECONDS="0.5") as port:
        yield port


async def close_code(port: int, session_key: str, then: Any = None, wait_s: float = 15) -> int | None:
    """Open the live websocket with `session_key`, run `then` once it is open, and return the code it closes with."""
    headers = {"Origin": f"http://acme.localhost:{port}", "Cookie": f"sessionid={session_key}"}
    async with websockets.connect(f"ws://acme.localhost:{port}/ws/live/", host="127.0.0.1", port=port,
                                  additional_headers=headers) as socket:
        await asyncio.sleep(0.3)  # the session group is joined right after the handshake
        if then is not None:
            await asyncio.to_thread(then)
        try:
            async with asyncio.timeout(wait_s):
                async for _ in socket:
                    pass
        except TimeoutError:
            return None
        except websockets.exceptions.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        return socket.close_code


def test_signing_out_closes_the_sessions_websockets(server: int, django_db_blocker: Any) -> None:
    with django_db_blocker.unblock():
        key = session_for("acme", "admin")
        set_last_action(key, time.time() + 3600)  # not idle during this test whatever the server's limit

        def sign_out() -> None:
            with django_db_blocker.unblock():
                assert client_with(key).post("/logout/").status_code == 302

        assert asyncio.run(close_code(server, key, then=sign_out, wait_s=10)) == 4401


def test_an_idle_sessions_websocket_closes_by_itself(server: int, django_db_blocker: Any) -> None:
    with django_db_blocker.unblock():
        key = session_for("acme", "admin")
        set_last_action(key, time.time())
        # Nobody does anything: within the idle limit (3 s here) and one check, the socket is closed.
        assert asyncio.run(close_code(server, key, wait_s=15)) == 4401
