"""The one write path of the inventory: every writer (the network file, the REST API, the admin) ends here.

Validation is shared too: the serializers in `devices/api/serializers.py` (model validators, `clean()` rules and
one wording of errors) check what the file and the API send. This module turns a validated change into rows, one
audit row holding the change's diff (credentials masked), and one live event, in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import models, transaction

from core.actors import Actor
from core.audit import record_audit
from core.crypto import MASK
from core.events import publish
from devices.models import BgpSpeaker, BgpSpeakerNeighbor, Router, ScrubbingCenter, TenantLatency, UpstreamPeer

SECRET_FIELDS = frozenset({"password"})
KINDS: dict[type[models.Model], str] = {
    ScrubbingCenter: "center", Router: "router", UpstreamPeer: "upstream", BgpSpeaker: "speaker",
    BgpSpeakerNeighbor: "speaker neighbor", TenantLatency: "tenant latency",
}
# What a person reads in a diff for each field; telemetry written by pollers is not the inventory's.
POLLED_FIELDS = frozenset({"load_gbps", "load_mpps", "load_updated_at", "last_seen_at", "utilisation",
                           "session_state", "telemetry_updated_at", "telemetry_sample"})


def show(name: str, value: Any) -> str:
    """A field value as the audit and the file's plan print it; credentials only ever as a mask."""
    if name in SECRET_FIELDS:
        return MASK if value else "''"
    return repr(value)


@dataclass
class InventoryChange:
    """One create, update or delete of an inventory row, with (old, new) per changed field."""

    action: str
    kind: str
    key: str
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def describe(self) -> str:
        head = f"{self.action} {self.kind} {self.key}"
        if self.action == "delete" or not self.fields:
            return head
        if self.action == "create":
            return head + ": " + ", ".join(f"{name}={show(name, new)}" for name, (_, new) in self.fields.items())
        return head + ": " + ", ".join(
            f"{name} {show(name, old)} -> {show(name, new)}" for name, (old, new) in self.fields.items())

    def as_audit(self) -> dict[str, Any]:
        return {"action": self.action, "kind": self.kind, "key": self.key,
                "fields": {name: [show(name, old), show(name, new)] for name, (old, new) in self.fields.items()}}


def natural_key(row: models.Model | None) -> str | None:
    """How people and the network file name a row: slug, name, or speaker/address and tenant/center pairs."""
    if row is None:
        return None
    if isinstance(row, BgpSpeakerNeighbor):
        return f"{row.speaker.name}/{row.peer_address}"
    if isinstance(row, TenantLatency):
        return f"{row.tenant.slug}/{row.center.slug}"
    for attribute in ("slug", "name"):
        value = getattr(row, attribute, None)
        if isinstance(value, str):
            return value
    return str(row.pk)


def row_values(row: models.Model) -> dict[str, Any]:
    """The row's inventory fields as a diff compares them: plain values, related rows by natural key."""
    values: dict[str, Any] = {}
    for model_field in row._meta.concrete_fields:
        if model_field.primary_key or model_field.name in POLLED_FIELDS:
            continue
        if model_field.is_relation:
            values[model_field.name] = natural_key(getattr(row, model_field.name))
        else:
            values[model_field.name] = getattr(row, model_field.attname)
    return values


def diff_values(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {name: (old.get(name), value) for name, value in new.items() if old.get(name) != value}


def record_inventory_changes(changes: Iterable[InventoryChange], *, acting_user: Actor, action: str,
                             reason: str) -> int:
    """One audit row with the whole diff and one `inventory.changed` event (after commit); returns the count.

    Call inside the transaction that wrote the rows, so the audit exists exactly when the change does.
    """
    listed = [change.as_audit() for change in changes]
    if not listed:
        return 0
    record_audit(acting_user, action, reason=reason, diff={"changes": listed})
    publish("inventory.changed", {"changes": [{key: change[key] for key in ("action", "kind", "key")}
                                              for change in listed]}, tenant_schema=None)
    return len(listed)


def save_row(row: models.Model, *, acting_user: Actor, reason: str, before: dict[str, Any] | None = None) -> None:
    """Create or update one validated row, with its audit row and event (the API's and the admin's writes)."""
    with transaction.atomic():
        created = row.pk is None
        row.save()
        fields = diff_values(before or {}, row_values(row))
        if not created and not fields:
            return
        if created:
            fields = {name: change for name, change in fields.items() if change[1] not in (None, "", [], {})}
        change = InventoryChange("create" if created else "update", KINDS[type(row)], natural_key(row) or "", fields)
        record_inventory_changes([change], acting_user=acting_user, action=f"inventory.{change.action}",
                                 reason=reason)


def delete_row(row: models.Model, *, acting_user: Actor, reason: str) -> None:
    """Delete one row with its audit row and event."""
    with transaction.atomic():
        change = InventoryChange("delete", KINDS[type(row)], natural_key(row) or "")
        row.delete()
        record_inventory_changes([change], acting_user=acting_user, action="inventory.delete", reason=reason)
