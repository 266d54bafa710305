"""API token authentication: `Authorization: Token slc_<prefix>_<secret>` (or `Bearer`).

Tokens are looked up in the schema of the request's domain, so a tenant's token can never authenticate at another
tenant's domain or at the provider's.
"""

from __future__ import annotations

import datetime
import hmac

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from core.accounts.models import ApiToken, User, hash_token_secret

LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keywords = ("token", "bearer")

    def authenticate(self, request: Request) -> tuple[User, ApiToken] | None:
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0].lower() not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Token <key>'.")
        return self.authenticate_key(header[1])

    def authenticate_key(self, key: str) -> tuple[User, ApiToken]:
        parts = key.split("_")
        if len(parts) < 3 or parts[0] != "slc":
            raise exceptions.AuthenticationFailed("Invalid token.")
        token = ApiToken.objects.select_related("user").filter(key_prefix=parts[1]).first()
        if token is None or not hmac.compare_digest(token.key_hash, hash_token_secret(key)):
            raise exceptions.AuthenticationFailed("Invalid token.")
        if token.is_expired:
            raise exceptions.AuthenticationFailed("Token has expired.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive.")
        now = timezone.now()
        # Kept to the minute: a detector posting many signals a second costs no write per request for it.
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return "Token"
