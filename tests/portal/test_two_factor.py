"""Two-factor sign-in: enrollment, the two-step login, one use per code, and staff who must enroll first."""

from __future__ import annotations

import datetime
import re

import pyotp
import pytest
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context

from core.accounts.models import ApiToken, User
from core.accounts.throttling import reset_login_throttle
from core.accounts.two_factor import forget_used_codes
from core.models import AuditEvent
from tests.portal.test_customer_pages import client_as
from tests.support.world import OPERATOR_PASSWORD, OPERATOR_TOTP_SECRET, World, login_with_code

pytestmark = pytest.mark.django_db

STAFF_PASSWORD = "unenrolled-staff-password"


@pytest.fixture(autouse=True)
def _fresh_login_counters() -> None:
    reset_login_throttle()


def enroll(client: Client) -> str:
    """Enroll the client's user through the page, as a person would; returns the secret the page showed."""
    page = client.get("/account/two-factor/")
    assert page.status_code == 200
    secret = page.context["secret"]
    assert f"secret={secret}".encode() in page.content and b"otpauth://totp/" in page.content
    assert client.post("/account/two-factor/", {"code": "abcdef"}).status_code == 200
    assert client.post("/account/two-factor/", {"code": pyotp.TOTP(secret).now()}).status_code == 302
    return secret


def test_a_customer_enrolls_and_the_secret_is_never_shown_again(world: World) -> None:
    client = client_as("acme", "admin")
    secret = enroll(client)
    again = client.get("/account/two-factor/")
    assert again.context["enrolled"] and secret.encode() not in again.content
    with schema_context("acme"):
        assert User.objects.get(username="admin").totp_secret == secret
        with connection.cursor() as cursor:
            cursor.execute("SELECT totp_secret FROM accounts_user WHERE username = 'admin'")
            stored = cursor.fetchone()[0]
    assert secret not in stored, "the secret is encrypted at rest"
    assert AuditEvent.objects.filter(action="user.two_factor.enable", tenant_slug="acme").exists()


def test_login_takes_a_code_once_totp_is_on(world: World) -> None:
    enroll(client_as("acme", "admin"))
    client = Client(HTTP_HOST="acme.localhost")
    first = client.post("/login/", {"username": "admin", "password": world.acme_admin_password})
    assert first.status_code == 302 and first["Location"] == "/login/verify/"
    assert client.get("/").status_code == 302, "not authenticated after the password alone"
    wrong = client.post("/login/verify/", {"code": "12345x"})
    assert wrong.status_code == 200 and wrong.context["form"].errors
    assert client.get("/").status_code == 302
    assert login_with_code(client, "admin", world.acme_admin_password,
                           secret=User.objects.get(username="admin").totp_secret).status_code == 302
    assert client.get("/").status_code == 200


def test_a_code_works_only_once(world: World) -> None:
    code = pyotp.TOTP(OPERATOR_TOTP_SECRET).now()
    with schema_context("public"):
        forget_used_codes(User.objects.get(username="soc"))
    first, second = Client(HTTP_HOST="localhost"), Client(HTTP_HOST="localhost")
    for client in (first, second):
        client.post("/login/", {"username": "soc", "password": OPERATOR_PASSWORD})
    assert first.post("/login/verify/", {"code": code}).status_code == 302
    assert second.post("/login/verify/", {"code": code}).status_code == 200
    assert first.get("/").status_code == 200 and second.get("/").status_code == 302


def test_the_code_step_needs_the_password_step(world: World) -> None:
    client = Client(HTTP_HOST="localhost")
    response = client.post("/login/verify/", {"code": pyotp.TOTP(OPERATOR_TOTP_SECRET).now()})
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_every_provider_staff_user_must_enroll_first(world: World, role: str) -> None:
    User.objects.create_user(username=f"new-{role}", password=STAFF_PASSWORD, role=role)
    client = Client(HTTP_HOST="localhost")
    assert client.post("/login/", {"username": f"new-{role}", "password": STAFF_PASSWORD}).status_code == 302
    for page in ("/", "/soc/audit/", "/soc/inventory/"):
        response = client.get(page)
        assert response.status_code == 302 and response["Location"] == "/account/two-factor/", page
    assert client.get("/api/v1/mitigations/").status_code == 403
    assert client.get("/account/two-factor/").status_code == 200
    enroll(client)
    assert client.get("/soc/audit/").status_code == 200
    assert client.post("/account/two-factor/disable/").status_code == 302
    assert User.objects.get(username=f"new-{role}").totp_secret, "required staff cannot turn it off"


def test_an_unenrolled_operator_may_log_out(world: World) -> None:
    User.objects.create_user(username="new-op", password=STAFF_PASSWORD, role="operator")
    client = Client(HTTP_HOST="localhost")
    client.post("/login/", {"username": "new-op", "password": STAFF_PASSWORD})
    assert client.post("/logout/").status_code == 302
    assert client.get("/account/two-factor/")["Location"].startswith("/login/")


def test_customers_are_not_forced_unless_their_tenant_says_so(world: World) -> None:
    customer = Client(HTTP_HOST="globex.localhost")
    assert customer.post("/login/", {"username": "admin", "password": world.globex_admin_password}).status_code == 302
    assert customer.get("/").status_code == 200


def test_a_customer_may_turn_it_off_again(world: World) -> None:
    client = client_as("globex", "admin")
    enroll(client)
    assert client.post("/account/two-factor/disable/").status_code == 302
    with schema_context("globex"):
        assert User.objects.get(username="admin").totp_secret == ""


def test_api_tokens_of_unenrolled_staff_still_work(world: World) -> None:
    user = User.objects.create_user(username="robot-op", password=STAFF_PASSWORD, role="operator")
    key, prefix, digest = ApiToken.generate_key()
    ApiToken.objects.create(user=user, name="detector", key_prefix=prefix, key_hash=digest, scopes=["read"])
    response = Client(HTTP_HOST="localhost").get("/api/v1/mitigations/", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 200


def test_the_enrollment_uri_names_the_user_and_domain(world: World) -> None:
    client = client_as("acme", "viewer")
    page = client.get("/account/two-factor/")
    assert re.search(rb"otpauth://totp/Sluice:viewer%40acme.localhost\?secret=", page.content)


def test_a_tenant_admin_requires_two_factor_of_all_its_users(world: World) -> None:
    admin = client_as("globex", "admin")
    assert admin.post("/users/two-factor/", {"required": "on"}).status_code == 302
    try:
        assert AuditEvent.objects.filter(action="tenant.two_factor_requirement", tenant_slug="globex").exists()
        viewer = Client(HTTP_HOST="globex.localhost")
        assert viewer.post("/login/", {"username": "viewer", "password": "viewer-test-password"}).status_code == 302
        for page in ("/", "/prefixes/"):
            response = viewer.get(page)
            assert response.status_code == 302 and response["Location"] == "/account/two-factor/", page
        enroll(viewer)
        assert viewer.get("/prefixes/").status_code == 200
        assert viewer.post("/account/two-factor/disable/").status_code == 302
        with schema_context("globex"):
            assert User.objects.get(username="viewer").totp_secret, "required: it cannot be turned off"
        # Acme did not switch it on: its users are not held.
        assert client_as("acme", "viewer").get("/").status_code == 200
    finally:
        admin.post("/users/two-factor/", {})
    viewer_page = client_as("globex", "viewer").get("/")
    assert viewer_page.status_code == 200, "switched off again"


def test_only_a_tenant_admin_may_change_the_requirement(world: World) -> None:
    assert client_as("globex", "viewer").post("/users/two-factor/", {"required": "on"}).status_code in (302, 403)
    from tenants.models import Tenant

    assert not Tenant.objects.get(slug="globex").require_two_factor


def test_a_code_older_than_the_last_one_used_is_refused(world: World) -> None:
    totp = pyotp.TOTP(OPERATOR_TOTP_SECRET)
    with schema_context("public"):
        forget_used_codes(User.objects.get(username="soc"))
    first, second = Client(HTTP_HOST="localhost"), Client(HTTP_HOST="localhost")
    for client in (first, second):
        client.post("/login/", {"username": "soc", "password": OPERATOR_PASSWORD})
    step = totp.timecode(datetime.datetime.now(tz=datetime.UTC))
    assert first.post("/login/verify/", {"code": totp.generate_otp(step + 1)}).status_code == 302
    assert second.post("/login/verify/", {"code": totp.generate_otp(step)}).status_code == 200, \
        "still inside the window, but older than the code already used"
