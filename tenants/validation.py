"""Rules for what address space and names a tenant may hold. Pure functions: no database."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from core.errors import ValidationProblem

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DOCUMENTATION_RANGES: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(p) for p in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)

# Special-purpose and unroutable space (RFC 6890 and its IANA registries), documentation ranges apart.
BOGON_RANGES: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(p)
    for p in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
        "::/8", "100::/64", "2001::/23", "2002::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    )
)
GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")

# The widest prefix a customer may protect: wider is a typo or an attempt to claim someone else's space.
MIN_PREFIX_LENGTH = {4: 8, 6: 19}

SLUG_RE = re.compile(r"^[a-z][a-z0-9-]{1,48}[a-z0-9]$")
RESERVED_SLUGS = frozenset({"public", "www", "admin", "api", "soc", "static", "information-schema", "sluice"})
HOSTNAME_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class PrefixPolicy:
    """Which special address space is acceptable, decided by settings and flags."""

    allow_documentation: bool = False
    allow_bogons: bool = False


def parse_prefix(text: str, *, field: str = "prefix") -> IPNetwork:
    """Parse a CIDR prefix; host bits set are an error, not something to silently mask."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValidationProblem(field, f"{text!r} is not an IPv4 or IPv6 prefix") from None
    if "/" not in text:
        raise ValidationProblem(field, f"{text!r} has no prefix length; write it as CIDR, e.g. {network}")
    strict = ipaddress.ip_network(network.with_prefixlen, strict=False)
    try:
        ipaddress.ip_network(text.strip(), strict=True)
    except ValueError:
        raise ValidationProblem(field, f"{text} has host bits set; did you mean {strict}?") from None
    return network


def check_prefix_space(network: IPNetwork, policy: PrefixPolicy, *, field: str = "prefix") -> None:
    """Refuse space no customer can hold: too wide, special-purpose, or documentation unless allowed."""
    if network.prefixlen < MIN_PREFIX_LENGTH[network.version]:
        raise ValidationProblem(
            field, f"{network} is wider than /{MIN_PREFIX_LENGTH[network.version]}, the widest Sluice protects"
        )
    for documentation in DOCUMENTATION_RANGES:
        if network.version == documentation.version and network.overlaps(documentation):
            if policy.allow_documentation or policy.allow_bogons:
                return
            raise ValidationProblem(field, f"{network} is documentation space ({documentation}), not routable")
    if policy.allow_bogons:
        return
    for bogon in BOGON_RANGES:
        if network.version == bogon.version and network.overlaps(bogon):
            raise ValidationProblem(field, f"{network} is private or special-purpose space ({bogon})")
    if network.version == 6 and not network.subnet_of(GLOBAL_UNICAST_V6):  # type: ignore[arg-type]
        raise ValidationProblem(field, f"{network} is outside IPv6 global unicast space (2000::/3)")


def check_slug(slug: str) -> None:
    if not SLUG_RE.match(slug):
        raise ValidationProblem(
            "slug", f"{slug!r} must be 3-50 characters of lowercase letters, digits and hyphens, starting with a letter"
        )
    if slug in RESERVED_SLUGS or slug.startswith("pg-"):
        raise ValidationProblem("slug", f"{slug!r} is reserved")


def check_hostname(hostname: str) -> None:
    labels = hostname.split(".")
    if len(hostname) > 253 or len(labels) < 2 or not all(HOSTNAME_LABEL_RE.match(label) for label in labels):
        raise ValidationProblem("domain", f"{hostname!r} is not a valid host name (e.g. acme.localhost)")


def schema_name_for(slug: str) -> str:
    return slug.replace("-", "_")
