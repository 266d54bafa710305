"""No way around two-factor sign-in: a session that skipped the code opens nothing, whichever login made it."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.support.world import OPERATOR_PASSWORD, World, login_with_code

pytestmark = pytest.mark.django_db

SOC_PAGES = ("/", "/soc/inventory/", "/soc/panic/", "/soc/audit/", "/admin/")


def test_django_admin_login_with_the_password_alone_opens_no_soc_page(world: World) -> None:
    attacker = Client(HTTP_HOST="localhost")
    form = attacker.get("/admin/login/")
    assert form.status_code == 200
    attacker.post("/admin/login/?next=/admin/", {"username": "soc", "password": OPERATOR_PASSWORD,
                                                 "next": "/admin/"})
    for page in SOC_PAGES:
        response = attacker.get(page)
        assert response.status_code in (302, 403), f"{page} answered {response.status_code}"
        assert "/admin/" not in response.get("Location", "/login/") or "login" in response.get("Location", "")
    assert attacker.get("/api/v1/centers/").status_code in (401, 403)
    assert "_auth_user_id" not in attacker.session, "the half-made session was ended"


def test_the_two_step_sign_in_still_opens_the_soc(world: World) -> None:
    operator = Client(HTTP_HOST="localhost")
    assert login_with_code(operator, "soc", OPERATOR_PASSWORD).status_code == 302
    assert operator.get("/").status_code == 200
    assert operator.get("/soc/inventory/").status_code == 200
