"""A request that finds every pooled database connection busy gets 503 with Retry-After, never a 500."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from psycopg_pool import PoolTimeout

from tests.support.world import World


def _request_in_another_thread(path: str, **headers: Any) -> Any:
    result: dict[str, Any] = {}

    def run() -> None:
        client = Client(HTTP_HOST="localhost", raise_request_exception=False)
        result["response"] = client.post(path, {}, content_type="application/json", **headers)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    return result["response"]


@pytest.mark.parametrize("path", ["/api/v1/signals/", "/accounts/login/"])
def test_a_request_that_cannot_get_a_connection_is_told_to_retry(world: World, django_db_blocker: Any,
                                                                 path: str) -> None:
    with django_db_blocker.unblock():
        connection.ensure_connection()
        pool = connection.pool
        assert pool is not None, "the database settings use a pool"
        borrowed = []
        try:
            while True:  # everything the pool may lend, as a burst of requests would hold it
                borrowed.append(pool.getconn(timeout=0.2))
        except PoolTimeout:
            pass
        try:
            response = _request_in_another_thread(path, HTTP_AUTHORIZATION="Token slc_x_y")
        finally:
            for held in borrowed:
                pool.putconn(held)
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert b"send the request again" in response.content
