"""Shared pieces of the REST API: errors always as JSON with a clear message."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.http import Http404
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import ValidationProblem


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus: a ValidationProblem is a 400 naming its field; a missing object is a plain 404."""
    if isinstance(exc, ValidationProblem):
        return Response({"error": exc.message, "field": exc.field}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, ObjectDoesNotExist | Http404):
        return Response({"error": "Not found."}, status=status.HTTP_404_NOT_FOUND)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"error": str(response.data["detail"])}
    elif response is not None:
        response.data = {"error": "Invalid input.", "fields": response.data}
    return response
