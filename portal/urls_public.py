"""URLs of the provider's public domain: SOC console, onboarding, Django admin, operator API."""

from django.contrib import admin
from django.urls import include, path

from portal import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("portal.api_urls_public")),
    path("soc/", include("portal.soc.urls")),
]

handler500 = "portal.errors.server_error"
