"""Retention: signal records, decisions and center reports older than the retention period are pruned, once a day.

Only history of mitigations that are over is pruned: a live mitigation keeps every decision that explains it. The
scrubbing centers' per-prefix samples are the exception: telemetry, one per prefix every few seconds, they go by age
alone (the closed loop reads only the last `SLUICE_CENTER_REPORT_FRESH_SECONDS` of them). So do the routers' FlowSpec
counter samples (one per rule and router every `SLUICE_COUNTER_POLL_SECONDS`), after `SLUICE_COUNTER_RETENTION_DAYS`;
a mitigation's verdicts stay with it, each one says what the counters showed.
Attacks, mitigations, actions and the audit are kept (the audit is append-only by design).
"""

from __future__ import annotations

import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.actors import ENGINE
from core.audit import record_audit
from mitigation.choices import AttackStatusChoices, MitigationStateChoices
from mitigation.models import CenterPrefixSample, Decision, RuleCounterSample, SignalRecord

OVER = (MitigationStateChoices.ENDED, MitigationStateChoices.FAILED, MitigationStateChoices.REJECTED)


def prune_history(now: datetime.datetime | None = None) -> dict[str, int]:
    """Delete signal records, finished mitigations' decisions and center samples older than `SLUICE_RETENTION_DAYS`."""
    now = now or timezone.now()
    cutoff = now - datetime.timedelta(days=float(settings.SLUICE_RETENTION_DAYS))
    with transaction.atomic():
        signals, _ = SignalRecord.objects.filter(received_at__lt=cutoff).exclude(
            attack__status=AttackStatusChoices.ACTIVE).delete()
        decisions, _ = Decision.objects.filter(created_at__lt=cutoff, mitigation__state__in=OVER).delete()
        center_samples, _ = CenterPrefixSample.objects.filter(at__lt=cutoff).delete()
        counter_cutoff = now - datetime.timedelta(days=float(settings.SLUICE_COUNTER_RETENTION_DAYS))
        counter_samples, _ = RuleCounterSample.objects.filter(at__lt=counter_cutoff).delete()
        pruned = {"signal_records": signals, "decisions": decisions, "center_samples": center_samples,
                  "counter_samples": counter_samples}
        if any(pruned.values()):
            record_audit(ENGINE, "retention.prune", reason=f"older than {settings.SLUICE_RETENTION_DAYS} days",
                         diff=pruned)
    return pruned
