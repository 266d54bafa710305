"""Credentials encrypted at rest: Fernet with a key from the environment, and the mask shown instead of them.

The keys are `settings.SLUICE_CREDENTIALS_KEY`: one or more urlsafe base64 keys of 32 bytes, comma-separated. The
first encrypts, every one decrypts (MultiFernet), and `manage.py rotate_credentials_key` re-encrypts every stored
secret under the first, so keys rotate without downtime. When none is set (development only: production refuses
to start), a key is derived from SECRET_KEY with HKDF-SHA256; once keys are set, that derived key only still
decrypts what was stored before, until the rotation command has re-encrypted it.
"""

from __future__ import annotations

import base64
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import models

MASK = "••••"
# Fernet tokens are urlsafe base64 of a blob starting with version byte 0x80, so they always start with this.
TOKEN_MARKER = "gAAAAA"


class CredentialError(ValueError):
    """A stored credential could not be decrypted (wrong key or damaged value)."""


@lru_cache(maxsize=4)
def _fernet(configured_keys: str, secret_key: str) -> MultiFernet:
    # A key derived from SECRET_KEY (HKDF-SHA256, fixed salt and purpose label): the only key of a development
    # install, and the last decrypt-only key once keys are configured, so secrets stored before that stay readable
    # until `rotate_credentials_key` re-encrypts them under the configured key.
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"sluice-credentials",
                   info=b"devices.router.password").derive(secret_key.encode())
    fallback = Fernet(base64.urlsafe_b64encode(derived))
    keys = [key.strip() for key in configured_keys.split(",") if key.strip()]
    return MultiFernet([*(Fernet(key.encode()) for key in keys), fallback])


def fernet() -> MultiFernet:
    """The Fernet of the current settings (cached per key, so tests that override settings get theirs)."""
    return _fernet(settings.SLUICE_CREDENTIALS_KEY, settings.SECRET_KEY)


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken as error:
        raise CredentialError("stored credential cannot be decrypted with the configured key") from error


def rotate(token: str) -> str:
    """The same secret encrypted under the first configured key (any configured key may have encrypted it)."""
    try:
        return fernet().rotate(token.encode()).decode()
    except InvalidToken as error:
        raise CredentialError("stored credential cannot be decrypted with the configured keys") from error


def mask(value: str | None) -> str:
    """What every page, API answer, admin and log shows in place of a credential."""
    return MASK if value else ""


class EncryptedTextField(models.TextField):
    """A text field whose database column holds a Fernet token; Python code sees the plaintext.

    Empty strings are stored as they are (there is nothing to hide). Lookups other than isnull are meaningless on
    ciphertext and should not be used.
    """

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> str | None:
        if value is None or value == "":
            return value
        return decrypt(value)

    def to_python(self, value: Any) -> Any:
        return value

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(str(value))
