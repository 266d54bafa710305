"""The browser journeys' world: a lab network, a Celery worker, daphne, an operator token and a real Chromium.

Everything that touches the ORM happens here, before Playwright starts: Playwright's sync API keeps an asyncio
loop running in the test thread, and Django refuses ORM calls from a thread with a running loop.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from playwright.sync_api import Browser, Playwright, expect, sync_playwright

from core.accounts.models import ApiToken, User
from core.actors import Actor
from tenants.customer.choices import AutomationModeChoices
from tenants.models import Tenant
from tenants.services import ProfileInput, update_service_profile
from tests.support.lab import running_lab
from tests.support.processes import ROOT, asgi_server, celery_worker, free_port
from tests.support.world import World

SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
# The tenant the onboarding journey creates; removed again when the module ends, so later tests never see it.
NEW_TENANT_SLUG = "initrode"
TESTS = Actor("system", "browser tests")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # Tenants are routed by Host: every *.localhost portal must reach the daphne on loopback.
    "--host-resolver-rules=MAP *.localhost 127.0.0.1, MAP localhost 127.0.0.1",
]


@dataclass
class Stack:
    """The running processes and credentials a journey needs."""

    port: int
    signal_token: str
    world: World
    base: Path

    def url(self, host: str, path: str = "/") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture(scope="module")
def stack(world: World, tmp_path_factory: pytest.TempPathFactory, django_db_blocker: Any) -> Iterator[Stack]:
    """Lab network, worker and daphne; acme diverts automatically, globex waits for its customer's approval."""
    base = tmp_path_factory.mktemp("browser")
    with django_db_blocker.unblock():
        # Addresses per pytest process: people and CI run the suite side by side on one machine.
        lab_net = f"127.33.{os.getpid() % 250 + 1}"
        with running_lab(base, bird_address=f"{lab_net}.1", speaker_address=f"{lab_net}.254",
                         bgp_port=free_port(f"{lab_net}.1")):
            update_service_profile(world.acme, ProfileInput(
                latency_threshold_ms=40, application_profile="web", allowed_actions=("diversion",),
                hold_down_minutes=0), acting_user=TESTS)
            # FlowSpec only for globex: see the xfail in test_journeys (a diversion's detail page is a 500 today).
            update_service_profile(world.globex, ProfileInput(
                latency_threshold_ms=25, application_profile="gaming", allowed_actions=("flowspec",),
                automation_mode=AutomationModeChoices.MANUAL, approval_window_minutes=30, hold_down_minutes=0),
                acting_user=TESTS)
            key, prefix, digest = ApiToken.generate_key()
            ApiToken.objects.create(user=User.objects.get(username="soc"), name="browser detector", key_prefix=prefix,
                                    key_hash=digest, scopes=["signals", "read"])
            try:
                with celery_worker(base / "worker.log"), asgi_server(base / "daphne.log") as port:
                    yield Stack(port=port, signal_token=key, world=world, base=base)
            finally:
                _restore_world(world)


def _restore_world(world: World) -> None:
    """Put the shared world back as build_world made it: later modules assume its profiles and tenant list."""
    connection.set_schema_to_public()
    update_service_profile(world.acme, ProfileInput(latency_threshold_ms=40, application_profile="web"),
                           acting_user=TESTS)
    update_service_profile(world.globex, ProfileInput(latency_threshold_ms=25, application_profile="gaming"),
                           acting_user=TESTS)
    for tenant in Tenant.objects.filter(slug=NEW_TENANT_SLUG):
        tenant.delete(force_drop=True)
    connection.set_schema_to_public()


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Browser]:
    """Debian's Chromium under Playwright; depends on `stack` so that all ORM work is done before it starts."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # Two shared cores run a worker, daphne, a lab and Chromium: the 5 s default would make assertions flaky.
    expect.set_options(timeout=30_000)
    playwright: Playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
