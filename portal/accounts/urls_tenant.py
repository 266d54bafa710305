"""A tenant domain's urlconf with the two-factor pages added (chosen per request by TwoFactorMiddleware)."""

from django.urls import include, path

urlpatterns = [
    path("", include("portal.accounts.urls")),
    path("", include("portal.urls_tenant")),
]
