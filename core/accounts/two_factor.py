"""TOTP two-factor sign-in: secrets, codes, enrollment and the rule of who must have it.

Every provider staff user (public schema, any role: viewers see every tenant) must enroll; a tenant's users must
when the tenant's admin switches that on, and may otherwise. Secrets are stored encrypted (see `User.totp_secret`)
and shown only while enrolling. A code is accepted once: the time step of the last accepted code is kept on the
user row and only a later step is accepted after it, so a code seen over a shoulder or in a proxy log cannot be
replayed. The guard lives in PostgreSQL, so it cannot be skipped because some other store is down.
"""

from __future__ import annotations

import datetime
import hmac
import logging
import time
from typing import Any

import pyotp
from django.db import transaction

from core.accounts.models import User
from core.actors import Actor
from core.audit import record_audit

logger = logging.getLogger(__name__)

ISSUER = "Sluice"
VALID_STEPS = 1  # accept the previous and next 30 s step too: phone clocks drift


def two_factor_required(schema_name: str, *, tenant_requires: bool = False) -> bool:
    """Whether the site's users may not use it without TOTP: all provider staff, and a tenant's users when it
    says so (every user of a schema alike)."""
    return schema_name == "public" or tenant_requires


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


def verify_code(user: User, code: str) -> bool:
    """Whether `code` is the user's current code, of a later time step than any code accepted before.

    The check and the record are one conditional UPDATE in the user's schema: two requests with the same code
    cannot both pass it. The caller's connection is already in the user's schema.
    """
    if not user.totp_secret:
        return False
    step = _matching_step(user.totp_secret, code, time.time())
    if step is None:
        return False
    first_use = User.objects.filter(pk=user.pk, totp_last_step__lt=step).update(totp_last_step=step)
    if first_use:
        user.totp_last_step = step
    return bool(first_use)


def forget_used_codes(user: User) -> None:
    """Let a code be used again (tests log the same user in several times within one 30 s step)."""
    User.objects.filter(pk=user.pk).update(totp_last_step=0)


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
