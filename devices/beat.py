"""Beat entries of the inventory, merged into CELERY_BEAT_SCHEDULE by the settings."""

from __future__ import annotations

from typing import Any

# Polls every 30 s, the default telemetry interval: data older than its interval is stale, so polling at the
# same period keeps fresh routers fresh. Expiring unrun polls avoids a pile-up when the workers fall behind.
BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "devices.poll_all_telemetry": {
        "task": "devices.tasks.poll_all_telemetry",
        "schedule": 30.0,
        "options": {"queue": "telemetry", "expires": 25},
    },
}
