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


def new_redis_client(**options: Any) -> redis.Redis:
    """A client of its own, for callers that need their own timeouts (locks held across device I/O)."""
    return redis.Redis.from_url(settings.REDIS_URL, **options)
