"""The one place a Redis client is made from `settings.REDIS_URL`."""

from __future__ import annotations

from typing import Any

import redis
from django.conf import settings

_redis: redis.Redis | None = None


def redis_client() -> redis.Redis:
    """The process's shared client (a connection pool), for short commands that may block briefly."""
    global _redis
    if _redis is None:
        _redis = new_redis_client()
    return _redis


# Every client answers or fails within these: a Redis that hangs never hangs a request, a job or the collector.
SOCKET_CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 5.0


def new_redis_client(**options: Any) -> redis.Redis:
    """A client of its own, for callers that need their own timeouts (locks held across device I/O).

    Socket timeouts are always set (callers may choose others, never none).
    """
    options.setdefault("socket_connect_timeout", SOCKET_CONNECT_TIMEOUT_S)
    options.setdefault("socket_timeout", SOCKET_TIMEOUT_S)
    options.setdefault("health_check_interval", 30)
    return redis.Redis.from_url(settings.REDIS_URL, **options)
