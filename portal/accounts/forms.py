"""Forms of signing in and enrolling: the throttled password step, the code step and the enrollment check."""

from __future__ import annotations

import ipaddress
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.db import connection

from core.accounts import throttling


def client_address(request: Any) -> str:
    """The client's address: the peer's, or, when the peer is one of `SLUICE_TRUSTED_PROXIES`, the nearest address
    in X-Forwarded-For that is not a trusted proxy. Anyone can send that header, so it is read only from them."""
    peer = str(request.META.get("REMOTE_ADDR") or "unknown")
    trusted = [ipaddress.ip_network(net, strict=False) for net in settings.SLUICE_TRUSTED_PROXIES]
    if not trusted or not _within(peer, trusted):
        return peer
    hops = [hop.strip() for hop in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _within(hop, trusted):
            return hop if _is_address(hop) else peer  # a forged, unparsable hop counts as the proxy itself
    return peer


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _within(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed.version == net.version and parsed in net for net in networks)


def attempt_for(request: Any, username: str) -> throttling.LoginAttempt:
    return throttling.LoginAttempt(connection.schema_name, username, client_address(request))  # type: ignore[attr-defined]  # django-tenants adds it to the connection


class ThrottledAuthenticationForm(AuthenticationForm):
    """Django's password check, refused outright while the username or the address is locked out."""

    def clean(self) -> dict[str, Any]:
        attempt = attempt_for(self.request, self.data.get("username", ""))
        if throttling.is_locked(attempt):
            raise forms.ValidationError(throttling.LOCKED_MESSAGE, code="throttled")
        try:
            return super().clean()
        except forms.ValidationError:
            throttling.record_failure(attempt)
            raise


class CodeForm(forms.Form):
    """A six-digit code from the authenticator app."""

    code = forms.CharField(
        max_length=10, label="Authentication code",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )
