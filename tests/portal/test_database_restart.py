"""After PostgreSQL restarts, every idle pooled connection is dead; the periodic pool check replaces them at once,
so the next request gets a live connection instead of walking the dead ones one backoff (1 s, 2 s ...) at a time."""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg
import pytest
from django.db import connection
from psycopg_pool import PoolTimeout

from core.dbpool import check_idle_connections

pytestmark = pytest.mark.django_db


def _kill_idle_connections(pool: Any, count: int) -> None:
    """Leave `count` idle connections in the pool whose server processes are gone (as after a restart)."""
    idle = [pool.getconn(timeout=5) for _ in range(count)]
    pids = [conn.info.backend_pid for conn in idle]
    for conn in idle:
        pool.putconn(conn)
    with pool.connection(timeout=5) as killer:  # one of them: it is killed too, after it has done this
        killer.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid "
                       "WHERE pid <> pg_backend_pid()", [pids])
        with contextlib.suppress(psycopg.OperationalError):
            killer.execute("SELECT pg_terminate_backend(pg_backend_pid())")


def test_dead_idle_connections_are_replaced_before_a_request_needs_one(django_db_blocker: Any) -> None:
    with django_db_blocker.unblock():
        connection.ensure_connection()
        pool = connection.pool
        connection.close()
        assert pool is not None
        _kill_idle_connections(pool, 4)
        with pytest.raises(PoolTimeout):
            pool.getconn(timeout=1.5)  # the pool's own way: a dead one, 1 s of backoff, another dead one ...

        _kill_idle_connections(pool, 4)
        check_idle_connections()
        live = pool.getconn(timeout=1.5)
        try:
            assert live.execute("SELECT 1").fetchone() == (1,)
        finally:
            pool.putconn(live)
