"""Control-plane routes served at the provider's domain only (included by portal/api_urls_public.py)."""

from django.urls import path

from mitigation.api import views

urlpatterns = [path("centers/<str:slug>/load/", views.CenterReportView.as_view(), name="center-report")]
