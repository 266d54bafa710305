"""What a request gets when the server cannot serve it: 503 with Retry-After when the database is out of reach.

A request that finds every pooled connection busy (a burst beyond SLUICE_DB_POOL_MAX for longer than
SLUICE_DB_POOL_TIMEOUT_S) or PostgreSQL restarting has lost nothing and may be sent again; a client such as a
detector must be told so, not given a 500. Any other uncaught error is Django's ordinary 500 page.
"""

from __future__ import annotations

import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

RETRY_AFTER_S = 2


def server_error(request: HttpRequest) -> HttpResponse:
    error = sys.exc_info()[1]
    if not isinstance(error, (OperationalError, InterfaceError)):
        return defaults.server_error(request)
    detail = "the service is busy; nothing was changed, send the request again"
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse({"detail": detail}, status=503)
    else:
        response = HttpResponse(f"503 Service Unavailable: {detail}.\n", status=503, content_type="text/plain")
    response["Retry-After"] = str(RETRY_AFTER_S)
    return response
