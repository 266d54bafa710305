"""Keys: production refuses to start without its own keys; credentials keys rotate without losing a secret."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection
from django_tenants.utils import schema_context

from core.accounts.models import User
from core.crypto import CredentialError, decrypt, encrypt
from devices.models import Router
from tests.support.world import World

ROOT = Path(__file__).resolve().parents[2]
DEV_SECRET = "sluice-development-only-secret-key-never-use-in-production-0123456789"


def production_start(**env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "SLUICE_ENV": "production", "DJANGO_SETTINGS_MODULE": "portal.settings", **env}
    return subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=full, cwd=ROOT,
                          capture_output=True, text=True, check=False)


def test_production_refuses_the_development_secret_key_or_no_credentials_key() -> None:
    key = Fernet.generate_key().decode()
    assert "SECRET_KEY must be set" in production_start(SECRET_KEY=DEV_SECRET, SLUICE_CREDENTIALS_KEY=key).stderr
    assert "SLUICE_CREDENTIALS_KEY must be set" in production_start(SECRET_KEY="s" * 60,
                                                                    SLUICE_CREDENTIALS_KEY="").stderr
    assert production_start(SECRET_KEY="s" * 60, SLUICE_CREDENTIALS_KEY=key).returncode == 0


def stored(table: str, column: str, where: str, schema: str = "public") -> str:
    with schema_context(schema), connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE {where}")
        return str(cursor.fetchone()[0])


@pytest.mark.django_db
def test_rotating_the_credentials_key_keeps_every_secret_readable(world: World, settings: Any) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.SLUICE_CREDENTIALS_KEY = old
    router = Router.objects.create(name="edge-rot", vendor="juniper", platform="junos", mgmt_host="127.0.0.1",
                                   username="sluice", password="router-secret-1")
    with schema_context("acme"):
        admin = User.objects.get(username="admin")
        admin.totp_secret = "JBSWY3DPEHPK3PXP"
        admin.save(update_fields=["totp_secret"])
    before = stored("devices_router", "password", f"id = {router.pk}")
    settings.SLUICE_CREDENTIALS_KEY = f"{new},{old}"  # the new key first: it encrypts, both decrypt
    assert decrypt(before) == "router-secret-1"
    out = io.StringIO()
    call_command("rotate_credentials_key", stdout=out)
    assert "re-encrypted" in out.getvalue()
    after = stored("devices_router", "password", f"id = {router.pk}")
    assert after != before and Fernet(new.encode()).decrypt(after.encode()) == b"router-secret-1"
    settings.SLUICE_CREDENTIALS_KEY = new  # the old key is gone: everything still reads
    assert Router.objects.get(pk=router.pk).password == "router-secret-1"
    with schema_context("acme"):
        assert User.objects.get(username="admin").totp_secret == "JBSWY3DPEHPK3PXP"
    settings.SECRET_KEY = "a-completely-different-secret-key-" + "z" * 30
    assert Router.objects.get(pk=router.pk).password == "router-secret-1", "SECRET_KEY no longer matters"
    with pytest.raises(CredentialError):
        settings.SLUICE_CREDENTIALS_KEY = old
        decrypt(after)
    settings.SLUICE_CREDENTIALS_KEY = new
    assert decrypt(encrypt("x")) == "x"
