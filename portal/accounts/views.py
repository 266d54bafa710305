"""Second sign-in step and TOTP enrollment, at every domain (see portal.accounts.urls).

After a correct password, a user with TOTP is not logged in: the session only remembers who is half-way for a
few minutes, and `login()` runs once the code is right. So an authenticated session always passed both steps.
"""

from __future__ import annotations

import time
from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from core.accounts import throttling, two_factor
from core.accounts.models import User
from core.crypto import CredentialError, decrypt, encrypt
from core.permissions import request_actor
from portal.accounts.forms import CodeForm, attempt_for
from portal.accounts.middleware import required_here

PENDING_LOGIN_KEY = "_sluice_2fa_pending"
ENROLL_SECRET_KEY = "_sluice_2fa_enroll"
PENDING_SECONDS = 5 * 60


def start_two_factor(request: HttpRequest, user: User, next_url: str) -> HttpResponse:
    """Remember a user whose password was right, and send them to the code step instead of logging them in."""
    request.session.cycle_key()
    request.session[PENDING_LOGIN_KEY] = {
        "user": user.pk, "backend": getattr(user, "backend", ""), "at": time.time(), "next": next_url,
    }
    return redirect("two-factor-verify")


def _pending_user(request: HttpRequest) -> tuple[User, dict[str, Any]] | None:
    pending = request.session.get(PENDING_LOGIN_KEY)
    if not pending or time.time() - float(pending["at"]) > PENDING_SECONDS:
        request.session.pop(PENDING_LOGIN_KEY, None)
        return None
    user = User.objects.filter(pk=pending["user"], is_active=True).first()
    return (user, pending) if user is not None else None


def _safe_next(request: HttpRequest, next_url: str) -> str:
    if next_url and url_has_allowed_host_and_scheme(next_url, {request.get_host()}, require_https=request.is_secure()):
        return next_url
    return "/"


@never_cache
def verify(request: HttpRequest) -> HttpResponse:
    """Step two of signing in: the code. Wrong codes count against the same throttle as wrong passwords."""
    found = _pending_user(request)
    if found is None:
        messages.error(request, "Your sign-in expired; enter your password again.")
        return redirect("login")
    user, pending = found
    attempt = attempt_for(request, user.username)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if throttling.is_locked(attempt):
            request.session.pop(PENDING_LOGIN_KEY, None)
            messages.error(request, throttling.LOCKED_MESSAGE)
            return redirect("login")
        if two_factor.verify_code(user, form.cleaned_data["code"]):
            throttling.record_success(attempt)
            del request.session[PENDING_LOGIN_KEY]
            login(request, user, backend=pending["backend"] or None)
            two_factor.mark_second_factor(request.session)  # after login(), which starts a new session
            return redirect(_safe_next(request, pending.get("next", "")))
        throttling.record_failure(attempt)
        form.add_error("code", "That code is not valid (or was already used). Try the next one.")
    return render(request, "accounts/verify.html", {"form": form, "tenant": getattr(request, "tenant", None)})


def _enrollment_secret(request: HttpRequest) -> str:
    """The secret being enrolled, kept encrypted in the session until the user proves their app has it."""
    stored = request.session.get(ENROLL_SECRET_KEY)
    if stored:
        try:
            return decrypt(stored)
        except CredentialError:
            pass
    secret = two_factor.new_secret()
    request.session[ENROLL_SECRET_KEY] = encrypt(secret)
    return secret


@login_required
@never_cache
def enroll(request: HttpRequest) -> HttpResponse:
    """Show a new secret (as otpauth:// URI and text) and enable it once a code from it is entered.

    The secret is shown only here, before it is enabled; afterwards the page says TOTP is on and nothing else.
    """
    user: User = request.user  # type: ignore[assignment]
    context: dict[str, Any] = {
        "tenant": getattr(request, "tenant", None), "enrolled": two_factor.has_two_factor(user),
        "required": required_here(),
    }
    if context["enrolled"]:
        return render(request, "accounts/two_factor.html", context)
    secret = _enrollment_secret(request)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if two_factor.enable_two_factor(user, secret, form.cleaned_data["code"], acting_user=request_actor(request)):
            del request.session[ENROLL_SECRET_KEY]
            two_factor.mark_second_factor(request.session)  # the code just entered proved it
            messages.success(request, "Two-factor sign-in is on. You will be asked for a code at every sign-in.")
            return redirect("home")
        form.add_error("code", "That code does not match; check the clock of your device and try again.")
    context.update(form=form, secret=secret,
                   uri=two_factor.provisioning_uri(secret, username=user.username, domain=request.get_host()))
    return render(request, "accounts/two_factor.html", context)


@require_POST
@login_required
def disable(request: HttpRequest) -> HttpResponse:
    """Turn TOTP off for oneself, allowed only to users who are not required to have it."""
    user: User = request.user  # type: ignore[assignment]
    if required_here():
        messages.error(request, "Two-factor sign-in is required here; it cannot be turned off.")
    elif two_factor.has_two_factor(user):
        two_factor.disable_two_factor(user, acting_user=request_actor(request))
        messages.success(request, "Two-factor sign-in is off.")
    return redirect("two-factor")
