"""The control plane in the public schema: what the engine reads across all tenants at once."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone
from netfields import CidrAddressField, NetManager

from mitigation.choices import (
    ActionKindChoices,
    ActionStatusChoices,
    AttackStatusChoices,
    DeploymentStateChoices,
    MitigationLevelChoices,
    MitigationStateChoices,
    VerdictChoices,
)


class NeverBlockPrefix(models.Model):
    """Address space the provider must never block, filter or divert (resolvers, infrastructure, peers)."""

    prefix = CidrAddressField(unique=True)
    reason = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = NetManager()  # type: ignore[django-manager-missing]  # netfields' manager is untyped

    class Meta:
        ordering = ["prefix"]

    def __str__(self) -> str:
        return f"{self.prefix} ({self.reason})"


class ControlSwitch(models.Model):
    """The one row that holds the kill switch. While `panic` is on, the desired network state is empty."""

    panic = models.BooleanField(default=False)
    changed_by = models.CharField(max_length=200, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    changed_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return "panic" if self.panic else "normal"

    @classmethod
    def current(cls) -> ControlSwitch:
        switch, _ = cls.objects.get_or_create(pk=1)
        return switch


class Attack(models.Model):
    """An attack on one target, deduplicated across signals: one active Attack per target.

    A target outside every verified prefix has no tenant: it is recorded as unattributed and never mitigated.
    """

    tenant = models.ForeignKey("tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="attacks")
    target = CidrAddressField()
    vectors = ArrayField(models.CharField(max_length=40), default=list)
    bps = models.BigIntegerField(default=0)
    pps = models.BigIntegerField(default=0)
    peak_bps = models.BigIntegerField(default=0)
    peak_pps = models.BigIntegerField(default=0)
    top_sources = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    detectors = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    status = models.CharField(max_length=10, choices=AttackStatusChoices.choices, default=AttackStatusChoices.ACTIVE)
    started_at = models.DateTimeField(default=timezone.now)
    last_signal_at = models.DateTimeField(default=timezone.now)
    end_signalled_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # The figures planning last saw asked for: a signal within PLANNING_CHANGE of them changes no plan.
    planned_bps = models.BigIntegerField(default=0, db_default=0)
    planned_pps = models.BigIntegerField(default=0, db_default=0)

    objects = NetManager()  # type: ignore[django-manager-missing]  # netfields' manager is untyped

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["target"], condition=models.Q(status="active"), name="attack_one_active_per_target"
            )
        ]

    def __str__(self) -> str:
        return f"{', '.join(self.vectors) or 'attack'} on {self.target}"

    @property
    def unattributed(self) -> bool:
        return self.tenant_id is None


class DetectorReport(models.Model):
    """One detector's latest word on one attack: its figures, vectors and sources, and whether it says it ended.

    An attack seen by several detectors (the flow collector, FastNetMon, a partner's detector) takes its figures
    from the live reports (see mitigation.services.signals.merge_reports), so no detector overwrites another.
    """

    attack = models.ForeignKey("Attack", on_delete=models.CASCADE, related_name="reports")
    detector = models.CharField(max_length=100)
    phase = models.CharField(max_length=10)
    vectors = ArrayField(models.CharField(max_length=40), default=list)
    bps = models.BigIntegerField(default=0)
    pps = models.BigIntegerField(default=0)
    top_sources = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["detector"]
        constraints = [models.UniqueConstraint(fields=["attack", "detector"], name="detector_report_one_per_attack")]

    def __str__(self) -> str:
        return f"{self.detector} on {self.attack_id}: {self.phase}"


class SignalRecord(models.Model):
    """Every signal as received, kept so that none is lost and an attack's history can be replayed."""

    attack = models.ForeignKey(Attack, on_delete=models.CASCADE, related_name="signals")
    received_at = models.DateTimeField(auto_now_add=True)
    phase = models.CharField(max_length=10)
    detector = models.CharField(max_length=100)
    vectors = ArrayField(models.CharField(max_length=40), default=list)
    bps = models.BigIntegerField()
    pps = models.BigIntegerField()
    actor = models.CharField(max_length=200)

    class Meta:
        ordering = ["received_at"]


class Mitigation(models.Model):
    """What Sluice does about one attack, through its lifecycle (see MitigationStateChoices)."""

    attack = models.OneToOneField(Attack, on_delete=models.CASCADE, related_name="mitigation")
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="mitigations")
    state = models.CharField(
        max_length=20, choices=MitigationStateChoices.choices, default=MitigationStateChoices.DETECTED, db_index=True
    )
    level = models.CharField(max_length=10, choices=MitigationLevelChoices.choices, default=MitigationLevelChoices.NONE)
    center = models.ForeignKey(
        "devices.ScrubbingCenter", null=True, blank=True, on_delete=models.SET_NULL, related_name="mitigations"
    )
    reason = models.TextField(blank=True)
    replan = models.BooleanField(
        default=False, db_default=False,
        help_text="Something changed that this plan depends on (the attack, an override, a retired action): the "
                  "next planning run plans it again, with the attacks it shares a diversion prefix with.",
    )
    approval_deadline = models.DateTimeField(null=True, blank=True)
    approved_by = models.CharField(max_length=200, blank=True)
    withdraw_requested_by = models.CharField(max_length=200, blank=True)
    override_center = models.ForeignKey(
        "devices.ScrubbingCenter", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="An operator moved the mitigation to this center; planning keeps it there",
    )
    override_level = models.CharField(
        max_length=10, choices=MitigationLevelChoices.choices, blank=True,
        help_text="An operator escalated the mitigation to this level; planning keeps it there",
    )
    override_by = models.CharField(max_length=200, blank=True)
    hold_down_until = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    level_since = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # The latest verdict (the history is in Verdict), kept here for boards and lists.
    verdict = models.CharField(max_length=12, choices=VerdictChoices.choices, blank=True, db_default="")
    verdict_summary = models.TextField(blank=True, db_default="")
    verdict_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_level_display()} for {self.attack.target} ({self.state})"


class Decision(models.Model):
    """One plan the engine made for a mitigation: inputs and a reason a person can read."""

    mitigation = models.ForeignKey(Mitigation, on_delete=models.CASCADE, related_name="decisions")
    created_at = models.DateTimeField(auto_now_add=True)
    level = models.CharField(max_length=10, choices=MitigationLevelChoices.choices)
    center = models.ForeignKey("devices.ScrubbingCenter", null=True, blank=True, on_delete=models.SET_NULL)
    reason = models.TextField()
    inputs = models.JSONField(default=dict)
    cost = models.FloatField(default=0)
    actor = models.CharField(max_length=200, default="engine")

    class Meta:
        ordering = ["-created_at", "-id"]


class Action(models.Model):
    """One routing change of a mitigation: a FlowSpec rule, a diversion or an RTBH route, and where it goes.

    `spec` is the route as JSON (see mitigation.routes); `route_key` identifies the route itself, so the same route
    planned again is recognised rather than re-announced.
    """

    mitigation = models.ForeignKey(Mitigation, on_delete=models.CASCADE, related_name="actions")
    kind = models.CharField(max_length=10, choices=ActionKindChoices.choices)
    spec = models.JSONField()
    route_key = models.CharField(max_length=64, db_index=True)
    targets = ArrayField(models.CharField(max_length=40), default=list)
    status = models.CharField(max_length=10, choices=ActionStatusChoices.choices, default=ActionStatusChoices.DESIRED)
    reason = models.TextField(blank=True)
    refusal_code = models.CharField(max_length=50, blank=True)
    refusal_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.spec.get('prefix') or self.spec.get('destination')}"


class Deployment(models.Model):
    """The actual state of one action on one network element, as last verified."""

    action = models.ForeignKey(Action, on_delete=models.CASCADE, related_name="deployments")
    element = models.CharField(max_length=120, help_text="speaker:<name> or router:<name>")
    state = models.CharField(max_length=10, choices=DeploymentStateChoices.choices)
    detail = models.TextField(blank=True)
    verified_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["action", "element"], name="deployment_one_per_element")]


class RuleCounterSample(models.Model):
    """One reading of a FlowSpec action's counters on one router, cumulative as the router shows them.

    A router that could not be read has no sample for that moment: a gap, never a zero. Rates are the
    differences between consecutive samples of the same action and element (a drop in a cumulative figure means
    the rule was installed anew, and starts a new run).
    """

    action = models.ForeignKey(Action, on_delete=models.CASCADE, related_name="counter_samples")
    element = models.CharField(max_length=120, help_text="router:<name>")
    at = models.DateTimeField(default=timezone.now)
    packets = models.BigIntegerField(help_text="matched packets since the rule was installed")
    bytes = models.BigIntegerField(help_text="matched bytes since the rule was installed")
    dropped_packets = models.BigIntegerField(default=0)
    dropped_bytes = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["action", "element", "at"], name="counter_action_element_at")]


class CenterPrefixSample(models.Model):
    """A scrubbing center's report on one prefix diverted to it: what arrived, what it dropped, what it returned."""

    center = models.ForeignKey("devices.ScrubbingCenter", on_delete=models.CASCADE, related_name="prefix_samples")
    mitigation = models.ForeignKey(Mitigation, on_delete=models.CASCADE, related_name="center_samples")
    prefix = CidrAddressField()
    at = models.DateTimeField(default=timezone.now)
    received_bps = models.BigIntegerField()
    dropped_bps = models.BigIntegerField()
    clean_bps = models.BigIntegerField()
    received_pps = models.BigIntegerField(default=0)
    dropped_pps = models.BigIntegerField(default=0)
    clean_pps = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["mitigation", "at"], name="center_sample_mitigation_at")]


class Verdict(models.Model):
    """One judgement of whether a mitigation works, with the figures it rests on and a sentence a person reads."""

    mitigation = models.ForeignKey(Mitigation, on_delete=models.CASCADE, related_name="verdicts")
    at = models.DateTimeField(default=timezone.now)
    outcome = models.CharField(max_length=12, choices=VerdictChoices.choices)
    level = models.CharField(max_length=10, choices=MitigationLevelChoices.choices)
    attack_bps = models.BigIntegerField(help_text="attack traffic the collector still sees reaching the target")
    dropped_bps = models.BigIntegerField(help_text="dropped by the mitigation's FlowSpec rules on the routers")
    scrubbed_bps = models.BigIntegerField(help_text="dropped by the scrubbing center for the diverted prefix")
    threshold_bps = models.BigIntegerField()
    summary = models.TextField()
    evidence = models.JSONField(default=dict)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["mitigation", "at"], name="verdict_mitigation_at")]

    def __str__(self) -> str:
        return f"{self.outcome}: {self.summary}"
