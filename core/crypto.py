"""Credentials encrypted at rest: Fernet with a key from the environment, and the mask shown instead of them.

The key is `settings.SLUICE_CREDENTIALS_KEY` (urlsafe base64 of 32 bytes). When it is empty, a key is derived from
SECRET_KEY with HKDF-SHA256, so a development install works without setup; a production install should set its
own key, because rotating SECRET_KEY would then make stored credentials unreadable.
"""

from __future__ import annotations

import base64
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
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
def _fernet(configured_key: str, secret_key: str) -> Fernet:
    if configured_key:
        return Fernet(configured_key.encode())
    # No key configured: derive one from SECRET_KEY (HKDF-SHA256, fixed salt and purpose label).
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"sluice-credentials",
                   info=b"devices.router.password").derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def fernet() -> Fernet:
    """The Fernet of the current settings (cached per key, so tests that override settings get theirs)."""
    return _fernet(settings.SLUICE_CREDENTIALS_KEY, settings.SECRET_KEY)


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken as error:
        raise CredentialError("stored credential cannot be decrypted with the configured key") from error


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
