"""URLs of the customer portal, included at a tenant's domain only (portal.urls_tenant)."""

from django.urls import path

from portal import traffic
from portal.customer import notifications, reports, tokens, views

app_name = "customer"

urlpatterns = [
    path("board/fragment/", views.dashboard_fragment, name="board-fragment"),
    path("traffic.json", traffic.traffic, name="traffic"),
    path("mitigations/<int:pk>/", views.mitigation_detail, name="mitigation"),
    path("mitigations/<int:pk>/report.csv", views.mitigation_report, name="mitigation-report"),
    path("mitigations/<int:pk>/report.pdf", reports.mitigation_report_pdf, name="mitigation-report-pdf"),
    path("mitigations/<int:pk>/approve/", views.mitigation_approve, name="mitigation-approve"),
    path("mitigations/<int:pk>/reject/", views.mitigation_reject, name="mitigation-reject"),
    path("mitigations/<int:pk>/withdraw/", views.mitigation_withdraw, name="mitigation-withdraw"),
    path("prefixes/", views.prefixes, name="prefixes"),
    path("prefixes/<int:pk>/thresholds/", views.prefix_thresholds, name="prefix-thresholds"),
    path("profile/", views.profile, name="profile"),
    path("users/", views.users, name="users"),
    path("users/two-factor/", views.two_factor_requirement, name="two-factor-requirement"),
    path("tokens/", tokens.tokens, name="tokens"),
    path("tokens/<int:pk>/revoke/", tokens.token_revoke, name="token-revoke"),
    path("notifications/", notifications.channels, name="notifications"),
    path("notifications/<int:pk>/delete/", notifications.channel_delete, name="notification-delete"),
    path("notifications/<int:pk>/test/", notifications.channel_test, name="notification-test"),
]
