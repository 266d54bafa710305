"""The live websocket: one stream of events for the SOC (public domain) or for one tenant (its domain)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from core.accounts.sessions import session_group
from core.accounts.two_factor import has_two_factor, two_factor_required
from core.events import SOC_GROUP, backlog_since, tenant_group
from portal.middleware import host_from_scope, session_still_stands

SESSION_ENDED = 4401


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """Joins the group of the connection's own tenant (or the SOC group for operators) and relays its events.

    A client that reconnects passes `?since=<seq>` and first receives what it missed from the backlog.
    """

    group: str

    async def connect(self) -> None:
        user = self.scope.get("user")
        tenant = self.scope["tenant"]
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        if two_factor_required(tenant.schema_name, tenant_requires=tenant.require_two_factor) and not \
                has_two_factor(user):
            await self.close(code=4403)  # staff who can change the network must enroll first, here too
            return
        self.group = SOC_GROUP if tenant.is_public else tenant_group(tenant.schema_name)
        await self.channel_layer.group_add(self.group, self.channel_name)
        session_key = self.scope.get("session_key") or ""
        self.session_group = session_group(session_key)
        await self.channel_layer.group_add(self.session_group, self.channel_name)
        await self.accept()
        self.watch = asyncio.ensure_future(self._watch_session(host_from_scope(self.scope), session_key))
        since = self._since()
        if since is not None:
            for event in await database_sync_to_async(backlog_since)(self.group, since):
                await self.send_json(event)

    def _since(self) -> int | None:
        query = parse_qs(self.scope.get("query_string", b"").decode())
        try:
            return int(query["since"][0])
        except (KeyError, ValueError):
            return None

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "watch"):
            self.watch.cancel()
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await self.channel_layer.group_discard(self.session_group, self.channel_name)

    async def _watch_session(self, host: str, session_key: str) -> None:
        """Close this socket once its session no longer stands (idle too long, or removed without a sign-out)."""
        while True:
            await asyncio.sleep(float(settings.SLUICE_SESSION_CHECK_SECONDS))
            if not await database_sync_to_async(session_still_stands)(host, session_key):
                await self.close(code=SESSION_ENDED)
                return

    async def session_ended(self, message: dict[str, Any]) -> None:
        """Its session signed out (portal.accounts.signals): the socket closes with it."""
        await self.close(code=SESSION_ENDED)

    async def live_event(self, message: dict[str, Any]) -> None:
        await self.send_json(message["event"])

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})
