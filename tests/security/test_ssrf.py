"""No server-side request forgery: a tenant's webhook or Slack URL never makes Sluice reach inside the network.

Every attempt is made the way a tenant admin would (the portal form, the "Send a test" button, a real delivery),
with a real listener on loopback that must receive nothing. The refusal tests run with the production policy: an
empty allow list. Tests that must deliver allow one loopback address only, never the listener under attack.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django_tenants.utils import schema_context

from core.models import AuditEvent
from tenants import notifications, outbound
from tenants.customer.models import NotificationChannel, NotificationEventChoices
from tests.portal.test_customer_pages import client_as
from tests.support.world import TEST_ACTOR, World

pytestmark = pytest.mark.django_db

EVENTS = list(NotificationEventChoices.values)
ROOT = Path(__file__).resolve().parents[2]


class Listener:
    """An HTTP server on a loopback address that keeps every request; answers `status` (and `location`)."""

    def __init__(self, host: str = "127.0.0.1", *, status: int = 204, location: str = "") -> None:
        self.requests: list[dict[str, Any]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST

            def log_message(self, *args: object) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    """The internal service an attacker wants to reach: on 127.0.0.1, never allowed."""
    endpoint = Listener()
    yield endpoint
    endpoint.close()


@pytest.fixture
def production_policy(settings: Any) -> None:
    """The refusal tests run as production does: nothing allowed, the deny list as configured (empty)."""
    settings.SLUICE_WEBHOOK_ALLOW_NETWORKS = []
    settings.SLUICE_WEBHOOK_DENY_NETWORKS = []


def attack_urls(port: int) -> list[tuple[str, str]]:
    return [
        (f"http://127.0.0.1:{port}/hook", "refused: loopback address"),
        (f"http://localhost:{port}/hook", "refused: loopback address"),  # a name that resolves to loopback
        (f"http://[::ffff:127.0.0.1]:{port}/hook", "refused: loopback address"),
        (f"http://0.0.0.0:{port}/hook", "refused: unspecified address"),
        ("http://10.0.0.1/hook", "refused: private address"),
        ("http://169.254.169.254/latest/meta-data/iam/", "refused: cloud metadata address"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "refused: cloud metadata address"),
        ("https://[::1]/hook", "refused: loopback address"),
        ("http://224.0.0.1/hook", "refused: multicast address"),
        ("http://100.64.0.1/hook", "refused: non-public address"),
    ]


def _raw_channel(tenant_schema: str, kind: str, url: str) -> NotificationChannel:
    """A channel row as if its name resolved to a public address when it was saved (DNS changed since)."""
    with schema_context(tenant_schema):
        return NotificationChannel.objects.create(kind=kind, target=url, events=EVENTS,
                                                  secret="s" if kind == "webhook" else "")


def test_the_portal_refuses_every_internal_target_at_save_time(world: World, listener: Listener,
                                                              production_policy: None) -> None:
    admin = client_as("acme", "admin")
    for url, category in attack_urls(listener.port):
        for kind in ("webhook", "slack"):
            response = admin.post("/notifications/", {"kind": kind, "target": url, "events": EVENTS})
            assert response.status_code == 200, url
            assert response.context["form"].errors["target"] == [category], url
    with schema_context("acme"):
        assert not NotificationChannel.objects.exists()
    assert listener.requests == []


@pytest.mark.parametrize("kind", ["webhook", "slack"])
def test_send_time_checks_again_and_the_test_button_answers_a_category(world: World, listener: Listener, kind: str,
                                                                       production_policy: None) -> None:
    admin = client_as("acme", "admin")
    for url, category in attack_urls(listener.port):
        channel = _raw_channel("acme", kind, url)
        result = notifications.notify_tenant(world.acme, "attack_started", {"target": "203.0.113.1/32"},
                                             channel_ids=[channel.pk])
        assert result.failed == [channel.pk] and result.retryable == [], url
        page = admin.post(f"/notifications/{channel.pk}/test/", follow=True).content.decode()
        assert f"failed: {category}" in page, url
        assert "Errno" not in page and "meta-data" not in page
    assert listener.requests == []


def test_a_redirect_to_loopback_is_not_followed(world: World, listener: Listener, settings: Any) -> None:
    """The redirector itself is allowed (127.0.0.2 only); where it points is never visited."""
    settings.SLUICE_WEBHOOK_ALLOW_NETWORKS = ["127.0.0.2/32"]
    redirector = Listener("127.0.0.2", status=302, location=f"{listener.url}/internal")
    try:
        for kind in ("webhook", "slack"):
            channel = notifications.add_notification_channel(world.acme, kind=kind, target=f"{redirector.url}/{kind}",
                                                             events=EVENTS, acting_user=TEST_ACTOR)
            assert notifications.send_test(channel, world.acme) == "refused: redirect"
        assert len(redirector.requests) == 2
    finally:
        redirector.close()
    assert listener.requests == []


def test_the_connection_goes_to_the_address_that_was_checked(world: World, settings: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name answers an allowed address at the check, then loopback; the check's answer wins."""
    settings.SLUICE_WEBHOOK_ALLOW_NETWORKS = ["127.0.0.2/32"]
    checked = Listener("127.0.0.2")
    real_getaddrinfo = socket.getaddrinfo
    answers = iter(["127.0.0.2"] + ["127.0.0.1"] * 10)

    def rebinding(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.example":
            return real_getaddrinfo(next(answers), port, *args, **kwargs)
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    channel = _raw_channel("acme", "webhook", f"http://rebind.example:{checked.port}/hook")
    try:
        assert notifications.send_test(channel, world.acme) is None
        assert len(checked.requests) == 1
        assert checked.requests[0]["headers"]["Host"] == f"rebind.example:{checked.port}"
        # The next send resolves to loopback and is refused before any connection.
        assert notifications.send_test(channel, world.acme) == "refused: loopback address"
    finally:
        checked.close()


def test_the_provider_deny_list_wins_over_the_allow_list(world: World, listener: Listener, settings: Any) -> None:
    settings.SLUICE_WEBHOOK_ALLOW_NETWORKS = ["127.0.0.0/8"]
    settings.SLUICE_WEBHOOK_DENY_NETWORKS = ["127.0.0.0/16"]
    assert outbound.address_refusal(outbound.ipaddress.ip_address("169.254.169.254")) == "cloud metadata address"
    response = client_as("acme", "admin").post("/notifications/", {"kind": "webhook", "target": f"{listener.url}/x",
                                                                   "events": EVENTS})
    assert response.context["form"].errors["target"] == ["refused: denied network"]
    assert listener.requests == []


def test_timeouts_are_short_and_answer_timeout(world: World, settings: Any) -> None:
    settings.SLUICE_WEBHOOK_ALLOW_NETWORKS = ["127.0.0.2/32"]
    settings.SLUICE_WEBHOOK_TIMEOUT_SECONDS = 0.3
    silent = socket.socket()
    silent.bind(("127.0.0.2", 0))
    silent.listen(1)  # accepts the connection in the kernel and never answers
    try:
        channel = _raw_channel("acme", "webhook", f"http://127.0.0.2:{silent.getsockname()[1]}/hook")
        assert notifications.send_test(channel, world.acme) == "timeout"
    finally:
        silent.close()


def test_an_error_status_answers_its_code(world: World, settings: Any) -> None:
    settings.SLUICE_WEBHOOK_ALLOW_NETWORKS = ["127.0.0.2/32"]
    failing = Listener("127.0.0.2", status=500)
    try:
        channel = _raw_channel("acme", "webhook", f"{failing.url}/hook")
        assert notifications.send_test(channel, world.acme) == "HTTP 500"
    finally:
        failing.close()


def _documented_verify() -> Any:
    """The receiver of docs/webhooks.md, run as written."""
    text = (ROOT / "docs" / "webhooks.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), "docs/webhooks.md", "exec"), namespace)
    return namespace["verify"]


def test_webhooks_are_signed_and_the_documented_receiver_verifies_them(world: World, settings: Any) -> None:
    settings.SLUICE_WEBHOOK_ALLOW_NETWORKS = ["127.0.0.2/32"]
    receiver = Listener("127.0.0.2")
    try:
        admin = client_as("acme", "admin")
        response = admin.post("/notifications/", {"kind": "webhook", "target": f"{receiver.url}/signed",
                                                  "events": EVENTS})
        shown = re.search(r'id="webhook-secret">([^<]+)<', response.content.decode())
        assert shown is not None
        secret = shown.group(1)
        assert secret not in admin.get("/notifications/").content.decode(), "shown once"
        with schema_context("acme"):
            channel = NotificationChannel.objects.get()
        assert channel.secret == secret
        notifications.notify_tenant(world.acme, "attack_started", {"target": "203.0.113.1/32"})
    finally:
        receiver.close()
    verify = _documented_verify()
    request = receiver.requests[0]
    headers = request["headers"]
    assert json.loads(request["body"])["event"] == "attack_started"
    assert verify(secret, headers["X-Sluice-Timestamp"], headers["X-Sluice-Signature"], request["body"])
    assert not verify(secret, headers["X-Sluice-Timestamp"], headers["X-Sluice-Signature"], request["body"] + b" ")
    assert not verify("another-secret", headers["X-Sluice-Timestamp"], headers["X-Sluice-Signature"], request["body"])
    assert not verify(secret, headers["X-Sluice-Timestamp"], headers["X-Sluice-Signature"], request["body"],
                      now=time.time() + 3600), "an old request cannot be replayed"
    with schema_context("acme"), connection.cursor() as cursor:
        cursor.execute(f"SELECT secret FROM {NotificationChannel._meta.db_table}")
        (at_rest,) = cursor.fetchone()
    assert secret not in at_rest and at_rest.startswith("gAAAAA"), "stored encrypted"


def test_channels_per_tenant_are_capped(world: World, settings: Any) -> None:
    settings.SLUICE_NOTIFICATION_CHANNELS_PER_TENANT = 2
    admin = client_as("acme", "admin")
    for number in range(3):
        response = admin.post("/notifications/", {"kind": "email", "target": f"noc{number}@acme.example",
                                                  "events": EVENTS})
    assert "At most 2 notification channels" in response.content.decode()
    with schema_context("acme"):
        assert NotificationChannel.objects.count() == 2


def test_webhook_urls_never_reach_audit_rows_or_logs_in_clear(world: World, settings: Any,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    settings.SLUICE_WEBHOOK_ALLOW_NETWORKS = ["127.0.0.2/32"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.2", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.2:{port}/services/T000/B000/XXXXsecretXXXX?token=hunter2"
    caplog.set_level(logging.DEBUG)
    channel = notifications.add_notification_channel(world.acme, kind="slack", target=url, events=EVENTS,
                                                     acting_user=TEST_ACTOR)
    result = notifications.notify_tenant(world.acme, "attack_started", {})
    assert result.failed == [channel.pk]
    notifications.delete_notification_channel(world.acme, channel, acting_user=TEST_ACTOR)
    rows = list(AuditEvent.objects.filter(action__startswith="notification_channel.").values())
    assert len(rows) == 2 and rows[0]["diff"]["target"] == f"http://127.0.0.2:{port}/••••"
    for text in (json.dumps(rows, default=str), caplog.text, str(channel)):
        assert "XXXXsecretXXXX" not in text and "hunter2" not in text


def test_production_settings_keep_the_allow_list_empty() -> None:
    env = {**os.environ, "SLUICE_ENV": "production", "SECRET_KEY": "x" * 60, "SLUICE_CREDENTIALS_KEY": Fernet.generate_key().decode(),
           "SLUICE_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8,10.0.0.0/8", "DJANGO_SETTINGS_MODULE": "portal.settings"}
    code = "from django.conf import settings; print(repr(settings.SLUICE_WEBHOOK_ALLOW_NETWORKS))"
    answer = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                            check=True)
    assert answer.stdout.strip() == "[]"
