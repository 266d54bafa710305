"""API v1 on the provider's public domain."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    # drf-spectacular would describe ROOT_URLCONF (the tenant API); the provider's domain has its own URLs.
    path("schema/", SpectacularAPIView.as_view(urlconf="portal.urls_public"), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("tenants.api.urls")),
    path("", include("devices.api.urls")),
    path("", include("mitigation.api.urls")),
    path("", include("mitigation.api.urls_provider")),
]
