"""Signing out closes that session's websockets, wherever they are (every web process hears the channel group)."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from core.accounts.sessions import session_group

logger = logging.getLogger(__name__)


@receiver(user_logged_out)
def close_live_views(sender: Any, request: Any, **kwargs: Any) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if not session_key:
        return
    try:
        async_to_sync(get_channel_layer().group_send)(session_group(session_key), {"type": "session.ended"})
    except Exception as error:  # Redis down: each socket's own check closes it within SLUICE_SESSION_CHECK_SECONDS
        logger.warning("could not tell the live views of a signed-out session: %s", error)
