"""People and machines that act in Sluice. These tables exist in every schema; a schema's rows are its own."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

from core.accounts.choices import ApiTokenScopeChoices, UserRoleChoices
from core.crypto import EncryptedTextField

ROLE_RANK = {UserRoleChoices.VIEWER: 0, UserRoleChoices.OPERATOR: 1, UserRoleChoices.ADMIN: 2}


class User(AbstractUser):
    """An operator of the provider (public schema) or a user of one customer (that tenant's schema)."""

    role = models.CharField(max_length=20, choices=UserRoleChoices.choices, default=UserRoleChoices.VIEWER)
    # Encrypted at rest: whoever reads the database must not be able to produce codes.
    totp_secret = EncryptedTextField(blank=True)
    # The time step of the last code accepted: a code is good once, and never one older than that (as django-otp
    # keeps it), in PostgreSQL so the replay guard holds whatever else is down.
    totp_last_step = models.BigIntegerField(default=0, db_default=0)

    class Meta:
        ordering = ["username"]

    def __str__(self) -> str:
        return self.username

    def has_role(self, role: str) -> bool:
        """Whether this user holds `role` or a stronger one."""
        return self.is_active and ROLE_RANK[UserRoleChoices(self.role)] >= ROLE_RANK[UserRoleChoices(role)]


def hash_token_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiToken(models.Model):
    """An API credential of a user: stored as a hash, looked up by a public prefix, scoped and expiring.

    The full key is shown once, when it is made, and never again.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    key_prefix = models.CharField(max_length=12, unique=True)
    key_hash = models.CharField(max_length=64)
    scopes = ArrayField(models.CharField(max_length=20, choices=ApiTokenScopeChoices.choices), default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix}…)"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @staticmethod
    def generate_key() -> tuple[str, str, str]:
        """A new key as (full key, prefix, hash). The prefix is public, the rest is secret."""
        prefix = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        key = f"slc_{prefix}_{secret}"
        return key, prefix, hash_token_secret(key)
