from django.apps import AppConfig


class CoreConfig(AppConfig):
    """What every app stands on: actors, the audit log, live events, errors, permissions, credentials at rest."""

    name = "core"
    label = "core"
    verbose_name = "Core"
