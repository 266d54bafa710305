"""TOTP two-factor sign-in: secrets, codes, enrollment and the rule of who must have it.

Operators who can change the network (operator and admin roles in the public schema) must enroll; customers may.
Secrets are stored encrypted (see `User.totp_secret`) and shown only while enrolling. A code is accepted once:
the time step it belongs to is remembered in Redis for the validity window, so a code seen over a shoulder or
in a proxy log cannot be replayed.
"""

from __future__ import annotations

import datetime
import hmac
import logging
import time
from typing import Any

import pyotp
import redis
from django.db import transaction

from core.accounts.choices import UserRoleChoices
from core.accounts.models import User
from core.accounts.throttling import key_namespace
from core.actors import Actor
from core.audit import record_audit
from core.redis import redis_client

logger = logging.getLogger(__name__)

ISSUER = "Sluice"
VALID_STEPS = 1  # accept the previous and next 30 s step too: phone clocks drift
REQUIRED_ROLES = frozenset({UserRoleChoices.OPERATOR, UserRoleChoices.ADMIN})


def two_factor_required(user: User, schema_name: str) -> bool:
    """Whether `user` may not use the site without TOTP: provider staff who can change the network."""
    return schema_name == "public" and user.role in REQUIRED_ROLES


def has_two_factor(user: User) -> bool:
    return bool(user.totp_secret)


# Set in a session only by the sign-in step that checked a code (or by enrolling, which checks one).
SECOND_FACTOR_SESSION_KEY = "sluice_second_factor"


def mark_second_factor(session: Any) -> None:
    """Record in the session that its user passed the second factor."""
    session[SECOND_FACTOR_SESSION_KEY] = True


def session_passed_second_factor(user: User, session: Any) -> bool:
    """Whether this session may act as `user`: users with TOTP must have passed it in this very session.

    A session made any other way (Django admin's login, a login view added later) does not carry the mark, so it
    opens nothing for a user who has TOTP, whatever the password step said.
    """
    return not has_two_factor(user) or session.get(SECOND_FACTOR_SESSION_KEY) is True


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, *, username: str, domain: str) -> str:
    """The otpauth:// URI an authenticator app scans; the account name carries the domain users belong to."""
    return pyotp.TOTP(secret).provisioning_uri(name=f"{username}@{domain}", issuer_name=ISSUER)


def _used_key(schema_name: str, user_pk: int, step: int) -> str:
    return f"{key_namespace()}:used:{schema_name}:{user_pk}:{step}"


def _matching_step(secret: str, code: str, now: float) -> int | None:
    code = "".join(code.split())
    if not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(datetime.datetime.fromtimestamp(now, tz=datetime.UTC))
    for step in range(current - VALID_STEPS, current + VALID_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def code_matches(secret: str, code: str) -> bool:
    """Whether `code` fits `secret` now, without the replay check (used to confirm a new secret)."""
    return _matching_step(secret, code, time.time()) is not None


def verify_code(user: User, code: str, *, schema_name: str) -> bool:
    """Whether `code` is the user's current code and was never used before. Redis down: the replay check is skipped."""
    if not user.totp_secret:
        return False
    step = _matching_step(user.totp_secret, code, time.time())
    if step is None:
        return False
    try:
        first_use = redis_client().set(_used_key(schema_name, user.pk, step), "1", nx=True,
                                       ex=30 * (2 * VALID_STEPS + 2))
    except (redis.RedisError, OSError) as error:
        logger.warning("TOTP replay check unavailable: %s", error)
        return True
    return bool(first_use)


def forget_used_codes(user: User, *, schema_name: str) -> None:
    """Let a code be used again (tests log the same user in several times within one 30 s step)."""
    client = redis_client()
    keys = list(client.scan_iter(match=f"{key_namespace()}:used:{schema_name}:{user.pk}:*"))
    if keys:
        client.delete(*keys)


def enable_two_factor(user: User, secret: str, code: str, *, acting_user: Actor) -> bool:
    """Store `secret` for `user` once a code from it proves the authenticator has it; audited. False when not."""
    if not code_matches(secret, code):
        return False
    with transaction.atomic():
        user.totp_secret = secret
        user.save(update_fields=["totp_secret"])
        record_audit(acting_user, "user.two_factor.enable", tenant_slug=acting_user.tenant_slug, obj=user,
                     diff={"username": user.username})
    return True


def disable_two_factor(user: User, *, acting_user: Actor) -> None:
    """Remove the user's secret; audited. Callers must refuse this for users who are required to keep it."""
    with transaction.atomic():
        user.totp_secret = ""
        user.save(update_fields=["totp_secret"])
        record_audit(acting_user, "user.two_factor.disable", tenant_slug=acting_user.tenant_slug, obj=user,
                     diff={"username": user.username})
