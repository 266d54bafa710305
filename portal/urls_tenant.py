"""URLs of a tenant's domain: the customer self-service portal and the customer API."""

from django.urls import include, path

from portal import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("api/v1/", include("portal.api_urls_tenant")),
    path("", include("portal.customer.urls")),
]

handler500 = "portal.errors.server_error"
