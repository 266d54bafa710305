"""Choices for the inventory models, one class per model field (NetBox style)."""

from django.db import models


class RouterVendorChoices(models.TextChoices):
    JUNIPER = "juniper", "Juniper"
    CISCO = "cisco", "Cisco"
    ARISTA = "arista", "Arista"
    NOKIA = "nokia", "Nokia"
    OTHER = "other", "Other"


class RouterRoleChoices(models.TextChoices):
    """Where a router sits: at the provider's edge (holds FlowSpec), inside a scrubbing center, or at a border."""

    EDGE = "edge", "Edge"
    SCRUBBING = "scrubbing", "Scrubbing"
    BORDER = "border", "Border"


class UpstreamPeerSessionStateChoices(models.TextChoices):
    """The BGP session state as last polled; `unknown` when the router could not be asked."""

    ESTABLISHED = "established", "Established"
    IDLE = "idle", "Idle"
    ACTIVE = "active", "Active"
    CONNECT = "connect", "Connect"
    DOWN = "down", "Down"
    UNKNOWN = "unknown", "Unknown"


class BgpSpeakerKindChoices(models.TextChoices):
    """The daemon behind a speaker; only ExaBGP is implemented."""

    EXABGP = "exabgp", "ExaBGP"
    GOBGP = "gobgp", "GoBGP"


class BgpSpeakerNeighborFamilyChoices(models.TextChoices):
    IPV4_UNICAST = "ipv4 unicast", "IPv4 unicast"
    IPV6_UNICAST = "ipv6 unicast", "IPv6 unicast"
    IPV4_FLOW = "ipv4 flow", "IPv4 FlowSpec"
    IPV6_FLOW = "ipv6 flow", "IPv6 FlowSpec"


class ElementHealthStateChoices(models.TextChoices):
    OK = "ok", "OK"
    UNREACHABLE = "unreachable", "Unreachable"
    TIMEOUT = "timeout", "Timed out"
    LOCKED = "locked", "Lock refused"
    COMMIT_FAILED = "commit_failed", "Commit failed"
    FAILED = "failed", "Failed"
