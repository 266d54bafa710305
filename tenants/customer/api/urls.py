from django.urls import path
from rest_framework.routers import DefaultRouter

from tenants.customer.api import views

router = DefaultRouter(trailing_slash=True)
router.register("prefixes", views.ProtectedPrefixViewSet)

urlpatterns = [path("profile/", views.ServiceProfileView.as_view(), name="service-profile"), *router.urls]
