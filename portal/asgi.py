"""ASGI entry point: Django over HTTP (tenants routed by django-tenants) and Channels websockets."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
django_asgi_app = get_asgi_application()

from django.conf import settings  # noqa: E402

from core.dbpool import watch_pool  # noqa: E402

watch_pool(settings.SLUICE_DB_POOL_CHECK_SECONDS)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from portal.middleware import TenantWebsocketMiddleware  # noqa: E402
from portal.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(TenantWebsocketMiddleware(URLRouter(websocket_urlpatterns))),
    }
)
