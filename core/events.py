"""Live events for the websocket views: one publish() helper, always after the transaction commits.

Group names always carry the tenant: `tenant.<schema>` reaches that tenant's users only, `soc` reaches the
provider's operators. Each event gets a global sequence number and is kept in a short per-group backlog in Redis,
so a page that lost its connection can ask for what it missed (`since=<seq>`).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import queue
import threading
import time
from typing import Any

from channels.layers import get_channel_layer
from django.db import transaction

from core.redis import redis_client

logger = logging.getLogger(__name__)

SOC_GROUP = "soc"
BACKLOG_LENGTH = 500
SEQUENCE_KEY = "sluice:events:seq"


def tenant_group(schema_name: str) -> str:
    return f"tenant.{schema_name}"


def backlog_key(group: str) -> str:
    return f"sluice:events:backlog:{group}"


def publish(event_type: str, data: dict[str, Any], *, tenant_schema: str | None) -> None:
    """Send an event to the SOC and, when `tenant_schema` is given, to that tenant, once the transaction commits.

    Outside a transaction it is sent at once. Sending happens on a background thread that batches events, so a
    transaction that changes many mitigations does not wait on Redis once per event; a failure to reach Redis is
    logged, never raised (live views catch up from the database, and the change itself has committed).
    """
    transaction.on_commit(lambda: _sender().submit(event_type, data, tenant_schema))


class _Sender:
    """One thread per process that sends queued events in batches over one event loop."""

    def __init__(self) -> None:
        self.queue: queue.Queue[tuple[str, dict[str, Any], str | None]] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="sluice-events", daemon=True)
        self.thread.start()
        atexit.register(self.drain)

    def submit(self, event_type: str, data: dict[str, Any], tenant_schema: str | None) -> None:
        self.queue.put((event_type, json.loads(json.dumps(data, default=str)), tenant_schema))

    def drain(self, timeout: float = 5.0) -> None:
        """Wait until what was submitted is sent (at exit, and for callers that must know it went out)."""
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        while True:
            batch = [self.queue.get()]
            while len(batch) < 500:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                loop.run_until_complete(_send_batch(batch))
            except Exception:
                logger.exception("%d live event(s) not delivered", len(batch))
            finally:
                for _ in batch:
                    self.queue.task_done()


_sender_instance: _Sender | None = None
_sender_lock = threading.Lock()


def _sender() -> _Sender:
    global _sender_instance
    with _sender_lock:
        if _sender_instance is None or not _sender_instance.thread.is_alive():
            _sender_instance = _Sender()
        return _sender_instance


def flush_events(timeout: float = 5.0) -> None:
    """Block until every event published so far in this process has been handed to Redis."""
    if _sender_instance is not None:
        _sender_instance.drain(timeout)


async def _send_batch(batch: list[tuple[str, dict[str, Any], str | None]]) -> None:
    client = redis_client()
    last = int(client.incrby(SEQUENCE_KEY, len(batch)))
    pipe = client.pipeline()
    messages: list[tuple[str, dict[str, Any]]] = []
    for offset, (event_type, data, tenant_schema) in enumerate(batch):
        seq = last - len(batch) + offset + 1
        event = {"type": event_type, "seq": seq, "ts": time.time(), "tenant": tenant_schema, "data": data}
        payload = json.dumps(event)
        for group in [SOC_GROUP] + ([tenant_group(tenant_schema)] if tenant_schema else []):
            pipe.zadd(backlog_key(group), {payload: seq})
            pipe.zremrangebyrank(backlog_key(group), 0, -BACKLOG_LENGTH - 1)
            messages.append((group, {"type": "live.event", "event": event}))
    pipe.execute()
    layer = get_channel_layer()
    for group, message in messages:
        await layer.group_send(group, message)


def backlog_since(group: str, seq: int) -> list[dict[str, Any]]:
    """Events of `group` newer than `seq`, oldest first."""
    raw = redis_client().zrangebyscore(backlog_key(group), f"({seq}", "+inf")
    return [json.loads(item) for item in raw if isinstance(item, bytes | str)]
