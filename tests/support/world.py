"""A committed test world shared by the whole session: the public tenant, an operator, and two tenants.

It is written outside the per-test transactions (so worker and server processes can see it) and lives until
pytest-django drops the test database.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pyotp
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import call_command
from django.http import HttpResponse
from django.test import Client
from django_tenants.utils import schema_context

from core.accounts.choices import UserRoleChoices
from core.accounts.models import User
from core.accounts.two_factor import forget_used_codes, mark_second_factor
from core.actors import Actor
from tenants.models import Domain, Tenant
from tenants.services import ProfileInput, onboard_tenant

OPERATOR_PASSWORD = "operator-test-password"
# Operators who can change the network must sign in with TOTP; the world's operators share this test secret.
OPERATOR_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
TEST_ACTOR = Actor("system", "tests")


@dataclass
class World:
    public: Tenant
    acme: Tenant
    globex: Tenant
    acme_admin_password: str
    globex_admin_password: str


def build_world() -> World:
    call_command("bootstrap_public", operator="soc", operator_password=OPERATOR_PASSWORD, stdout=io.StringIO())
    acme = onboard_tenant(
        slug="acme", name="Acme Corp", domain="acme.localhost", admin_email="admin@acme.example",
        prefixes=["203.0.113.0/24", "2001:db8:100::/48"], profile=ProfileInput(latency_threshold_ms=40,
        application_profile="web"), verify=True, acting_user=TEST_ACTOR,
    )
    globex = onboard_tenant(
        slug="globex", name="Globex", domain="globex.localhost", admin_email="admin@globex.example",
        prefixes=["198.51.100.0/24", "2001:db8:200::/48"], profile=ProfileInput(latency_threshold_ms=25,
        application_profile="gaming"), verify=True, acting_user=TEST_ACTOR,
    )
    _enroll_operators()
    for tenant in (acme.tenant, globex.tenant):
        with schema_context(tenant.schema_name):
            User.objects.create_user(username="viewer", password="viewer-test-password", role=UserRoleChoices.VIEWER)
    return World(
        public=Tenant.objects.get(schema_name="public"),
        acme=acme.tenant,
        globex=globex.tenant,
        acme_admin_password=acme.admin_password,
        globex_admin_password=globex.admin_password,
    )


def _enroll_operators() -> None:
    """Give `soc` TOTP and add an enrolled operator-role user, as the SOC pages refuse unenrolled staff."""
    with schema_context("public"):
        soc = User.objects.get(username="soc")
        soc.totp_secret = OPERATOR_TOTP_SECRET
        soc.save(update_fields=["totp_secret"])
        User.objects.create_user(username="operator-public", password=OPERATOR_PASSWORD, role=UserRoleChoices.OPERATOR,
                                 totp_secret=OPERATOR_TOTP_SECRET)


def signed_in(client: Client, user: Any) -> Client:
    """`client` signed in as `user` as the two-step sign-in leaves a session: logged in, second factor passed."""
    client.force_login(user)
    session = client.session
    mark_second_factor(session)
    session.save()
    return client


def password_login(client: Client, username: str, password: str) -> int:
    """The first step of signing in, as the login form posts it; the answer's status code."""
    return client.post("/login/", {"username": username, "password": password}).status_code


def login_with_code(client: Client, username: str, password: str, secret: str = OPERATOR_TOTP_SECRET) -> HttpResponse:
    """Sign in through both steps, password then the current TOTP code, as a person with the app would."""
    first = client.post("/login/", {"username": username, "password": password})
    assert first.status_code == 302 and first["Location"] == "/login/verify/", first
    schema = Domain.objects.get(domain=client.defaults["HTTP_HOST"]).tenant.schema_name
    with schema_context(schema):
        forget_used_codes(User.objects.get(username=username))
    return client.post("/login/verify/", {"code": pyotp.TOTP(secret).now()})


def session_for(schema_name: str, username: str) -> str:
    """A committed login session for `username` in `schema_name`, as the login view would make it."""
    with schema_context(schema_name):
        user = User.objects.get(username=username)
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        mark_second_factor(session)
        session.save()
        return session.session_key or ""
