"""Rate of signals per API token (or user): past it, 429 with Retry-After, so a detector backs off and retries.

Counted in Redis, so every web process shares one count: a sliding window estimated from two fixed windows (this
one's count, plus the last one's weighted by how much of it still lies inside the window), each an atomic INCR.
DRF's SimpleRateThrottle kept every request's timestamp in one cached list that each request read, trimmed and
wrote back whole: at 100 signals a second that list held 6,000 entries, and two web processes writing it at once
lost each other's counts. When Redis cannot be reached the signal is let through: a lost signal is worse than an
uncounted one, and the database is the store that must not be flooded (it is protected by the bounded worker
threads and connections).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import redis
from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from core.accounts.models import ApiToken
from core.redis import redis_client

logger = logging.getLogger(__name__)
KEY_PREFIX = "sluice-throttle:signals"


class SignalRateThrottle(BaseThrottle):
    def __init__(self) -> None:
        self.retry_after: float | None = None

    def ident(self, request: Request) -> str:
        token = request.auth
        if isinstance(token, ApiToken):
            return f"token:{token.pk}"
        if request.user and request.user.is_authenticated:
            return f"user:{request.user.pk}"
        return f"address:{self.get_ident(request)}"

    def allow_request(self, request: Request, view: Any) -> bool:
        limit, duration = SimpleRateThrottle.parse_rate(None, str(settings.SLUICE_SIGNAL_RATE))  # type: ignore[arg-type]
        if limit is None or duration is None:
            return True
        now = time.time()
        window, elapsed = divmod(now / duration, 1.0)
        key = f"{KEY_PREFIX}:{self.ident(request)}"
        current_key, previous_key = f"{key}:{int(window)}", f"{key}:{int(window) - 1}"
        try:
            client = redis_client()
            with client.pipeline(transaction=False) as pipe:
                pipe.incr(current_key)
                pipe.expire(current_key, int(duration * 2) + 1)
                pipe.get(previous_key)
                current, _, previous = pipe.execute()
            earlier = int(previous or 0)
            if earlier * (1.0 - elapsed) + current <= limit:
                return True
            client.decr(current_key)  # a refused signal is not counted: its retry will be
        except (redis.RedisError, OSError) as error:
            logger.warning("signal rate limit unavailable, letting the signal in: %s", error)
            return True
        self.retry_after = _seconds_until_room(limit, current - 1, earlier, elapsed) * duration
        return False

    def wait(self) -> float | None:
        return self.retry_after


def _seconds_until_room(limit: int, current: int, earlier: int, elapsed: float) -> float:
    """The share of a window until the estimate leaves room for one more signal (at least a second's worth)."""
    if current + 1 > limit or earlier == 0:
        return 1.0 - elapsed
    # earlier * (1 - e) + current + 1 <= limit  =>  e >= 1 - (limit - current - 1) / earlier
    return max(0.0, 1.0 - (limit - current - 1) / earlier - elapsed) or math.ulp(1.0)
