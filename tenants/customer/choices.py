from django.db import models


class ProtectedPrefixStatusChoices(models.TextChoices):
    PENDING = "pending", "Pending verification"
    VERIFIED = "verified", "Verified"
    REJECTED = "rejected", "Rejected"


class ApplicationProfileChoices(models.TextChoices):
    WEB = "web", "Web"
    API = "api", "API"
    DNS = "dns", "DNS"
    GAMING = "gaming", "Gaming / realtime"
    VOIP = "voip", "VoIP"
    GENERIC = "generic", "Generic"


class AutomationModeChoices(models.TextChoices):
    AUTOMATIC = "automatic", "Automatic"
    MANUAL = "manual", "Manual approval"
    AUTO_UNLESS_REJECTED = "auto_unless_rejected", "Automatic unless rejected in time"


class MitigationActionChoices(models.TextChoices):
    FLOWSPEC = "flowspec", "BGP FlowSpec"
    DIVERSION = "diversion", "Diversion to a scrubbing center"
    RTBH = "rtbh", "Remote triggered black hole"


class LatencyScopeChoices(models.TextChoices):
    CENTER = "center", "Scrubbing center"
    REGION = "region", "Region"
