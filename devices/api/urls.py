from rest_framework.routers import DefaultRouter

from devices.api import views

router = DefaultRouter(trailing_slash=True)
router.register("centers", views.ScrubbingCenterViewSet)
router.register("routers", views.RouterViewSet)
router.register("upstreams", views.UpstreamPeerViewSet)
router.register("speakers", views.BgpSpeakerViewSet)
router.register("speaker-neighbors", views.BgpSpeakerNeighborViewSet)
router.register("tenant-latencies", views.TenantLatencyViewSet)
urlpatterns = router.urls
