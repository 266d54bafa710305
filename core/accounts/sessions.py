"""Idle sessions: what counts as a person's action, when a session has been idle too long, and its live group.

The idle clock moves on a person's requests only. Pages that refresh themselves (board fragments, traffic graphs)
send `X-Sluice-Background: 1` and leave it alone, so a console left open on a wall signs out after
SLUICE_SESSION_IDLE_SECONDS like any other. Websockets never move it. When a session ends (sign-out, or idle
expiry found by a request or by the websocket's own check), its websockets are told through the channel group
`session_group(session_key)` and close.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from django.conf import settings

LAST_ACTION_KEY = "sluice_last_action"
BACKGROUND_HEADER = "HTTP_X_SLUICE_BACKGROUND"


def idle_limit_s() -> float:
    return float(settings.SLUICE_SESSION_IDLE_SECONDS)


def idle_expired(session: Any, now: float | None = None) -> bool:
    """Whether the session's last action is longer ago than the idle limit (a session with none yet is not)."""
    last = session.get(LAST_ACTION_KEY)
    return last is not None and (now or time.time()) - float(last) > idle_limit_s()


def note_action(session: Any, now: float | None = None) -> None:
    session[LAST_ACTION_KEY] = now or time.time()


def session_group(session_key: str) -> str:
    """The channel group of one session's websockets (a digest: the key itself never leaves the session store)."""
    return "session." + hashlib.sha256(session_key.encode()).hexdigest()[:40]
