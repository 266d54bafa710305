"""Customer notifications: each channel kind delivers, dead endpoints never raise, the engine's moments are wired,
and the portal page is the tenant's own."""

from __future__ import annotations

import datetime
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone
from django_tenants.utils import schema_context

from collector.signals import AttackSignal
from mitigation.choices import MitigationStateChoices
from mitigation.services import network, planning, states
from mitigation.services.signals import record_signal
from tenants import jobs as tenant_jobs
from tenants import notifications
from tenants.customer.models import NotificationChannel, NotificationEventChoices
from tenants.models import Tenant
from tenants.tasks import notify_tenant_task
from tests.portal.test_customer_pages import client_as, make_mitigation
from tests.support.world import TEST_ACTOR, World

pytestmark = pytest.mark.django_db

EVENTS = list(NotificationEventChoices.values)


@pytest.fixture(autouse=True)
def loopback_receivers_allowed(settings: Any) -> None:
    """Every receiver here listens on loopback, which the SSRF guard refuses in production (tests/security)."""
    settings.SLUICE_WEBHOOK_ALLOW_NETWORKS = ["127.0.0.0/8"]


class Receiver:
    """A local HTTP endpoint that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                received.append({"path": self.path, "body": json.loads(self.rfile.read(length))})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                """Quiet: the tests read the bodies, not the access log."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.server.shutdown()
    endpoint.server.server_close()


@pytest.fixture
def dead_url() -> str:
    """A URL nobody listens on: a port taken and released again."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def add_channel(tenant: Tenant, kind: str, target: str, events: list[str] | None = None) -> NotificationChannel:
    return notifications.add_notification_channel(tenant, kind=kind, target=target, events=events or EVENTS,
                                                  acting_user=TEST_ACTOR)


def test_a_webhook_receives_the_json_of_each_event_kind(world: World, receiver: Receiver) -> None:
    add_channel(world.acme, "webhook", f"{receiver.url}/sluice")
    for kind in EVENTS:
        result = notifications.notify_tenant(world.acme, kind, {"target": "203.0.113.10/32", "mitigation": 7})
        assert len(result.sent) == 1 and not result.failed
    assert [b["body"]["event"] for b in receiver.bodies] == EVENTS
    assert {b["path"] for b in receiver.bodies} == {"/sluice"}
    first = receiver.bodies[0]["body"]
    assert first["tenant"] == "acme" and first["data"] == {"target": "203.0.113.10/32", "mitigation": 7}
    assert "Attack started" in first["summary"] and first["sent_at"]


def test_only_subscribed_enabled_channels_of_the_tenant_hear(world: World, receiver: Receiver) -> None:
    add_channel(world.acme, "webhook", f"{receiver.url}/ended-only", ["mitigation_ended"])
    off = add_channel(world.acme, "webhook", f"{receiver.url}/off")
    with schema_context("acme"):
        NotificationChannel.objects.filter(pk=off.pk).update(enabled=False)
    add_channel(world.globex, "webhook", f"{receiver.url}/globex")
    notifications.notify_tenant(world.acme, "attack_started", {})
    notifications.notify_tenant(world.acme, "mitigation_ended", {})
    assert [b["path"] for b in receiver.bodies] == ["/ended-only"]


def test_slack_gets_a_text_message(world: World, receiver: Receiver) -> None:
    add_channel(world.acme, "slack", f"{receiver.url}/slack")
    notifications.notify_tenant(world.acme, "approval_needed", {"target": "203.0.113.9/32"})
    assert receiver.bodies[0]["body"] == {"text": "[Sluice] Acme Corp: Approval needed (target 203.0.113.9/32)"}


def test_email_goes_out_through_django_mail(world: World, settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    mail.outbox.clear()
    add_channel(world.acme, "email", "noc@acme.example")
    notifications.notify_tenant(world.acme, "mitigation_active", {"target": "203.0.113.10/32", "level": "diversion"})
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["noc@acme.example"] and "Mitigation active" in message.subject
    assert "level: diversion" in message.body


def test_a_dead_endpoint_is_logged_not_raised_and_the_others_still_hear(world: World, receiver: Receiver,
                                                                       dead_url: str) -> None:
    dead = add_channel(world.acme, "webhook", dead_url)
    alive = add_channel(world.acme, "slack", f"{receiver.url}/slack")
    result = notifications.notify_tenant(world.acme, "attack_started", {"target": "203.0.113.1/32"})
    assert result.sent == [alive.pk] and result.failed == [dead.pk] and result.retryable == [dead.pk]
    assert len(receiver.bodies) == 1


def test_the_task_delivers_and_gives_up_quietly_after_its_retries(world: World, receiver: Receiver,
                                                                 dead_url: str) -> None:
    alive = add_channel(world.acme, "webhook", f"{receiver.url}/task")
    assert notify_tenant_task.apply(args=(world.acme.pk, "attack_started", {"n": 1})).get() == {
        "sent": [alive.pk], "failed": [], "retryable": []}
    dead = add_channel(world.acme, "webhook", dead_url, ["mitigation_ended"])
    outcome = notify_tenant_task.apply(args=(world.acme.pk, "mitigation_ended", {"n": 2})).get()
    assert outcome["failed"] == [dead.pk]
    assert notify_tenant_task.apply(args=(999_999, "attack_started", {})).get() == {"skipped": "no such tenant"}


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str, dict[str, Any]]]:
    """What the engine would enqueue, instead of a broker; the engine's own tasks are not sent either."""
    sent: list[tuple[int, str, dict[str, Any]]] = []
    monkeypatch.setattr(tenant_jobs, "_enqueue", lambda *args: sent.append(args))
    monkeypatch.setattr("mitigation.jobs.enqueue", lambda name: None)
    return sent


def test_a_new_attack_on_a_tenant_notifies_attack_started(world: World, queued: list, django_capture_on_commit_callbacks:
                                                          Any) -> None:
    add_channel(world.acme, "webhook", "http://127.0.0.1:9/unused", ["attack_started"])
    with django_capture_on_commit_callbacks(execute=True):
        record_signal(AttackSignal(target="203.0.113.55", vectors=("udp_flood",), bps=9_000_000_000, pps=1_000_000),
                      acting_user=TEST_ACTOR)
    with django_capture_on_commit_callbacks(execute=True):
        record_signal(AttackSignal(target="203.0.113.55", vectors=("udp_flood",), bps=9_500_000_000, pps=1_000_000),
                      acting_user=TEST_ACTOR)
    assert [(tenant, kind) for tenant, kind, _ in queued] == [(world.acme.pk, "attack_started")]
    assert queued[0][2]["target"] == "203.0.113.55/32"


def test_state_changes_notify_approval_active_and_ended(world: World, queued: list,
                                                        django_capture_on_commit_callbacks: Any) -> None:
    add_channel(world.acme, "webhook", "http://127.0.0.1:9/unused")
    mitigation = make_mitigation(world.acme, state=MitigationStateChoices.DETECTED)
    with django_capture_on_commit_callbacks(execute=True):
        planning._advance_after_plan(mitigation, SimpleNamespace(level="flowspec"), ("manual", 5), timezone.now(),
                                     states.Transitions(TEST_ACTOR))
    mitigation.state = MitigationStateChoices.APPLYING
    mitigation.save()
    now = timezone.now() + datetime.timedelta(seconds=1)
    with django_capture_on_commit_callbacks(execute=True):
        network._transition([mitigation.pk], MitigationStateChoices.APPLYING, MitigationStateChoices.ACTIVE, now)
    mitigation.refresh_from_db()
    mitigation.state = MitigationStateChoices.WITHDRAWING
    mitigation.save()
    with django_capture_on_commit_callbacks(execute=True):
        network._transition([mitigation.pk], MitigationStateChoices.WITHDRAWING, MitigationStateChoices.ENDED, now)
    assert [kind for _, kind, _ in queued] == ["approval_needed", "mitigation_active", "mitigation_ended"]
    assert all(json.dumps(payload) for _, _, payload in queued), "payloads travel as JSON"


def test_admins_add_test_and_delete_channels_in_the_portal(world: World, receiver: Receiver, dead_url: str) -> None:
    admin = client_as("acme", "admin")
    response = admin.post("/notifications/", {"kind": "webhook", "target": f"{receiver.url}/portal",
                                              "events": ["attack_started", "mitigation_ended"]})
    assert response.status_code == 200 and not response.context["form"].errors
    with schema_context("acme"):
        channel = NotificationChannel.objects.get(target=f"{receiver.url}/portal")
    assert channel.events == ["attack_started", "mitigation_ended"]
    assert channel.secret and channel.secret.encode() in response.content, "the signing secret is shown once"
    listing = admin.get("/notifications/").content
    assert f"{receiver.url}/".encode() in listing and b"/portal" not in listing, "the URL's path is masked"
    assert channel.secret.encode() not in listing
    tested = admin.post(f"/notifications/{channel.pk}/test/", follow=True)
    assert b"Test sent" in tested.content and receiver.bodies[0]["body"]["event"] == "test"
    assert admin.post(f"/notifications/{channel.pk}/delete/").status_code == 302
    with schema_context("acme"):
        assert not NotificationChannel.objects.filter(pk=channel.pk).exists()


def test_a_failing_test_button_says_so(world: World, dead_url: str) -> None:
    admin = client_as("acme", "admin")
    admin.post("/notifications/", {"kind": "webhook", "target": dead_url, "events": ["attack_started"]})
    with schema_context("acme"):
        channel = NotificationChannel.objects.get(target=dead_url)
    response = admin.post(f"/notifications/{channel.pk}/test/", follow=True)
    assert response.status_code == 200 and b"failed" in response.content


def test_a_target_must_fit_the_kind(world: World) -> None:
    admin = client_as("acme", "admin")
    response = admin.post("/notifications/", {"kind": "email", "target": "http://127.0.0.1/", "events": EVENTS})
    assert response.status_code == 200 and response.context["form"].errors
    response = admin.post("/notifications/", {"kind": "webhook", "target": "ftp://127.0.0.1/", "events": EVENTS})
    assert response.status_code == 200 and response.context["form"].errors


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_admins_manage_channels(world: World, role: str) -> None:
    channel = add_channel(world.acme, "email", "noc@acme.example")
    client = client_as("acme", role)
    assert client.get("/notifications/").status_code == 403
    assert client.post(f"/notifications/{channel.pk}/delete/").status_code == 403
    assert client.post(f"/notifications/{channel.pk}/test/").status_code == 403


def test_another_tenant_can_neither_see_nor_touch_the_channels(world: World) -> None:
    channel = add_channel(world.acme, "email", "secret-noc@acme.example")
    globex = client_as("globex", "admin")
    assert b"secret-noc" not in globex.get("/notifications/").content
    assert globex.post(f"/notifications/{channel.pk}/delete/").status_code == 404
    assert globex.post(f"/notifications/{channel.pk}/test/").status_code == 404
    with schema_context("acme"):
        assert NotificationChannel.objects.filter(pk=channel.pk).exists()


def test_nothing_is_queued_for_a_tenant_without_channels(world: World, queued: list,
                                                         django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        record_signal(AttackSignal(target="198.51.100.55", vectors=("udp_flood",), bps=9_000_000_000, pps=1_000_000),
                      acting_user=TEST_ACTOR)
    assert queued == []
