"""What a customer owns and edits, in its own schema: protected prefixes, the service profile, notification channels.

Routing never reads these directly: the services that change them refresh the public mirrors
(`tenants.VerifiedPrefix`, `tenants.TenantPolicy`) in the same transaction.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator, validate_email
from django.db import models
from netfields import CidrAddressField, NetManager

from core.crypto import EncryptedTextField
from tenants.customer.choices import (
    ApplicationProfileChoices,
    AutomationModeChoices,
    LatencyScopeChoices,
    MitigationActionChoices,
    ProtectedPrefixStatusChoices,
)
from tenants.outbound import mask_url


class ProtectedPrefix(models.Model):
    """Address space the customer asks Sluice to protect. Only a provider operator can verify it."""

    prefix = CidrAddressField(unique=True)
    description = models.CharField(max_length=200, blank=True)
    status = models.CharField(
        max_length=20, choices=ProtectedPrefixStatusChoices.choices, default=ProtectedPrefixStatusChoices.PENDING
    )
    status_reason = models.CharField(max_length=300, blank=True)
    # Detection thresholds of this prefix: per host, and for the prefix as a whole (carpet bombing). Empty: the
    # service profile's host thresholds, and the prefix-wide ones scaled from the host's by the prefix's size.
    threshold_bps = models.BigIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    threshold_pps = models.BigIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    prefix_threshold_bps = models.BigIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    prefix_threshold_pps = models.BigIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    verified_at = models.DateTimeField(null=True, blank=True)

    objects = NetManager()  # type: ignore[django-manager-missing]  # netfields' manager is untyped

    class Meta:
        ordering = ["prefix"]
        verbose_name_plural = "protected prefixes"

    def __str__(self) -> str:
        return str(self.prefix)


def default_allowed_actions() -> list[str]:
    return [MitigationActionChoices.FLOWSPEC, MitigationActionChoices.DIVERSION]


class ServiceProfile(models.Model):
    """How the customer wants to be protected: latency limit, application kind, automation and allowed actions.

    One row per tenant schema.
    """

    latency_threshold_ms = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(1000)])
    application_profile = models.CharField(
        max_length=20, choices=ApplicationProfileChoices.choices, default=ApplicationProfileChoices.GENERIC
    )
    automation_mode = models.CharField(
        max_length=30, choices=AutomationModeChoices.choices, default=AutomationModeChoices.AUTOMATIC
    )
    approval_window_minutes = models.PositiveIntegerField(
        default=5, validators=[MinValueValidator(1), MaxValueValidator(240)]
    )
    allowed_actions = ArrayField(
        models.CharField(max_length=20, choices=MitigationActionChoices.choices), default=default_allowed_actions
    )
    hold_down_minutes = models.PositiveIntegerField(default=10, validators=[MaxValueValidator(1440)])
    detection_threshold_bps = models.BigIntegerField(default=1_000_000_000, validators=[MinValueValidator(1)])
    detection_threshold_pps = models.BigIntegerField(default=200_000, validators=[MinValueValidator(1)])
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.get_application_profile_display()}, {self.latency_threshold_ms} ms"


class LatencyOverride(models.Model):
    """A latency threshold for one scrubbing center or region that replaces the profile's default there."""

    profile = models.ForeignKey(ServiceProfile, on_delete=models.CASCADE, related_name="latency_overrides")
    scope_kind = models.CharField(max_length=10, choices=LatencyScopeChoices.choices)
    scope = models.CharField(max_length=100, help_text="Scrubbing center slug or region name")
    latency_ms = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(1000)])

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["profile", "scope_kind", "scope"], name="customer_latency_override_unique")
        ]

    def __str__(self) -> str:
        return f"{self.scope}: {self.latency_ms} ms"


class NotificationChannelKindChoices(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook (JSON POST)"
    SLACK = "slack", "Slack incoming webhook"


class NotificationEventChoices(models.TextChoices):
    """The moments of an attack a customer can be told about; names are stable, they appear in webhook bodies."""

    ATTACK_STARTED = "attack_started", "Attack started"
    MITIGATION_ACTIVE = "mitigation_active", "Mitigation active"
    APPROVAL_NEEDED = "approval_needed", "Approval needed"
    MITIGATION_ENDED = "mitigation_ended", "Mitigation ended"


def default_notification_events() -> list[str]:
    return list(NotificationEventChoices.values)


class NotificationChannel(models.Model):
    """Where the customer wants to hear about its attacks: an email address, a webhook or a Slack webhook URL."""

    kind = models.CharField(max_length=20, choices=NotificationChannelKindChoices.choices)
    target = models.CharField(max_length=500, help_text="Email address, or the http(s) URL to POST to")
    events = ArrayField(
        models.CharField(max_length=30, choices=NotificationEventChoices.choices), default=default_notification_events
    )
    enabled = models.BooleanField(default=True)
    # Webhooks only: the HMAC-SHA256 key of the X-Sluice-Signature header (docs/webhooks.md), shown once at creation.
    secret = EncryptedTextField(blank=True, default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "target"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.display_target}"

    @property
    def display_target(self) -> str:
        """The target as pages, audit rows and logs show it: a URL's path and query often carry its secret."""
        if self.kind == NotificationChannelKindChoices.EMAIL:
            return self.target
        return mask_url(self.target)

    def clean(self) -> None:
        """An email channel needs an address and the others an http(s) URL, so a typo fails here, not at 3 a.m."""
        if self.kind == NotificationChannelKindChoices.EMAIL:
            validate_email(self.target)
        else:
            URLValidator(schemes=["http", "https"])(self.target)
