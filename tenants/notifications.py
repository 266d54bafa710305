"""Telling customers about their attacks: email, webhooks and Slack, per channel and event kind.

The engine never waits on a customer's mail server or web endpoint: call sites use `notify_on_commit`, which
sends `tenants.tasks.notify_tenant_task` once the change has committed, and a broken broker is only logged.
Delivery failures are logged and reported in the result, never raised, so one dead endpoint cannot stop the
others or the engine; the task retries only the channels whose failure may pass (connection trouble). Webhook and Slack requests go
through the SSRF guard in `tenants.outbound`; webhooks are signed (docs/webhooks.md); URLs are masked in audit
rows and logs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import smtplib
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.mail import send_mail
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from core.actors import Actor
from core.audit import record_audit
from tenants import jobs, outbound
from tenants.customer.models import NotificationChannel, NotificationChannelKindChoices, NotificationEventChoices
from tenants.models import Tenant

logger = logging.getLogger(__name__)

TEST_EVENT = "test"


class DeliveryError(Exception):
    """A channel could not be reached or refused the message; `transient` when trying again may help."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass
class NotifyResult:
    """What one round of notifications did: channels reached, channels failed, and which are worth a retry."""

    sent: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    retryable: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[int]]:
        return {"sent": self.sent, "failed": self.failed, "retryable": self.retryable}


def json_safe(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as plain JSON types (datetimes, decimals, addresses become strings) for Celery and webhooks."""
    return json.loads(json.dumps(payload, cls=DjangoJSONEncoder, default=str))


def event_label(event_kind: str) -> str:
    if event_kind == TEST_EVENT:
        return "Test notification"
    return str(NotificationEventChoices(event_kind).label)


def summary_text(tenant: Tenant, event_kind: str, payload: dict[str, Any]) -> str:
    """One line a person reads in a mail subject or a Slack channel."""
    details = [f"target {payload['target']}"] if payload.get("target") else []
    details += [f"{name} {payload[name]}" for name in ("state", "level") if payload.get(name)]
    suffix = f" ({', '.join(details)})" if details else ""
    return f"[Sluice] {tenant.name}: {event_label(event_kind)}{suffix}"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Sluice-Signature value: HMAC-SHA256 over "<timestamp>." and the body, keyed by the channel's secret."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def _post_json(channel: NotificationChannel, body: dict[str, Any]) -> None:
    """POST through the SSRF guard (tenants.outbound); signed when the channel has a secret (webhooks)."""
    data = json.dumps(body, cls=DjangoJSONEncoder).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "Sluice-notifications/1"}
    if channel.secret:
        timestamp = str(int(time.time()))
        headers |= {"X-Sluice-Timestamp": timestamp, "X-Sluice-Signature": sign(channel.secret, timestamp, data)}
    try:
        outbound.post(channel.target, data, headers)
    except outbound.OutboundError as error:
        raise DeliveryError(error.category, transient=error.transient) from error


def deliver(channel: NotificationChannel, tenant: Tenant, event_kind: str, payload: dict[str, Any]) -> None:
    """Send one message on one channel; raises DeliveryError whose text is a category a customer may read."""
    text = summary_text(tenant, event_kind, payload)
    if channel.kind == NotificationChannelKindChoices.EMAIL:
        body = "\n".join([text, "", *(f"{key}: {value}" for key, value in payload.items())])
        try:
            send_mail(text, body, settings.DEFAULT_FROM_EMAIL, [channel.target], fail_silently=False)
        except (smtplib.SMTPException, OSError) as error:
            raise DeliveryError("mail delivery failed", transient=True) from error
    elif channel.kind == NotificationChannelKindChoices.SLACK:
        _post_json(channel, {"text": text})
    else:
        _post_json(channel, {"event": event_kind, "tenant": tenant.slug, "sent_at": timezone.now(),
                             "summary": text, "data": payload})


def notify_tenant(
    tenant: Tenant, event_kind: str, payload: dict[str, Any], *, channel_ids: list[int] | None = None
) -> NotifyResult:
    """Send `event_kind` to every enabled channel of `tenant` that subscribed to it (or only `channel_ids`)."""
    result = NotifyResult()
    with schema_context(tenant.schema_name):
        channels = NotificationChannel.objects.filter(enabled=True, events__contains=[event_kind])
        if channel_ids is not None:
            channels = channels.filter(pk__in=channel_ids)
        for channel in channels:
            try:
                deliver(channel, tenant, event_kind, payload)
            except DeliveryError as error:
                logger.warning("notification %s for %s on channel %s failed: %s", event_kind, tenant.slug,
                               channel.pk, error)
                result.failed.append(channel.pk)
                if error.transient:
                    result.retryable.append(channel.pk)
            else:
                result.sent.append(channel.pk)
    return result


def send_test(channel: NotificationChannel, tenant: Tenant) -> str | None:
    """The portal's "send a test" button: deliver now and return the failure's category, or None when it went out."""
    try:
        deliver(channel, tenant, TEST_EVENT, {"target": "192.0.2.1", "note": "Sent from the Sluice portal"})
    except DeliveryError as error:
        return str(error)
    return None


def _has_listeners(tenant: Tenant, event_kind: str) -> bool:
    """Whether any enabled channel of the tenant wants this event: most tenants have none, and a burst of attacks
    must not fill the workers' queues with notification jobs that would send nothing."""
    with schema_context(tenant.schema_name):
        return NotificationChannel.objects.filter(enabled=True, events__contains=[event_kind]).exists()


def notify_on_commit(tenant: Tenant, event_kind: str, payload: dict[str, Any]) -> None:
    """Queue the notification once the caller's transaction commits (at once outside one); never raises."""
    if not _has_listeners(tenant, event_kind):
        return
    jobs.notify_after_commit(tenant.pk, event_kind, json_safe(payload))


def add_notification_channel(
    tenant: Tenant, *, kind: str, target: str, events: list[str], acting_user: Actor
) -> NotificationChannel:
    """Create a channel in the tenant's schema after full validation; audited with the URL masked.

    URL targets are resolved and refused when they reach inside the network (tenants.outbound), the tenant's
    channels are capped, and a webhook gets its signing secret: `channel.secret` is readable on the returned object
    for the caller to show once. Raises ValidationError.
    """
    with schema_context(tenant.schema_name), transaction.atomic():
        if NotificationChannel.objects.count() >= settings.SLUICE_NOTIFICATION_CHANNELS_PER_TENANT:
            raise ValidationError({NON_FIELD_ERRORS: [
                f"At most {settings.SLUICE_NOTIFICATION_CHANNELS_PER_TENANT} notification channels per tenant."]})
        channel = NotificationChannel(kind=kind, target=target.strip(), events=sorted(set(events)))
        channel.full_clean()
        if kind != NotificationChannelKindChoices.EMAIL:
            try:
                outbound.check_url(channel.target)
            except outbound.OutboundError as error:
                raise ValidationError({"target": [error.category]}) from error
        if kind == NotificationChannelKindChoices.WEBHOOK:
            channel.secret = secrets.token_urlsafe(32)
        channel.save()
        record_audit(acting_user, "notification_channel.create", tenant_slug=tenant.slug, obj=channel,
                     diff={"kind": kind, "target": channel.display_target, "events": channel.events})
    return channel


def delete_notification_channel(tenant: Tenant, channel: NotificationChannel, *, acting_user: Actor) -> None:
    """Remove a channel of the tenant; audited with the URL masked."""
    with schema_context(tenant.schema_name), transaction.atomic():
        record_audit(acting_user, "notification_channel.delete", tenant_slug=tenant.slug, obj=channel,
                     diff={"kind": channel.kind, "target": channel.display_target})
        channel.delete()
