"""Two-factor routing and enforcement for page requests.

The sign-in pages for the second factor exist at every domain, so this middleware (after django-tenants' chose the
domain's urlconf) serves that urlconf with portal.accounts.urls in front of it. Then it holds provider staff who
must use TOTP but have not enrolled to the enrollment page: every other page redirects there, and the session API
answers 403. Token-authenticated API calls carry no session user here and are unaffected.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse

from core.accounts import sessions, two_factor

WITH_TWO_FACTOR_URLS = {
    "portal.urls_public": "portal.accounts.urls_public",
    "portal.urls_tenant": "portal.accounts.urls_tenant",
}


class SuspendedTenantMiddleware:
    """Nothing at a suspended tenant's domain answers but a refusal: no sign-in, no session, no token works.

    Its signals are still recorded (they come from the provider's detectors, at the provider's domain), and the
    apply-time gate withdraws its mitigations; the SOC keeps full access to it.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        tenant = getattr(request, "tenant", None)
        if tenant is None or tenant.schema_name == "public" or tenant.status == "active":
            return self.get_response(request)
        if request.path.startswith("/" + settings.STATIC_URL.lstrip("/")):
            return self.get_response(request)
        detail = "This account is suspended. Contact your provider."
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": detail}, status=403)
        return HttpResponse(detail, status=403, content_type="text/plain")


class IdleSessionMiddleware:
    """Ends a session idle beyond its limit; moves the idle clock on a person's requests, not background refreshes."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            if sessions.idle_expired(request.session):
                logout(request)  # its websockets are told to close (portal.accounts.signals)
                if request.path.startswith("/api/") or sessions.BACKGROUND_HEADER in request.META:
                    return JsonResponse({"detail": "Your session ended after a time without activity."}, status=401)
                messages.info(request, "You were signed out after a time without activity.")
                return redirect(f"{reverse('login', urlconf=getattr(request, 'urlconf', None))}?next={request.path}")
            if request.META.get(sessions.BACKGROUND_HEADER) != "1":
                sessions.note_action(request.session)
        return self.get_response(request)


def required_here() -> bool:
    """Whether users must use TOTP at this request's domain: provider staff, or the tenant says so."""
    tenant = getattr(connection, "tenant", None)
    return two_factor.two_factor_required(
        connection.schema_name,  # type: ignore[attr-defined]  # django-tenants adds it to the connection
        tenant_requires=bool(getattr(tenant, "require_two_factor", False)))


class TwoFactorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        urlconf = str(getattr(request, "urlconf", None) or settings.ROOT_URLCONF)
        request.urlconf = WITH_TWO_FACTOR_URLS.get(urlconf, urlconf)  # type: ignore[attr-defined]  # a request attribute Django reads, set per tenant
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and not two_factor.session_passed_second_factor(
                user, request.session):
            return self._refuse_unverified(request)
        if (
            user is not None and user.is_authenticated
            and required_here()
            and not two_factor.has_two_factor(user)
        ):
            refusal = self._hold_for_enrollment(request)
            if refusal is not None:
                return refusal
        return self.get_response(request)

    @staticmethod
    def _refuse_unverified(request: HttpRequest) -> HttpResponse:
        """A session that skipped the second factor (e.g. Django admin's own login) is ended, never used."""
        logout(request)
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": "Sign in with your password and code."}, status=403)
        messages.warning(request, "Sign in with your password and your authenticator code.")
        return redirect(f"{reverse('login', urlconf=request.urlconf)}?next={request.path}")  # type: ignore[attr-defined]  # a request attribute Django reads, set per tenant

    @staticmethod
    def _hold_for_enrollment(request: HttpRequest) -> HttpResponse | None:
        allowed = {reverse(name, urlconf=request.urlconf) for name in ("two-factor", "logout")}  # type: ignore[attr-defined]  # a request attribute Django reads, set per tenant
        if request.path in allowed or request.path.startswith("/" + settings.STATIC_URL.lstrip("/")):
            return None
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": "Enroll in two-factor sign-in before using the API with a session."},
                                status=403)
        messages.warning(request, "Your role requires two-factor sign-in. Set it up to continue.")
        return redirect(reverse("two-factor", urlconf=request.urlconf))  # type: ignore[attr-defined]  # a request attribute Django reads, set per tenant
