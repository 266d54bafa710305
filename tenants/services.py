"""Service functions that change tenants, their prefixes and profiles. Each runs in one transaction and audits.

The tenant-side rows (in the tenant's schema) and their public mirrors (the verified-prefix registry and the
routing policy) are always written together, so routing never sees a half-made change.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context, schema_exists

from collector.prefixes import carpet_multiplier
from core.accounts.choices import UserRoleChoices
from core.accounts.models import User
from core.actors import Actor
from core.audit import record_audit
from core.errors import ValidationProblem
from core.events import publish
from tenants.customer.choices import (
    ApplicationProfileChoices,
    AutomationModeChoices,
    MitigationActionChoices,
    ProtectedPrefixStatusChoices,
)
from tenants.customer.models import LatencyOverride, ProtectedPrefix, ServiceProfile
from tenants.models import Domain, Tenant, TenantPolicy, VerifiedPrefix
from tenants.validation import (
    IPNetwork,
    PrefixPolicy,
    check_hostname,
    check_prefix_space,
    check_slug,
    parse_prefix,
    schema_name_for,
)


def prefix_policy(*, allow_bogons: bool = False) -> PrefixPolicy:
    """The prefix policy in force: documentation space by setting, other bogons only by an explicit flag."""
    if allow_bogons and not settings.SLUICE_ALLOW_BOGON_FLAG:
        raise ValidationProblem("allow_bogons", "bogon space cannot be allowed in production")
    return PrefixPolicy(allow_documentation=settings.SLUICE_ALLOW_DOCUMENTATION_PREFIXES, allow_bogons=allow_bogons)


@dataclass(frozen=True)
class ProfileInput:
    """A service profile as onboarding or the portal gives it, validated before anything is written."""

    latency_threshold_ms: int
    application_profile: str = ApplicationProfileChoices.GENERIC
    automation_mode: str = AutomationModeChoices.AUTOMATIC
    approval_window_minutes: int = 5
    allowed_actions: tuple[str, ...] = (MitigationActionChoices.FLOWSPEC, MitigationActionChoices.DIVERSION)
    hold_down_minutes: int = 10
    detection_threshold_bps: int = 1_000_000_000
    detection_threshold_pps: int = 200_000
    latency_overrides: dict[str, int] = field(default_factory=dict)

    def validate(self) -> None:
        if not 1 <= self.latency_threshold_ms <= 1000:
            raise ValidationProblem("latency_ms", "must be between 1 and 1000 ms")
        if self.application_profile not in ApplicationProfileChoices.values:
            raise ValidationProblem(
                "profile", f"{self.application_profile!r} is not one of {', '.join(ApplicationProfileChoices.values)}"
            )
        if self.automation_mode not in AutomationModeChoices.values:
            raise ValidationProblem(
                "automation_mode", f"{self.automation_mode!r} is not one of {', '.join(AutomationModeChoices.values)}"
            )
        unknown = set(self.allowed_actions) - set(MitigationActionChoices.values)
        if unknown or not self.allowed_actions:
            raise ValidationProblem("allowed_actions", f"must be a non-empty subset of {MitigationActionChoices.values}")
        if not 1 <= self.approval_window_minutes <= 240:
            raise ValidationProblem("approval_window_minutes", "must be between 1 and 240")
        if not 0 <= self.hold_down_minutes <= 1440:
            raise ValidationProblem("hold_down_minutes", "must be between 0 and 1440")
        if self.detection_threshold_bps < 1 or self.detection_threshold_pps < 1:
            raise ValidationProblem("detection_threshold", "thresholds must be positive")
        for scope, latency in self.latency_overrides.items():
            kind, _, name = scope.partition(":")
            if kind not in {"center", "region"} or not name:
                raise ValidationProblem("latency_overrides", f"{scope!r} must read center:<slug> or region:<name>")
            if not 1 <= int(latency) <= 1000:
                raise ValidationProblem("latency_overrides", f"{scope}: must be between 1 and 1000 ms")


@dataclass(frozen=True)
class OnboardingResult:
    tenant: Tenant
    admin_username: str
    admin_password: str
    prefixes: list[str]


def _check_no_cross_tenant_overlap(network: IPNetwork, *, tenant: Tenant | None, field: str = "prefix") -> None:
    clash = VerifiedPrefix.objects.filter(prefix__net_overlaps=network).exclude(tenant=tenant).first()
    if clash is not None:
        raise ValidationProblem(field, f"{network} overlaps {clash.prefix}, verified for another tenant")


def onboard_tenant(
    *,
    slug: str,
    name: str,
    domain: str,
    admin_email: str,
    prefixes: Sequence[str],
    profile: ProfileInput,
    verify: bool = False,
    allow_bogons: bool = False,
    acting_user: Actor,
) -> OnboardingResult:
    """Create a tenant with its schema, domain, first admin, prefixes and profile, all or nothing.

    Everything is validated before the first write; the writes (including CREATE SCHEMA and its migrations) run in
    one transaction, so a refusal found late (e.g. by the exclusion constraint) leaves nothing behind.
    """
    policy = prefix_policy(allow_bogons=allow_bogons)
    check_slug(slug)
    domain = domain.strip().lower()
    check_hostname(domain)
    if not name.strip():
        raise ValidationProblem("name", "must not be empty")
    if "@" not in admin_email or admin_email.startswith("@") or admin_email.endswith("@"):
        raise ValidationProblem("admin_email", f"{admin_email!r} is not an email address")
    if not prefixes:
        raise ValidationProblem("prefix", "give at least one --prefix")
    profile.validate()
    networks = _parse_distinct_prefixes(prefixes, policy)
    schema_name = schema_name_for(slug)
    if Tenant.objects.filter(slug=slug).exists() or schema_exists(schema_name):
        raise ValidationProblem("slug", f"{slug!r} is taken")
    if Domain.objects.filter(domain=domain).exists() or domain == settings.SLUICE_PUBLIC_DOMAIN:
        raise ValidationProblem("domain", f"{domain!r} is taken")
    if verify:
        for network in networks:
            _check_no_cross_tenant_overlap(network, tenant=None)

    password = secrets.token_urlsafe(12)
    try:
        with transaction.atomic():
            tenant = Tenant(schema_name=schema_name, slug=slug, name=name.strip())
            tenant.save(verbosity=0)
            Domain.objects.create(domain=domain, tenant=tenant, is_primary=True)
            with schema_context(schema_name):
                User.objects.create_user(
                    username="admin", email=admin_email, password=password, role=UserRoleChoices.ADMIN
                )
                _write_profile(tenant, profile)
                created = [ProtectedPrefix.objects.create(prefix=network) for network in networks]
                if verify:
                    for prefix in created:
                        _mark_verified(tenant, prefix, acting_user=acting_user)
            record_audit(
                acting_user,
                "tenant.onboard",
                tenant_slug=slug,
                obj=tenant,
                diff={"domain": domain, "prefixes": [str(n) for n in networks], "verified": verify},
            )
            publish("tenant.onboarded", {"slug": slug, "name": tenant.name}, tenant_schema=None)
    except IntegrityError as error:
        raise _integrity_problem(error) from None
    finally:
        connection.set_schema_to_public()  # type: ignore[attr-defined]  # django-tenants adds it to the connection
    return OnboardingResult(tenant, "admin", password, [str(n) for n in networks])


def _parse_distinct_prefixes(prefixes: Sequence[str], policy: PrefixPolicy) -> list[IPNetwork]:
    networks: list[IPNetwork] = []
    for text in prefixes:
        network = parse_prefix(text)
        check_prefix_space(network, policy)
        for other in networks:
            if network.version == other.version and network.overlaps(other):
                raise ValidationProblem("prefix", f"{network} overlaps {other} given in the same request")
        networks.append(network)
    return networks


def _integrity_problem(error: IntegrityError) -> ValidationProblem:
    text = str(error)
    if "verified_prefix_no_cross_tenant_overlap" in text:
        return ValidationProblem("prefix", "overlaps a prefix verified for another tenant")
    return ValidationProblem("database", text.splitlines()[0])


def _write_profile(tenant: Tenant, profile: ProfileInput) -> ServiceProfile:
    """Write the tenant's ServiceProfile and its public mirror; the caller holds the transaction and schema."""
    values: dict[str, Any] = {
        "latency_threshold_ms": profile.latency_threshold_ms,
        "application_profile": profile.application_profile,
        "automation_mode": profile.automation_mode,
        "approval_window_minutes": profile.approval_window_minutes,
        "allowed_actions": list(profile.allowed_actions),
        "hold_down_minutes": profile.hold_down_minutes,
        "detection_threshold_bps": profile.detection_threshold_bps,
        "detection_threshold_pps": profile.detection_threshold_pps,
    }
    service_profile = ServiceProfile.objects.first()
    if service_profile is None:
        service_profile = ServiceProfile.objects.create(**values)
    else:
        for key, value in values.items():
            setattr(service_profile, key, value)
        service_profile.save()
    service_profile.latency_overrides.all().delete()
    for scope, latency in profile.latency_overrides.items():
        kind, _, scope_name = scope.partition(":")
        LatencyOverride.objects.create(profile=service_profile, scope_kind=kind, scope=scope_name, latency_ms=latency)
    TenantPolicy.objects.update_or_create(
        tenant=tenant, defaults={**values, "latency_overrides": dict(profile.latency_overrides)}
    )
    return service_profile


def update_service_profile(tenant: Tenant, profile: ProfileInput, *, acting_user: Actor) -> ServiceProfile:
    """Change a tenant's service profile and its public routing mirror together, audited."""
    profile.validate()
    with transaction.atomic(), schema_context(tenant.schema_name):
        before: dict[str, Any] = dict(TenantPolicy.objects.filter(tenant=tenant).values().first() or {})
        service_profile = _write_profile(tenant, profile)
        after: dict[str, Any] = dict(TenantPolicy.objects.filter(tenant=tenant).values().first() or {})
        changes = {
            key: [before.get(key), value]
            for key, value in after.items()
            if key not in {"updated_at", "id"} and before.get(key) != value
        }
        record_audit(acting_user, "profile.update", tenant_slug=tenant.slug, obj=service_profile, diff=changes)
        publish("profile.updated", {"changes": sorted(changes)}, tenant_schema=tenant.schema_name)
    return service_profile


def request_prefix(
    tenant: Tenant, prefix: str, *, description: str = "", acting_user: Actor, allow_bogons: bool = False
) -> ProtectedPrefix:
    """A customer asks to protect a prefix: it waits, pending, until a provider operator verifies it."""
    network = parse_prefix(prefix)
    check_prefix_space(network, prefix_policy(allow_bogons=allow_bogons))
    with transaction.atomic(), schema_context(tenant.schema_name):
        if ProtectedPrefix.objects.filter(prefix__net_overlaps=network).exists():
            raise ValidationProblem("prefix", f"{network} overlaps a prefix this tenant already has")
        created = ProtectedPrefix.objects.create(prefix=network, description=description)
        record_audit(acting_user, "prefix.request", tenant_slug=tenant.slug, obj=created, diff={"prefix": str(network)})
        publish("prefix.requested", {"prefix": str(network)}, tenant_schema=tenant.schema_name)
    return created


def _mark_verified(tenant: Tenant, prefix: ProtectedPrefix, *, acting_user: Actor) -> None:
    network = ipaddress.ip_network(prefix.prefix)
    _check_no_cross_tenant_overlap(network, tenant=tenant)
    prefix.status = ProtectedPrefixStatusChoices.VERIFIED
    prefix.status_reason = ""
    prefix.verified_at = timezone.now()
    prefix.save(update_fields=["status", "status_reason", "verified_at"])
    VerifiedPrefix.objects.create(
        tenant=tenant, prefix=network, tenant_prefix_id=prefix.pk, verified_by=str(acting_user),
        threshold_bps=prefix.threshold_bps, threshold_pps=prefix.threshold_pps,
        prefix_threshold_bps=prefix.prefix_threshold_bps, prefix_threshold_pps=prefix.prefix_threshold_pps,
    )
    record_audit(acting_user, "prefix.verify", tenant_slug=tenant.slug, obj=prefix, diff={"prefix": str(network)})
    publish("prefix.verified", {"prefix": str(network)}, tenant_schema=tenant.schema_name)


def verify_prefix(tenant: Tenant, prefix_id: int, *, acting_user: Actor) -> ProtectedPrefix:
    """A provider operator verifies a customer's prefix: the tenant's row and the public registry change together.

    Refused (ValidationProblem, nothing written) when the prefix overlaps one verified for another tenant; the
    database's exclusion constraint holds the line against a concurrent verification too.
    """
    if not acting_user.is_operator:
        raise ValidationProblem("acting_user", "only a provider operator can verify a prefix")
    try:
        with transaction.atomic(), schema_context(tenant.schema_name):
            prefix = ProtectedPrefix.objects.select_for_update().get(pk=prefix_id)
            if prefix.status == ProtectedPrefixStatusChoices.VERIFIED:
                return prefix
            _mark_verified(tenant, prefix, acting_user=acting_user)
    except IntegrityError as error:
        raise _integrity_problem(error) from None
    return prefix


def reject_prefix(tenant: Tenant, prefix_id: int, *, reason: str, acting_user: Actor) -> ProtectedPrefix:
    """A provider operator rejects a prefix (or withdraws its verification); it leaves the public registry."""
    if not acting_user.is_operator:
        raise ValidationProblem("acting_user", "only a provider operator can reject a prefix")
    with transaction.atomic(), schema_context(tenant.schema_name):
        prefix = ProtectedPrefix.objects.select_for_update().get(pk=prefix_id)
        prefix.status = ProtectedPrefixStatusChoices.REJECTED
        prefix.status_reason = reason
        prefix.save(update_fields=["status", "status_reason"])
        VerifiedPrefix.objects.filter(tenant=tenant, tenant_prefix_id=prefix.pk).delete()
        record_audit(acting_user, "prefix.reject", tenant_slug=tenant.slug, obj=prefix, reason=reason)
        publish("prefix.rejected", {"prefix": str(prefix.prefix), "reason": reason}, tenant_schema=tenant.schema_name)
    return prefix


def set_two_factor_requirement(tenant: Tenant, required: bool, *, acting_user: Actor) -> None:
    """Require (or stop requiring) two-factor sign-in of every user of `tenant`; audited.

    Users without TOTP are held at the enrollment page from their next request; none is signed out.
    """
    with transaction.atomic():
        Tenant.objects.filter(pk=tenant.pk).update(require_two_factor=required)
        tenant.require_two_factor = required
        record_audit(acting_user, "tenant.two_factor_requirement", tenant_slug=tenant.slug, obj=tenant,
                     diff={"require_two_factor": required})


@dataclass(frozen=True)
class ThresholdBounds:
    """The range within which a tenant's users may set host thresholds (operators are not bound by it)."""

    min_bps: int
    max_bps: int
    min_pps: int
    max_pps: int


@dataclass(frozen=True)
class PrefixThresholds:
    """A prefix's detection thresholds, named as its columns: `threshold_*` for each host, `prefix_threshold_*` for
    the prefix as a whole. None leaves one to its default (the profile's, or scaled from the host's)."""

    threshold_bps: int | None = None
    threshold_pps: int | None = None
    prefix_threshold_bps: int | None = None
    prefix_threshold_pps: int | None = None


def threshold_bounds(tenant: Tenant) -> ThresholdBounds:
    """The bounds the provider set for this tenant, the settings' defaults where it set none."""
    return ThresholdBounds(
        min_bps=tenant.threshold_min_bps or int(settings.SLUICE_THRESHOLD_MIN_BPS),
        max_bps=tenant.threshold_max_bps or int(settings.SLUICE_THRESHOLD_MAX_BPS),
        min_pps=tenant.threshold_min_pps or int(settings.SLUICE_THRESHOLD_MIN_PPS),
        max_pps=tenant.threshold_max_pps or int(settings.SLUICE_THRESHOLD_MAX_PPS),
    )


def _check_thresholds(values: PrefixThresholds, bounds: ThresholdBounds | None, network: IPNetwork) -> None:
    """Refuse thresholds that are not positive, a prefix-wide one below the host's, or (for `bounds`) outside them.

    A prefix-wide threshold may reach the host maximum times the prefix's carpet multiplier: it stands for many
    hosts' worth of traffic.
    """
    scale = carpet_multiplier(str(network), float(settings.SLUICE_CARPET_MULTIPLIER_MAX))
    for name, value in dataclasses.asdict(values).items():
        if value is not None and value < 1:
            raise ValidationProblem(name, "a threshold must be a positive number")
    for unit in ("bps", "pps"):
        host, whole = getattr(values, f"threshold_{unit}"), getattr(values, f"prefix_threshold_{unit}")
        if host is not None and whole is not None and whole < host:
            raise ValidationProblem(f"prefix_threshold_{unit}", f"the prefix-wide threshold ({whole} {unit}) cannot "
                                                                f"be below the per-host one ({host} {unit})")
        if bounds is None:
            continue
        low, high = getattr(bounds, f"min_{unit}"), getattr(bounds, f"max_{unit}")
        for name, value, most in ((f"threshold_{unit}", host, high), (f"prefix_threshold_{unit}", whole,
                                                                      int(high * scale))):
            if value is not None and not low <= value <= most:
                raise ValidationProblem(name, f"must be between {low} and {most} {unit} (the bounds your provider "
                                              f"set); ask your provider for a threshold outside them")


def set_prefix_thresholds(
    tenant: Tenant, prefix_id: int, values: PrefixThresholds, *, acting_user: Actor
) -> ProtectedPrefix:
    """Set a prefix's detection thresholds: a customer within its provider's bounds, an operator freely.

    The tenant's row and its public mirror (which the collector reads within seconds) change together; audited,
    with an event to the tenant. Raises ProtectedPrefix.DoesNotExist for a prefix this tenant does not have.
    """
    with transaction.atomic(), schema_context(tenant.schema_name):
        prefix = ProtectedPrefix.objects.select_for_update().get(pk=prefix_id)
        network = ipaddress.ip_network(prefix.prefix)
        _check_thresholds(values, None if acting_user.is_operator else threshold_bounds(tenant), network)
        columns = dataclasses.asdict(values)
        changes = {name: [getattr(prefix, name), value] for name, value in columns.items()
                   if getattr(prefix, name) != value}
        if not changes:
            return prefix
        for name, value in columns.items():
            setattr(prefix, name, value)
        prefix.save(update_fields=list(columns))
        VerifiedPrefix.objects.filter(tenant=tenant, tenant_prefix_id=prefix.pk).update(**columns)
        record_audit(acting_user, "prefix.thresholds", tenant_slug=tenant.slug, obj=prefix, diff=changes)
        publish("prefix.thresholds", {"prefix": str(network), **columns}, tenant_schema=tenant.schema_name)
    return prefix


def set_threshold_bounds(tenant: Tenant, bounds: ThresholdBounds, *, acting_user: Actor) -> ThresholdBounds:
    """A provider operator sets the range within which the tenant's users may set thresholds; audited.

    Thresholds already set outside the new bounds stay as they are (the provider may have set them); the bounds
    apply to the next change a customer makes.
    """
    if not acting_user.is_operator:
        raise ValidationProblem("acting_user", "only a provider operator can set threshold bounds")
    for unit in ("bps", "pps"):
        low, high = getattr(bounds, f"min_{unit}"), getattr(bounds, f"max_{unit}")
        if low < 1:
            raise ValidationProblem(f"min_{unit}", "a bound must be a positive number")
        if high < low:
            raise ValidationProblem(f"max_{unit}", f"the maximum ({high} {unit}) is below the minimum ({low} {unit})")
    columns = {f"threshold_{name}": value for name, value in dataclasses.asdict(bounds).items()}
    with transaction.atomic():
        before = threshold_bounds(tenant)
        Tenant.objects.filter(pk=tenant.pk).update(**columns)
        for name, value in columns.items():
            setattr(tenant, name, value)
        changes = {name: [getattr(before, name), value] for name, value in dataclasses.asdict(bounds).items()
                   if getattr(before, name) != value}
        record_audit(acting_user, "tenant.threshold_bounds", tenant_slug=tenant.slug, obj=tenant, diff=changes)
    return bounds
