"""The provider's network inventory (public schema): scrubbing centers, routers, upstream peers, BGP speakers.

These rows are what the route-engineering engine plans against (through `mitigation.snapshot.network_snapshot`)
and what the device tasks drive. Telemetry fields (load, utilisation, session state) are written by the pollers
and the scrubbing appliances, never by hand.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from core.crypto import EncryptedTextField
from devices.choices import (
    BgpSpeakerKindChoices,
    BgpSpeakerNeighborFamilyChoices,
    ElementHealthStateChoices,
    RouterRoleChoices,
    RouterVendorChoices,
    UpstreamPeerSessionStateChoices,
)

_ASN_NN = re.compile(r"(\d{1,10}):(\d{1,10})", re.ASCII)
MAX_ASN = 4_294_967_295
# Strings that end up inside a router's or a speaker's configuration are held to their grammar here, and checked
# again by the drivers when they render (devices.drivers.junos, devices.drivers.bgp).
CONFIG_TEXT = re.compile(r"[A-Za-z0-9 _.,:/()@+=-]*", re.ASCII)
INSTANCE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}", re.ASCII)


def validate_asn_nn(value: str) -> None:
    """A BGP community or route target written "ASN:NN": a 32-bit ASN with a 16-bit value, or 16-bit with 32-bit."""
    match = _ASN_NN.fullmatch(value or "")
    if match is None:
        raise ValidationError(f"{value!r} must read ASN:NN", code="invalid")
    asn, number = int(match.group(1)), int(match.group(2))
    if asn > MAX_ASN or number > MAX_ASN or (asn > 65535 and number > 65535):
        raise ValidationError(f"{value!r} is out of range for ASN:NN", code="invalid")


def validate_config_text(value: str) -> None:
    """Free text written into a device configuration (a BGP session's description): no quotes, braces,
    semicolons, backslashes, hashes or line breaks, so it can never close its statement and open another."""
    if not CONFIG_TEXT.fullmatch(value or ""):
        raise ValidationError("may hold letters, digits, spaces and _.,:/()@+=- only", code="invalid")


def validate_instance_name(value: str) -> None:
    """A routing-instance (VRF) name as Junos and the other vendors accept it."""
    if not INSTANCE_NAME.fullmatch(value or ""):
        raise ValidationError("must start with a letter and hold letters, digits, _ . - only (64 at most)",
                              code="invalid")


def _age_s(updated_at: datetime | None, now: datetime | None = None) -> float | None:
    if updated_at is None:
        return None
    return max(((now or timezone.now()) - updated_at).total_seconds(), 0.0)


class ScrubbingCenter(models.Model):
    """A site where diverted traffic is cleaned: how much it can take, how loaded it is, and how to reach it.

    Diverted prefixes are announced with `diversion_next_hop_v4/v6`; when plain diversion is filtered, FlowSpec
    redirects into the VRF `routing_instance` named by `route_target`. Load is reported by the center's appliances
    every `telemetry_interval_s` seconds; older figures are stale and the engine trusts them less.
    """

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    site = models.CharField(max_length=100, blank=True)
    region = models.CharField(max_length=50, blank=True)
    capacity_gbps = models.FloatField(validators=[MinValueValidator(0.0)])
    capacity_mpps = models.FloatField(validators=[MinValueValidator(0.0)])
    load_gbps = models.FloatField(default=0.0, validators=[MinValueValidator(0.0)])
    load_mpps = models.FloatField(default=0.0, validators=[MinValueValidator(0.0)])
    load_updated_at = models.DateTimeField(null=True, blank=True)
    healthy = models.BooleanField(default=True)
    diversion_next_hop_v4 = models.GenericIPAddressField(protocol="IPv4", null=True, blank=True)
    diversion_next_hop_v6 = models.GenericIPAddressField(protocol="IPv6", null=True, blank=True)
    routing_instance = models.CharField(max_length=64, blank=True, validators=[validate_instance_name])
    route_target = models.CharField(max_length=32, blank=True, validators=[validate_asn_nn])
    telemetry_interval_s = models.PositiveIntegerField(default=30, validators=[MinValueValidator(1)])

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name

    @property
    def load_age_s(self) -> float | None:
        """Seconds since the last load report, or None when there never was one."""
        return _age_s(self.load_updated_at)

    def stale_at(self, now: datetime | None = None) -> bool:
        """Whether the load figures are missing or older than the reporting interval at `now`."""
        age = _age_s(self.load_updated_at, now)
        return age is None or age > self.telemetry_interval_s

    @property
    def is_stale(self) -> bool:
        return self.stale_at()


class Router(models.Model):
    """A router Sluice configures (FlowSpec rules, diversion routes) and polls (BGP sessions, counters).

    Juniper routers are driven with PyEZ; every other vendor through NAPALM with `platform` as the driver name.
    The password is encrypted at rest and never shown back.
    """

    name = models.CharField(max_length=100, unique=True)
    vendor = models.CharField(max_length=20, choices=RouterVendorChoices.choices)
    platform = models.CharField(max_length=30, help_text="NAPALM driver name: junos, iosxr, eos, nxos_ssh, sros, ...")
    role = models.CharField(max_length=20, choices=RouterRoleChoices.choices, default=RouterRoleChoices.EDGE)
    center = models.ForeignKey(
        ScrubbingCenter, on_delete=models.SET_NULL, null=True, blank=True, related_name="routers"
    )
    mgmt_host = models.CharField(max_length=255)
    mgmt_port = models.PositiveIntegerField(default=830, validators=[MinValueValidator(1), MaxValueValidator(65535)])
    username = models.CharField(max_length=100)
    password = EncryptedTextField(blank=True)
    flowspec_rule_limit = models.PositiveIntegerField(default=8000)
    # Flow export: the collector accepts datagrams only from these source addresses (others are counted and
    # dropped), and drops records claiming a sampling rate above the maximum (a forged 1:4e9 would fake a flood).
    exporter_addresses = ArrayField(models.GenericIPAddressField(), default=list, blank=True)
    max_sampling_rate = models.PositiveIntegerField(
        default=65535, validators=[MinValueValidator(1), MaxValueValidator(4_294_967_295)]
    )
    enabled = models.BooleanField(default=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    # SSH host key (`<type> <base64>`) recorded on first contact; any other key is refused, and kept in
    # `ssh_host_key_offered` until an operator confirms it (`manage.py confirm_host_key ROUTER`).
    ssh_host_key = models.TextField(blank=True, editable=False)
    ssh_host_key_offered = models.TextField(blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Router {self.name} {self.vendor}/{self.platform} {self.mgmt_host}:{self.mgmt_port}>"

    @property
    def uses_pyez(self) -> bool:
        return self.vendor == RouterVendorChoices.JUNIPER


class UpstreamPeer(models.Model):
    """A transit or peering session with an ISP at a scrubbing center, and the communities that ISP honours.

    `utilisation` (0..1 of `capacity_gbps`) and `session_state` come from polling `router`; `interface` names the
    router interface whose octet counters measure the link. `telemetry_sample` keeps the previous counter reading
    so the next poll can turn the delta into a rate.
    """

    name = models.CharField(max_length=100, unique=True)
    isp = models.CharField(max_length=100)
    asn = models.PositiveBigIntegerField(validators=[MinValueValidator(1), MaxValueValidator(MAX_ASN)])
    router = models.ForeignKey(Router, on_delete=models.PROTECT, related_name="upstreams")
    center = models.ForeignKey(ScrubbingCenter, on_delete=models.PROTECT, related_name="upstreams")
    neighbor_address = models.GenericIPAddressField()
    interface = models.CharField(max_length=64, blank=True)
    capacity_gbps = models.FloatField(validators=[MinValueValidator(0.0)])
    utilisation = models.FloatField(default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    session_state = models.CharField(
        max_length=20, choices=UpstreamPeerSessionStateChoices.choices, default=UpstreamPeerSessionStateChoices.UNKNOWN
    )
    telemetry_updated_at = models.DateTimeField(null=True, blank=True)
    telemetry_sample = models.JSONField(default=dict, blank=True, editable=False)
    blackhole_community = models.CharField(max_length=32, blank=True, validators=[validate_asn_nn])
    prepend_community = models.CharField(max_length=32, blank=True, validators=[validate_asn_nn])
    no_export_community = models.CharField(max_length=32, blank=True, validators=[validate_asn_nn])
    communities = models.JSONField(default=dict, blank=True)
    flowspec_accepted = models.BooleanField(default=False)
    flowspec_rule_limit = models.PositiveIntegerField(default=0)
    telemetry_interval_s = models.PositiveIntegerField(default=30, validators=[MinValueValidator(1)])

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if not isinstance(self.communities, dict):
            raise ValidationError({"communities": "must be a mapping of name to ASN:NN"})
        for label, value in self.communities.items():
            try:
                validate_asn_nn(str(value))
            except ValidationError as error:
                raise ValidationError({"communities": f"{label}: {error.messages[0]}"}) from error

    def stale_at(self, now: datetime | None = None) -> bool:
        """Whether the polled figures are missing or older than the polling interval at `now`."""
        age = _age_s(self.telemetry_updated_at, now)
        return age is None or age > self.telemetry_interval_s

    @property
    def is_stale(self) -> bool:
        return self.stale_at()

    @property
    def session_up(self) -> bool:
        return self.session_state == UpstreamPeerSessionStateChoices.ESTABLISHED


class BgpSpeaker(models.Model):
    """A BGP speaker Sluice runs (one ExaBGP per site) to announce diversions and FlowSpec to routers and ISPs."""

    name = models.SlugField(max_length=50, unique=True)
    kind = models.CharField(max_length=20, choices=BgpSpeakerKindChoices.choices, default=BgpSpeakerKindChoices.EXABGP)
    router_id = models.GenericIPAddressField(protocol="IPv4")
    local_as = models.PositiveBigIntegerField(validators=[MinValueValidator(1), MaxValueValidator(MAX_ASN)])
    local_address = models.GenericIPAddressField()
    center = models.ForeignKey(
        ScrubbingCenter, on_delete=models.SET_NULL, null=True, blank=True, related_name="speakers"
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def workdir(self) -> Path:
        """Where the speaker's config, control socket and journal live; shared by its supervisor and clients."""
        return Path(settings.SLUICE_DATA_DIR) / "speakers" / self.name


class BgpSpeakerNeighbor(models.Model):
    """One BGP session of a speaker: to an edge router (`router`) or straight to an ISP (`upstream`)."""

    speaker = models.ForeignKey(BgpSpeaker, on_delete=models.CASCADE, related_name="neighbors")
    peer_address = models.GenericIPAddressField()
    peer_as = models.PositiveBigIntegerField(validators=[MinValueValidator(1), MaxValueValidator(MAX_ASN)])
    families = ArrayField(models.CharField(max_length=20, choices=BgpSpeakerNeighborFamilyChoices.choices),
                          default=list)
    passive = models.BooleanField(default=False)
    port = models.PositiveIntegerField(default=179, validators=[MinValueValidator(1), MaxValueValidator(65535)])
    router = models.ForeignKey(Router, on_delete=models.SET_NULL, null=True, blank=True,
                               related_name="speaker_sessions")
    upstream = models.ForeignKey(UpstreamPeer, on_delete=models.SET_NULL, null=True, blank=True,
                                 related_name="speaker_sessions")
    description = models.CharField(max_length=200, blank=True, validators=[validate_config_text])

    class Meta:
        ordering = ["speaker", "peer_address"]
        constraints = [
            models.UniqueConstraint(fields=["speaker", "peer_address"], name="devices_speaker_neighbor_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.speaker.name} -> {self.peer_address}"


class TenantLatency(models.Model):
    """The measured latency from a scrubbing center to a tenant; the engine never picks a center without one."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="center_latencies")
    center = models.ForeignKey(ScrubbingCenter, on_delete=models.CASCADE, related_name="tenant_latencies")
    latency_ms = models.FloatField(validators=[MinValueValidator(0.0)])

    class Meta:
        ordering = ["tenant", "center"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "center"], name="devices_tenant_latency_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant} @ {self.center}: {self.latency_ms} ms"


class ElementHealth(models.Model):
    """How a network element (`router:<name>` or `speaker:<name>`) answered its last push, and when to try again.

    Convergence skips an element until `next_retry_at` (exponential backoff after consecutive failures), so a
    broken element never blocks, delays or rolls back the others; the next success puts it back to ok.
    """

    element = models.CharField(max_length=120, unique=True)
    state = models.CharField(max_length=20, choices=ElementHealthStateChoices.choices,
                             default=ElementHealthStateChoices.OK)
    last_error = models.TextField(blank=True)
    since = models.DateTimeField(default=timezone.now, help_text="When the element entered this state.")
    next_retry_at = models.DateTimeField(null=True, blank=True)
    failures = models.PositiveIntegerField(default=0, help_text="Consecutive failed pushes.")
    maintenance = models.BooleanField(default=False, help_text="An operator took it out of service: not pushed to, "
                                                               "not planned on.")
    maintenance_reason = models.CharField(max_length=300, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["element"]

    def __str__(self) -> str:
        return f"{self.element}: {self.state}"

    @property
    def is_ok(self) -> bool:
        return self.state == ElementHealthStateChoices.OK

    @property
    def in_service(self) -> bool:
        """Whether the engine may count on it: not in maintenance and its last push succeeded."""
        return self.is_ok and not self.maintenance
