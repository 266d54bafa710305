from django.db import models


class AttackStatusChoices(models.TextChoices):
    ACTIVE = "active", "Active"
    ENDED = "ended", "Ended"


class MitigationStateChoices(models.TextChoices):
    """The lifecycle of a mitigation. `LIVE_STATES` are those whose actions the network should carry."""

    DETECTED = "detected", "Detected"
    PLANNED = "planned", "Planned"
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    APPLYING = "applying", "Applying"
    ACTIVE = "active", "Active"
    WITHDRAWING = "withdrawing", "Withdrawing"
    ENDED = "ended", "Ended"
    FAILED = "failed", "Failed"
    REJECTED = "rejected", "Rejected"


class MitigationLevelChoices(models.TextChoices):
    NONE = "none", "None"
    FLOWSPEC = "flowspec", "FlowSpec"
    DIVERSION = "diversion", "Diversion"
    RTBH = "rtbh", "RTBH"


class ActionKindChoices(models.TextChoices):
    FLOWSPEC = "flowspec", "FlowSpec"
    DIVERSION = "diversion", "Diversion"
    RTBH = "rtbh", "RTBH"


class ActionStatusChoices(models.TextChoices):
    """Where an action is: wanted on the network (`DESIRED`), refused by safety, or retired."""

    DESIRED = "desired", "Desired"
    REFUSED = "refused", "Refused"
    RETIRED = "retired", "Retired"


class DeploymentStateChoices(models.TextChoices):
    PRESENT = "present", "Present"
    ABSENT = "absent", "Absent"
    FAILED = "failed", "Failed"


class VerdictChoices(models.TextChoices):
    """Whether a mitigation works, judged from the network's own figures (see mitigation.services.verdicts)."""

    EFFECTIVE = "effective", "Effective"
    PARTIAL = "partial", "Partial"
    INEFFECTIVE = "ineffective", "Ineffective"
    UNKNOWN = "unknown", "Unknown"
