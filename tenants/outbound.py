"""Requests Sluice sends on a tenant's behalf (webhooks, Slack), refused when they would reach inside the network.

A tenant chooses the URL, so the URL is an attacker's input: resolved names and literal addresses are checked
against every class of address that is not the public Internet (loopback, private, link-local, multicast,
reserved, unspecified), cloud metadata endpoints and the provider's own deny list (`SLUICE_WEBHOOK_DENY_NETWORKS`).
The check runs when a channel is saved and again before each send, and the connection goes to the very address
that was checked, so a name that changes its answer between the check and the connect (DNS rebinding) gains
nothing; the Host header and the TLS server name are still the URL's host. Redirects are never followed, timeouts
are short, and failures are reported as a category a customer may read ("refused: private address", "timeout",
"HTTP 500"), never as the raw error, which could leak what lies behind the refusal.

`SLUICE_WEBHOOK_ALLOW_NETWORKS` exempts networks from the address-class checks (never from metadata or the deny
list). It is empty in production; the test suite sets it for the loopback receivers its delivery tests use.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

CLOUD_METADATA = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
ANSWER_LIMIT = 1024


class OutboundError(Exception):
    """A request was refused or failed; `category` is what a customer may read, `transient` when a retry may help."""

    def __init__(self, category: str, *, transient: bool) -> None:
        super().__init__(category)
        self.category = category
        self.transient = transient


def refused(reason: str) -> OutboundError:
    return OutboundError(f"refused: {reason}", transient=False)


@dataclass(frozen=True)
class CheckedTarget:
    """A URL whose host resolved only to addresses Sluice may reach, and the address the request goes to."""

    url: SplitResult
    host: str
    port: int
    address: IPAddress

    @property
    def path(self) -> str:
        return (self.url.path or "/") + (f"?{self.url.query}" if self.url.query else "")


def mask_url(url: str) -> str:
    """The URL for audit rows and logs: scheme, host and port only, since paths and queries often carry a secret."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "••••"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}/••••"


def _networks(values: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(value, strict=False) for value in values]


def address_refusal(address: IPAddress) -> str | None:
    """Why Sluice must not send to `address`, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in CLOUD_METADATA:
        return "cloud metadata address"
    if any(address in network for network in _networks(settings.SLUICE_WEBHOOK_DENY_NETWORKS)):
        return "denied network"
    if any(address in network for network in _networks(settings.SLUICE_WEBHOOK_ALLOW_NETWORKS)):
        return None
    for reason, test in (
        ("loopback address", address.is_loopback), ("unspecified address", address.is_unspecified),
        ("link-local address", address.is_link_local), ("multicast address", address.is_multicast),
        ("private address", address.is_private), ("reserved address", address.is_reserved),
        ("non-public address", not address.is_global),
    ):
        if test:
            return reason
    return None


def check_url(url: str) -> CheckedTarget:
    """Parse and resolve `url` and check every address it resolves to; raises OutboundError (no I/O but DNS)."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise refused("invalid URL") from error
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise refused("not an http(s) URL")
    if parts.username or parts.password:
        raise refused("credentials in the URL")
    host = parts.hostname
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise OutboundError("refused: host does not resolve", transient=True) from error
    addresses = [ipaddress.ip_address(str(answer[4][0]).split("%", 1)[0]) for answer in answers]
    if not addresses:
        raise OutboundError("refused: host does not resolve", transient=True)
    for address in addresses:
        reason = address_refusal(address)
        if reason is not None:
            raise refused(reason)
    return CheckedTarget(url=parts, host=host, port=port, address=addresses[0])


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to the checked address, whatever the name resolves to now; Host stays the URL's host."""

    def __init__(self, target: CheckedTarget, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.pinned = str(target.address)

    def connect(self) -> None:
        self.sock = socket.create_connection((self.pinned, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to the checked address; the certificate is verified and SNI sent for the URL's host."""

    def __init__(self, target: CheckedTarget, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=ssl.create_default_context())
        self.pinned = str(target.address)

    def connect(self) -> None:
        raw = socket.create_connection((self.pinned, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST `body` to `url` after checking it; returns the 2xx status or raises OutboundError with a category."""
    target = check_url(url)
    timeout = float(settings.SLUICE_WEBHOOK_TIMEOUT_SECONDS)
    connection_class = _PinnedHTTPSConnection if target.url.scheme == "https" else _PinnedHTTPConnection
    connection = connection_class(target, timeout)
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(ANSWER_LIMIT)
    except TimeoutError as error:
        raise OutboundError("timeout", transient=True) from error
    except ConnectionRefusedError as error:
        raise OutboundError("connection refused", transient=True) from error
    except ssl.SSLError as error:
        raise OutboundError("TLS error", transient=False) from error
    except (http.client.HTTPException, OSError) as error:
        raise OutboundError("connection failed", transient=True) from error
    finally:
        connection.close()
    if 300 <= response.status < 400:
        raise refused("redirect")
    if not 200 <= response.status < 300:
        raise OutboundError(f"HTTP {response.status}", transient=response.status >= 500 or response.status == 429)
    return response.status
