"""Migrations apply from an empty database and from the previous release's schema, and the models that moved
between apps (AuditEvent to core, VerifiedPrefix and TenantPolicy to tenants) keep their tables and rows.

Both run on the test database's public schema (where django-tenants keeps the shared apps) inside the test's
transaction: PostgreSQL rolls the schema changes back with everything else.
"""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from core.models import AuditEvent
from tenants.models import TenantPolicy, VerifiedPrefix

pytestmark = pytest.mark.django_db

# The leaf migrations of the apps whose models moved, at the previous release (commit 085a727).
PREVIOUS_RELEASE = {"tenants": "0001_initial", "mitigation": "0003_operator_overrides"}
NEW_APPS = {"core"}
MOVED_TABLES = {"mitigation_auditevent", "mitigation_verifiedprefix", "mitigation_tenantpolicy"}


def leaf_nodes(executor: MigrationExecutor) -> list[tuple[str, str]]:
    return sorted(executor.loader.graph.leaf_nodes())


def previous_release_targets(executor: MigrationExecutor) -> list[tuple[str, str]]:
    """Every app at its leaf except those whose models moved, which are at the previous release's leaf (apps new
    since then are left out)."""
    targets = [(app, name) for app, name in leaf_nodes(executor) if app not in PREVIOUS_RELEASE and app not in NEW_APPS]
    return targets + sorted(PREVIOUS_RELEASE.items())


def public_tables() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row[0] for row in cursor.fetchall()}


def test_every_migration_applies_from_an_empty_database() -> None:
    executor = MigrationExecutor(connection)
    apps_with_migrations = sorted({app for app, _ in leaf_nodes(executor)})
    executor.migrate([(app, None) for app in apps_with_migrations])
    assert not MOVED_TABLES & public_tables()

    executor = MigrationExecutor(connection)
    executor.migrate(leaf_nodes(executor))
    assert public_tables() >= MOVED_TABLES
    assert MigrationExecutor(connection).migration_plan(leaf_nodes(executor)) == []
    event = AuditEvent.objects.create(actor_kind="system", actor="system", action="migrations.check")
    assert AuditEvent.objects.get(pk=event.pk).action == "migrations.check"
    assert not VerifiedPrefix.objects.exists() and not TenantPolicy.objects.exists()


def test_rows_of_the_previous_release_are_read_through_the_moved_models() -> None:
    executor = MigrationExecutor(connection)
    targets = previous_release_targets(executor)
    executor.migrate(targets + [(app, None) for app in sorted(NEW_APPS)])
    old = executor.loader.project_state(targets).apps
    tenant = old.get_model("tenants", "Tenant").objects.create(
        schema_name="oldrelease", name="Old Release", slug="old-release")
    old.get_model("mitigation", "VerifiedPrefix").objects.create(
        tenant_id=tenant.pk, prefix="10.99.0.0/24", tenant_prefix_id=7, verified_by="op", threshold_pps=1000)
    old.get_model("mitigation", "TenantPolicy").objects.create(
        tenant_id=tenant.pk, latency_threshold_ms=35, application_profile="dns", automation_mode="manual",
        approval_window_minutes=5, allowed_actions=["flowspec"], hold_down_minutes=10,
        detection_threshold_bps=10**9, detection_threshold_pps=10**5)
    old_event = old.get_model("mitigation", "AuditEvent").objects.create(
        actor_kind="user", actor="op", tenant_slug="old-release", action="prefix.verify", diff={"prefix": "x"})

    executor = MigrationExecutor(connection)
    # The release that moved the models, and nothing later: later migrations may well change tables.
    moved = [("core", "0001_initial"), ("tenants", "0002_verifiedprefix_tenantpolicy"),
             ("mitigation", "0004_moved_audit_and_tenant_mirrors")]
    plan = executor.migration_plan(moved)
    assert {(migration.app_label, migration.name) for migration, _ in plan} >= set(moved)
    statements = [sql for sql in executor.loader.collect_sql(plan) if not sql.startswith("--")]
    assert statements == [], "moving the models must not touch the tables"
    executor.migrate(leaf_nodes(executor))

    prefix = VerifiedPrefix.objects.get(tenant_id=tenant.pk)
    assert (str(prefix.prefix), prefix.tenant_prefix_id, prefix.threshold_pps) == ("10.99.0.0/24", 7, 1000)
    policy = TenantPolicy.objects.get(tenant_id=tenant.pk)
    assert (policy.latency_threshold_ms, policy.application_profile, policy.allowed_actions) == (35, "dns", ["flowspec"])
    event = AuditEvent.objects.get(pk=old_event.pk)
    assert (event.actor, event.action, event.diff) == ("op", "prefix.verify", {"prefix": "x"})
    # The table kept its append-only trigger and the prefixes their cross-tenant exclusion constraint.
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(reason="rewritten")
    other = old.get_model("tenants", "Tenant").objects.create(schema_name="oldother", name="Other", slug="old-other")
    with pytest.raises(DatabaseError, match="verified_prefix_no_cross_tenant_overlap"), transaction.atomic():
        VerifiedPrefix.objects.create(tenant_id=other.pk, prefix="10.99.0.128/25", tenant_prefix_id=1,
                                      verified_by="op")
