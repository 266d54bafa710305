"""A background check of the process's database pool: how a pool finds connections a server restart broke.

psycopg_pool checks a connection as it lends it and, when it is dead, backs off (1 s, 2 s, 4 s ...) before it
tries the next. After a PostgreSQL restart every idle connection is dead, so a request walked them one backoff at
a time and gave up after the pool timeout (5 s) with the server long back (bench/chaos.py, postgres_restart).
psycopg_pool's documentation suggests calling `check()` periodically for this: it tests every idle connection at
once and replaces the dead ones, so after a restart the next request finds a live one.
"""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger(__name__)
_started = threading.Event()


def watch_pool(every_s: float) -> None:
    """Check this process's idle pooled connections every `every_s` seconds, on a daemon thread (once per process)."""
    if every_s <= 0 or _started.is_set():
        return
    _started.set()

    def run() -> None:
        while True:
            time.sleep(every_s)
            check_idle_connections()

    threading.Thread(target=run, name="db-pool-check", daemon=True).start()


def check_idle_connections() -> None:
    """Test every idle connection of this process's pool and replace the dead ones (nothing without a pool)."""
    from django.db import connections

    pool = getattr(connections["default"], "pool", None)
    if pool is None or pool.closed:
        return
    try:
        pool.check()
    except Exception as error:  # the server is down: the next round tries again
        logger.debug("database pool check failed: %s", error)
