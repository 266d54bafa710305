"""Service functions for accounts: API tokens (shown once, stored hashed, scoped, expiring)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from django.db import transaction
from django.utils import timezone

from core.accounts.choices import ApiTokenScopeChoices
from core.accounts.models import ApiToken, User
from core.actors import Actor
from core.audit import record_audit
from core.errors import ValidationProblem

MAX_TOKEN_DAYS = 365


def create_api_token(
    user: User, *, name: str, scopes: Sequence[str], expires_in_days: int, acting_user: Actor
) -> tuple[ApiToken, str]:
    """A new token for `user` in the current schema; returns the row and the full key, which is never stored."""
    if not name.strip():
        raise ValidationProblem("name", "must not be empty")
    unknown = set(scopes) - set(ApiTokenScopeChoices.values)
    if not scopes or unknown:
        raise ValidationProblem("scopes", f"must be a non-empty subset of {', '.join(ApiTokenScopeChoices.values)}")
    if not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
        raise ValidationProblem("expires_in_days", f"must be between 1 and {MAX_TOKEN_DAYS}")
    key, prefix, digest = ApiToken.generate_key()
    expires_at = timezone.now() + datetime.timedelta(days=expires_in_days)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user, name=name.strip(), key_prefix=prefix, key_hash=digest, scopes=sorted(set(scopes)),
            expires_at=expires_at,
        )
        record_audit(acting_user, "token.create", obj=token,
                     diff={"user": user.username, "scopes": token.scopes, "expires_at": expires_at.isoformat()})
    return token, key


def revoke_api_token(token: ApiToken, *, acting_user: Actor) -> None:
    with transaction.atomic():
        record_audit(acting_user, "token.revoke", obj=token, diff={"user": token.user.username, "name": token.name})
        token.delete()
