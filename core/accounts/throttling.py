"""Login throttling: failed sign-ins counted in Redis per (schema, username) and per client address.

A username at one domain gets 5 tries and a client address 20 within 15 minutes; after that, every further try
(even with the right password) is refused for 15 minutes, so guessing a password or a TOTP code stays slow. Keys
carry the database name too, so deployments (and parallel test databases) sharing one Redis never share counts.
Redis being down must not lock everyone out: the throttle then fails open and logs it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis
from django.db import connection

from core.redis import redis_client

logger = logging.getLogger(__name__)

USERNAME_LIMIT = 5
ADDRESS_LIMIT = 20
WINDOW_SECONDS = 15 * 60
LOCK_SECONDS = 15 * 60
LOCKED_MESSAGE = "Too many failed sign-in attempts. Sign-in is blocked for 15 minutes; try again later."


def key_namespace() -> str:
    return f"sluice:login:{connection.settings_dict['NAME']}"


@dataclass(frozen=True)
class LoginAttempt:
    """Who is trying to sign in, and where: the schema of the request's domain, the username and the address."""

    schema: str
    username: str
    address: str

    def counters(self) -> tuple[tuple[str, int], ...]:
        """The counters this attempt touches, each with the count at which it locks."""
        base = key_namespace()
        return (
            (f"{base}:user:{self.schema}:{self.username.strip().lower()}", USERNAME_LIMIT),
            (f"{base}:addr:{self.address}", ADDRESS_LIMIT),
        )


def is_locked(attempt: LoginAttempt) -> bool:
    """Whether this attempt is refused: its address used up its failures, or the username did and this address
    has failed too.

    A username under attack is locked for the addresses that attack it, never for its owner signing in from an
    address that has not failed: guessing cannot lock a person out, and each guessing address gets at most one
    try per window once the username's limit is reached.
    """
    try:
        counts = redis_client().mget([key for key, _ in attempt.counters()])
    except (redis.RedisError, OSError) as error:
        logger.warning("login throttle unavailable, allowing the attempt: %s", error)
        return False
    (_, user_limit), (_, address_limit) = attempt.counters()
    user_failures, address_failures = (int(count or 0) for count in counts)
    return address_failures >= address_limit or (user_failures >= user_limit and address_failures > 0)


def record_failure(attempt: LoginAttempt) -> None:
    """Count one failed password or code; the failure that reaches a limit starts a full lock period."""
    try:
        pipeline = redis_client().pipeline()
        for key, _ in attempt.counters():
            pipeline.incr(key)
            pipeline.expire(key, WINDOW_SECONDS, nx=True)
        results = pipeline.execute()
        for index, (key, limit) in enumerate(attempt.counters()):
            if int(results[index * 2]) >= limit:
                redis_client().expire(key, LOCK_SECONDS)
    except (redis.RedisError, OSError) as error:
        logger.warning("could not count a failed login: %s", error)


def record_success(attempt: LoginAttempt) -> None:
    """A completed sign-in forgives the username's earlier typos (the address count stays: it guards many names)."""
    try:
        redis_client().delete(attempt.counters()[0][0])
    except (redis.RedisError, OSError) as error:
        logger.warning("could not reset a login counter: %s", error)


def reset_login_throttle() -> int:
    """Forget every counter of this database, for tests that fail logins on purpose and for an operator's relief."""
    client = redis_client()
    keys = list(client.scan_iter(match=f"{key_namespace()}:*", count=500))
    return int(client.delete(*keys)) if keys else 0
