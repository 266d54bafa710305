"""URLs of the SOC console and onboarding, included at the provider's public domain only (portal.urls_public)."""

from django.urls import path

from portal import traffic
from portal.soc import onboarding, views

app_name = "soc"

urlpatterns = [
    path("board/fragment/", views.board_fragment, name="board-fragment"),
    path("traffic.json", traffic.traffic, name="traffic"),
    path("attacks/<int:pk>/", views.attack_detail, name="attack"),
    path("mitigations/<int:pk>/", views.mitigation_detail, name="mitigation"),
    path("mitigations/<int:pk>/approve/", views.mitigation_approve, name="mitigation-approve"),
    path("mitigations/<int:pk>/reject/", views.mitigation_reject, name="mitigation-reject"),
    path("mitigations/<int:pk>/withdraw/", views.mitigation_withdraw, name="mitigation-withdraw"),
    path("mitigations/<int:pk>/escalate/", views.mitigation_escalate, name="mitigation-escalate"),
    path("mitigations/<int:pk>/move/", views.mitigation_move, name="mitigation-move"),
    path("panic/", views.panic_view, name="panic"),
    path("prefixes/", views.prefix_queue, name="prefixes"),
    path("prefixes/<slug:slug>/<int:pk>/verify/", views.prefix_verify, name="prefix-verify"),
    path("prefixes/<slug:slug>/<int:pk>/reject/", views.prefix_reject, name="prefix-reject"),
    path("tenants/<slug:slug>/thresholds/", views.tenant_thresholds, name="tenant-thresholds"),
    path("tenants/<slug:slug>/threshold-bounds/", views.tenant_threshold_bounds, name="tenant-threshold-bounds"),
    path("tenants/<slug:slug>/prefixes/<int:pk>/thresholds/", views.tenant_prefix_thresholds,
         name="tenant-prefix-thresholds"),
    path("inventory/", views.inventory, name="inventory"),
    path("inventory/maintenance/", views.element_maintenance, name="element-maintenance"),
    path("audit/", views.audit_log, name="audit"),
    path("rule-hits/", views.rule_hits, name="rule-hits"),
    path("onboard/", onboarding.onboard, name="onboard"),
]
