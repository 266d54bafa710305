from rest_framework.routers import DefaultRouter

from tenants.api import views

router = DefaultRouter(trailing_slash=True)
router.register("tenants", views.TenantViewSet)
urlpatterns = router.urls
