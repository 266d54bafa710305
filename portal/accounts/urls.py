"""URLs of signing in with a second factor, served at every domain (public and tenants alike)."""

from django.urls import path

from portal.accounts import views

urlpatterns = [
    path("login/verify/", views.verify, name="two-factor-verify"),
    path("account/two-factor/", views.enroll, name="two-factor"),
    path("account/two-factor/disable/", views.disable, name="two-factor-disable"),
]
