"""Rate of signals per API token (or user): past it, 429 with Retry-After, so a detector backs off and retries.

Counted in Redis, so every web process shares one count. When Redis cannot be reached the signal is let through:
a lost signal is worse than an uncounted one, and the database is the store that must not be flooded (it is
protected by the bounded worker threads and connections).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.cache import caches
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from core.accounts.models import ApiToken

logger = logging.getLogger(__name__)


class SignalRateThrottle(SimpleRateThrottle):
    scope = "signals"
    cache = caches["throttle"]

    def get_rate(self) -> str:
        return str(settings.SLUICE_SIGNAL_RATE)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        token = request.auth
        if isinstance(token, ApiToken):
            return self.cache_format % {"scope": self.scope, "ident": f"token:{token.pk}"}
        if request.user and request.user.is_authenticated:
            return self.cache_format % {"scope": self.scope, "ident": f"user:{request.user.pk}"}
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def allow_request(self, request: Request, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception as error:
            logger.warning("signal rate limit unavailable, letting the signal in: %s", error)
            return True
