"""The live websocket: one stream of events for the SOC (public domain) or for one tenant (its domain)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from core.accounts.two_factor import has_two_factor, two_factor_required
from core.events import SOC_GROUP, backlog_since, tenant_group


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
        if two_factor_required(user, tenant.schema_name) and not has_two_factor(user):
            await self.close(code=4403)  # staff who can change the network must enroll first, here too
            return
        self.group = SOC_GROUP if tenant.is_public else tenant_group(tenant.schema_name)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
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
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def live_event(self, message: dict[str, Any]) -> None:
        await self.send_json(message["event"])

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})
