"""Forms of signing in and enrolling: the throttled password step, the code step and the enrollment check."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.db import connection

from core.accounts import throttling


def client_address(request: Any) -> str:
    """The peer address; a proxy's X-Forwarded-For is not trusted here, as anyone can send that header."""
    return str(request.META.get("REMOTE_ADDR") or "unknown")


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
