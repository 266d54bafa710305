from django.urls import path
from rest_framework.routers import DefaultRouter

from mitigation.api import views

router = DefaultRouter(trailing_slash=True)
router.register("attacks", views.AttackViewSet)
router.register("mitigations", views.MitigationViewSet)
router.register("actions", views.ActionViewSet)
router.register("decisions", views.DecisionViewSet)

urlpatterns = [path("signals/", views.SignalView.as_view(), name="signals"), *router.urls]
