"""Live events for the websocket views: one publish() helper, always after the transaction commits.

Group names always carry the tenant: `tenant.<schema>` reaches that tenant's users only, `soc` reaches the
provider's operators. Each event gets a global sequence number and is kept in a short per-group backlog in Redis,
so a page that lost its connection can ask for what it missed (`since=<seq>`).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

SOC_GROUP = "soc"
BACKLOG_LENGTH = 500
SEQUENCE_KEY = "sluice:events:seq"
_redis: redis.Redis | None = None


def tenant_group(schema_name: str) -> str:
    return f"tenant.{schema_name}"


def backlog_key(group: str) -> str:
    return f"sluice:events:backlog:{group}"


def redis_client() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(settings.REDIS_URL)
    return _redis


def publish(event_type: str, data: dict[str, Any], *, tenant_schema: str | None) -> None:
    """Send an event to the SOC and, when `tenant_schema` is given, to that tenant, once the transaction commits.

    Outside a transaction it sends at once. A failure to reach Redis is logged, never raised: live views catch up
    from the database, and the change itself has already committed.
    """
    transaction.on_commit(lambda: _send(event_type, data, tenant_schema))


def _send(event_type: str, data: dict[str, Any], tenant_schema: str | None) -> None:
    groups = [SOC_GROUP] + ([tenant_group(tenant_schema)] if tenant_schema else [])
    try:
        client = redis_client()
        seq = int(client.incr(SEQUENCE_KEY))
        event = {"type": event_type, "seq": seq, "ts": time.time(), "tenant": tenant_schema, "data": data}
        payload = json.dumps(event, default=str)
        event = json.loads(payload)  # what crosses the channel layer is plain JSON, as the browser gets it
        pipe = client.pipeline()
        for group in groups:
            pipe.zadd(backlog_key(group), {payload: seq})
            pipe.zremrangebyrank(backlog_key(group), 0, -BACKLOG_LENGTH - 1)
        pipe.execute()
        layer = get_channel_layer()
        for group in groups:
            async_to_sync(layer.group_send)(group, {"type": "live.event", "event": event})
    except (redis.RedisError, OSError) as error:
        logger.warning("live event %s not delivered: %s", event_type, error)


def backlog_since(group: str, seq: int) -> list[dict[str, Any]]:
    """Events of `group` newer than `seq`, oldest first."""
    raw = redis_client().zrangebyscore(backlog_key(group), f"({seq}", "+inf")
    return [json.loads(item) for item in raw]
