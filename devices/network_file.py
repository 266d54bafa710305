"""The network file: the provider's inventory as YAML, parsed, validated, diffed and applied as one change.

`load_network` reads the file, validates every entry with the same serializers as the REST API (types, ranges,
model validators and `clean()` rules) and checks references between entries and to existing rows before anything
is written, builds a plan of creates, updates and deletes against
the database, and applies the whole plan through the inventory's write path (`devices/inventory.py`) in one
transaction with one audit row and one event. Entries are keyed by their
natural names, so loading the same file twice changes nothing. The format is documented in docs/network-file.md.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any, cast

import yaml
from django.db import models, transaction
from django.db.models import Field

from core.actors import Actor
from devices.api.serializers import (
    BgpSpeakerNeighborSerializer,
    BgpSpeakerSerializer,
    InventorySerializer,
    RouterSerializer,
    ScrubbingCenterSerializer,
    TenantLatencySerializer,
    UpstreamPeerSerializer,
)
from devices.inventory import InventoryChange, natural_key, record_inventory_changes
from devices.models import BgpSpeaker, BgpSpeakerNeighbor, Router, ScrubbingCenter, TenantLatency, UpstreamPeer
from tenants.models import Tenant

SECTIONS = ("centers", "routers", "upstreams", "speakers", "latencies")

# The fields each kind of entry takes in the file (the API's serializers validate them; related rows are named by
# their natural keys and resolved against the file and the inventory here).
FILE_FIELDS = {
    "centers": ("slug", "name", "site", "region", "capacity_gbps", "capacity_mpps", "diversion_next_hop_v4",
                "diversion_next_hop_v6", "routing_instance", "route_target", "telemetry_interval_s"),
    "routers": ("name", "vendor", "platform", "role", "center", "mgmt_host", "mgmt_port", "username", "password",
                "flowspec_rule_limit", "enabled", "exporter_addresses", "max_sampling_rate"),
    "upstreams": ("name", "isp", "asn", "router", "center", "neighbor_address", "interface", "capacity_gbps",
                  "blackhole_community", "prepend_community", "no_export_community", "communities",
                  "flowspec_accepted", "flowspec_rule_limit", "telemetry_interval_s"),
    "speakers": ("name", "kind", "router_id", "local_as", "local_address", "center", "enabled", "neighbors"),
    "neighbors": ("peer_address", "peer_as", "families", "passive", "port", "router", "upstream", "description"),
}
# Where the file's default differs from the model's.
FILE_DEFAULTS: dict[str, dict[str, Any]] = {"neighbors": {"families": ["ipv4 unicast", "ipv4 flow"]}}
# Which fields name another entry: field -> section of the entry it names.
REFERENCES = {
    "centers": {}, "routers": {"center": "centers"}, "upstreams": {"router": "routers", "center": "centers"},
    "speakers": {"center": "centers"}, "neighbors": {"router": "routers", "upstream": "upstreams"},
}
MODELS: dict[str, type[models.Model]] = {
    "centers": ScrubbingCenter, "routers": Router, "upstreams": UpstreamPeer, "speakers": BgpSpeaker,
    "neighbors": BgpSpeakerNeighbor, "latencies": TenantLatency,
}
SERIALIZERS: dict[str, type[InventorySerializer]] = {
    "centers": ScrubbingCenterSerializer, "routers": RouterSerializer, "upstreams": UpstreamPeerSerializer,
    "speakers": BgpSpeakerSerializer, "neighbors": BgpSpeakerNeighborSerializer, "latencies": TenantLatencySerializer,
}
KEY_FIELD = {"centers": "slug", "routers": "name", "upstreams": "name", "speakers": "name"}
SINGULAR = {"centers": "center", "routers": "router", "upstreams": "upstream", "speakers": "speaker",
            "neighbors": "speaker neighbor", "latencies": "tenant latency"}


class NetworkFileError(ValueError):
    """The file is refused; `problems` name each entry and field at fault, e.g. `routers[r1].mgmt_port: ...`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class Entry:
    """One validated entry: its section, natural key, plain field values and references by natural key."""

    section: str
    key: str
    values: dict[str, Any]
    refs: dict[str, str | None]


@dataclass
class Change:
    """One create, update or delete of the plan, with (old, new) per changed field for display and audit."""

    action: str
    section: str
    key: str
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def as_inventory_change(self) -> InventoryChange:
        return InventoryChange(self.action, SINGULAR[self.section], self.key, self.fields)

    def describe(self) -> str:
        return self.as_inventory_change().describe()


@dataclass
class Plan:
    """What loading the file would do; empty when the database already matches it."""

    changes: list[Change]
    entries: dict[str, dict[str, Entry]]

    def lines(self) -> list[str]:
        return [change.describe() for change in self.changes] or ["no changes"]


class _Reader:
    """Validates the file's entries with the inventory's serializers and collects every problem at once."""

    def __init__(self, environ: dict[str, str]) -> None:
        self.problems: list[str] = []
        self.environ = environ

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def report(self, errors: Any, where: str) -> None:
        """Serializer errors as `where.field: message` lines (nested errors keep their path)."""
        if isinstance(errors, dict):
            for name, detail in errors.items():
                self.report(detail, where if name == "non_field_errors" else f"{where}.{name}")
        elif isinstance(errors, list) and any(isinstance(item, dict | list) for item in errors):
            for item in errors:
                self.report(item, where)
        elif isinstance(errors, list):
            self.fail(where, "; ".join(str(item) for item in errors))
        else:
            self.fail(where, str(errors))

    def entry(self, section: str, raw: object, where: str, row: models.Model | None = None
              ) -> tuple[dict[str, Any], dict[str, str | None]] | None:
        """The entry's field values (defaults filled in) and its references, or None when it is refused."""
        if not isinstance(raw, dict):
            self.fail(where, "must be a mapping of field: value")
            return None
        refs: dict[str, str | None] = {}
        valid = True
        for name in REFERENCES[section]:
            value = raw.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, str | int)):
                self.fail(f"{where}.{name}", f"must name a {SINGULAR[REFERENCES[section][name]]}")
                valid = False
            refs[name] = None if value is None else str(value).strip()
        data = {name: value for name, value in raw.items() if name not in REFERENCES[section] and name != "neighbors"}
        if section == "routers" and isinstance(data.get("password"), str):
            data["password"] = self.secret(data["password"], f"{where}.password")
        serializer = SERIALIZERS[section](instance=row, data=data, context={
            "file_fields": FILE_FIELDS[section], "refs_elsewhere": True})
        if not serializer.is_valid():
            self.report(serializer.errors, where)
            return None
        if not valid:
            return None
        return _with_defaults(section, serializer.validated_data), refs

    def secret(self, value: str, where: str) -> str:
        """A literal credential, or `env:NAME` read from the environment (so files can be committed)."""
        if not value.startswith("env:"):
            return value
        name = value[4:]
        if name not in self.environ:
            self.fail(where, f"environment variable {name} is not set")
            return ""
        return self.environ[name]


def _with_defaults(section: str, validated: dict[str, Any]) -> dict[str, Any]:
    """Every field the file manages, omitted ones at their default: removing a line resets the field."""
    model = MODELS[section]
    values: dict[str, Any] = {}
    for name in FILE_FIELDS[section]:
        if name in REFERENCES[section] or name == "neighbors":
            continue
        if name in validated:
            values[name] = validated[name]
        elif name in FILE_DEFAULTS.get(section, {}):
            values[name] = copy.deepcopy(FILE_DEFAULTS[section][name])
        else:
            values[name] = cast("Field[Any, Any]", model._meta.get_field(name)).get_default()
    return values


def _keyed_entries(reader: _Reader, data: dict[str, Any], section: str,
                   existing: dict[str, models.Model]) -> dict[str, tuple[dict[str, Any], dict[str, str | None], Any]]:
    raw_entries = data.get(section) or []
    if not isinstance(raw_entries, list):
        reader.fail(section, "must be a list of entries")
        return {}
    key_field = KEY_FIELD[section]
    parsed: dict[str, tuple[dict[str, Any], dict[str, str | None], Any]] = {}
    for index, raw in enumerate(raw_entries):
        key = raw.get(key_field) if isinstance(raw, dict) else None
        where = f"{section}[{key}]" if isinstance(key, str | int) and not isinstance(key, bool) else f"{section}[#{index + 1}]"
        if str(key) in parsed:
            reader.fail(f"{where}.{key_field}", f"{key!r} appears twice")
            continue
        checked = reader.entry(section, raw, where, existing.get(str(key)) if key is not None else None)
        if checked is not None:
            values, refs = checked
            parsed[str(values[key_field])] = (values, refs, raw.get("neighbors", []) if isinstance(raw, dict) else [])
    return parsed


def parse_network_file(text: str, *, environ: dict[str, str] | None = None) -> dict[str, dict[str, Entry]]:
    """Parse and validate the YAML text; return the entries per section, or raise NetworkFileError.

    Checks are complete before anything is returned: every problem of the file is reported at once. References
    to other entries are checked against the file and the database by `plan_inventory_changes`.
    """
    reader = _Reader(dict(os.environ) if environ is None else environ)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise NetworkFileError([f"file: not valid YAML: {error}"]) from error
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise NetworkFileError(["file: must be a mapping with sections " + ", ".join(SECTIONS)])
    for name in data:
        if name not in SECTIONS:
            reader.fail(str(name), f"unknown section (expected one of {', '.join(SECTIONS)})")
    existing = _existing()
    entries: dict[str, dict[str, Entry]] = {section: {} for section in (*SECTIONS, "neighbors")}
    for section in ("centers", "routers", "upstreams", "speakers"):
        for key, (values, refs, neighbors) in _keyed_entries(reader, data, section, existing[section]).items():
            where = f"{section}[{key}]"
            entries[section][key] = Entry(section, key, values, refs)
            if section != "speakers":
                continue
            for neighbor_key, (neighbor, neighbor_refs) in _neighbors(reader, neighbors, where).items():
                full_key = f"{key}/{neighbor_key}"
                entries["neighbors"][full_key] = Entry("neighbors", full_key, neighbor,
                                                       {"speaker": key, **neighbor_refs})
    _latencies(reader, data.get("latencies"), entries)
    if reader.problems:
        raise NetworkFileError(reader.problems)
    return entries


def _neighbors(reader: _Reader, raw: object, where: str
               ) -> dict[str, tuple[dict[str, Any], dict[str, str | None]]]:
    if not isinstance(raw, list):
        reader.fail(f"{where}.neighbors", "must be a list of entries")
        return {}
    parsed: dict[str, tuple[dict[str, Any], dict[str, str | None]]] = {}
    for index, item in enumerate(raw):
        address = item.get("peer_address") if isinstance(item, dict) else None
        item_where = f"{where}.neighbors[{address or f'#{index + 1}'}]"
        if address is not None and str(address) in parsed:
            reader.fail(f"{item_where}.peer_address", f"{address!r} appears twice")
            continue
        checked = reader.entry("neighbors", item, item_where)
        if checked is not None:
            parsed[str(checked[0]["peer_address"])] = checked
    return parsed


def _latencies(reader: _Reader, raw: object, entries: dict[str, dict[str, Entry]]) -> None:
    """`latencies: {tenant-slug: {center-slug: ms}}`; each tenant listed gets exactly these measurements."""
    if raw is None:
        return
    if not isinstance(raw, dict):
        reader.fail("latencies", "must be a mapping of tenant slug to {center slug: milliseconds}")
        return
    for tenant, centers in raw.items():
        if not isinstance(centers, dict):
            reader.fail(f"latencies[{tenant}]", "must be a mapping of center slug to milliseconds")
            continue
        for center, latency in centers.items():
            serializer = TenantLatencySerializer(data={"latency_ms": latency}, context={"refs_elsewhere": True})
            if not serializer.is_valid():
                reader.report(serializer.errors.get("latency_ms", serializer.errors), f"latencies[{tenant}].{center}")
                continue
            key = f"{tenant}/{center}"
            entries["latencies"][key] = Entry("latencies", key, {"latency_ms": serializer.validated_data["latency_ms"]},
                                              {"tenant": str(tenant), "center": str(center)})


def _existing() -> dict[str, dict[str, models.Model]]:
    """Every inventory row by natural key (one query per section), references preloaded for diffing."""
    return {
        "centers": {row.slug: row for row in ScrubbingCenter.objects.all()},
        "routers": {row.name: row for row in Router.objects.select_related("center")},
        "upstreams": {row.name: row for row in UpstreamPeer.objects.select_related("router", "center")},
        "speakers": {row.name: row for row in BgpSpeaker.objects.select_related("center")},
        "neighbors": {f"{row.speaker.name}/{row.peer_address}": row
                      for row in BgpSpeakerNeighbor.objects.select_related("speaker", "router", "upstream")},
        "latencies": {f"{row.tenant.slug}/{row.center.slug}": row
                      for row in TenantLatency.objects.select_related("tenant", "center")},
    }


def _same(old: Any, new: Any) -> bool:
    if isinstance(old, list) and isinstance(new, list):
        return list(old) == list(new)
    if isinstance(old, float | int) and isinstance(new, float | int) and not isinstance(old, bool):
        return float(old) == float(new)
    return bool(old == new)


def _field_changes(row: models.Model | None, entry: Entry) -> dict[str, tuple[Any, Any]]:
    changes: dict[str, tuple[Any, Any]] = {}
    for name, new in entry.values.items():
        old = getattr(row, name) if row is not None else None
        if row is None or not _same(old, new):
            changes[name] = (old, new)
    for name, new_key in entry.refs.items():
        old_key = natural_key(getattr(row, name)) if row is not None else None
        if row is None or old_key != new_key:
            changes[name] = (old_key, new_key)
    if row is None:
        changes = {name: change for name, change in changes.items() if change[1] not in (None, "", [], {})}
    return changes


ORDER = ("centers", "routers", "upstreams", "speakers", "neighbors", "latencies")


def plan_inventory_changes(entries: dict[str, dict[str, Entry]], *, prune: bool = False) -> Plan:
    """Compare the file with the database: check references, then list creates, updates and deletes.

    A speaker's neighbors and a listed tenant's latencies are owned by their entry, so the ones missing from the
    file are deleted; top-level rows missing from the file are deleted only with `prune`.
    """
    existing = _existing()
    tenants = {tenant.slug: tenant for tenant in Tenant.objects.exclude(schema_name="public")}
    deleted: dict[str, set[str]] = {section: set() for section in ORDER}
    for section in ORDER:
        for key in existing[section]:
            if key in entries[section]:
                continue
            owner = key.split("/", 1)[0]
            owned = (section == "neighbors" and owner in entries["speakers"]) or (
                section == "latencies" and owner in {entry.refs["tenant"] for entry in entries["latencies"].values()})
            if prune or owned:
                deleted[section].add(key)
    problems = _reference_problems(entries, existing, deleted, tenants)
    if problems:
        raise NetworkFileError(problems)
    changes: list[Change] = []
    for section in ORDER:
        for key, entry in entries[section].items():
            row = existing[section].get(key)
            fields = _field_changes(row, entry)
            if row is None:
                changes.append(Change("create", section, key, fields))
            elif fields:
                changes.append(Change("update", section, key, fields))
    for section in reversed(ORDER):
        changes.extend(Change("delete", section, key) for key in sorted(deleted[section]))
    return Plan(changes, entries)


def _where(entry: Entry, name: str) -> str:
    if entry.section == "neighbors":
        speaker, address = entry.key.split("/", 1)
        return f"speakers[{speaker}].neighbors[{address}].{name}"
    if entry.section == "latencies":
        tenant, center = entry.key.split("/", 1)
        return f"latencies[{tenant}]" if name == "tenant" else f"latencies[{tenant}].{center}"
    return f"{entry.section}[{entry.key}].{name}"


def _reference_problems(entries: dict[str, dict[str, Entry]], existing: dict[str, dict[str, models.Model]],
                        deleted: dict[str, set[str]], tenants: dict[str, Tenant]) -> list[str]:
    problems: list[str] = []
    for section in ORDER:
        targets = dict(REFERENCES.get(section, {}))
        if section == "neighbors":
            targets["speaker"] = "speakers"
        if section == "latencies":
            targets = {"center": "centers"}
        for entry in entries[section].values():
            for name, target in targets.items():
                key = entry.refs.get(name)
                if key is None:
                    continue
                known = key in entries[target] or (key in existing[target] and key not in deleted[target])
                if not known:
                    problems.append(f"{_where(entry, name)}: no {SINGULAR[target]} {key!r} in the file or the inventory")
            if section == "latencies" and entry.refs["tenant"] not in tenants:
                problems.append(f"{_where(entry, 'tenant')}: no tenant {entry.refs['tenant']!r}")
    for key in deleted["routers"] | deleted["centers"]:
        section = "routers" if key in deleted["routers"] else "centers"
        users = [f"upstreams[{entry.key}]" for entry in entries["upstreams"].values()
                 if entry.refs.get(SINGULAR[section]) == key]
        if users:
            problems.append(f"{section}[{key}]: would be deleted but {', '.join(users)} still uses it")
    return problems


def apply_plan(plan: Plan, *, acting_user: Actor, source: str = "") -> int:
    """Write the plan in one transaction with one audit row holding the whole diff; returns the changes made.

    Credentials are diffed as masks only. Nothing is written when the plan is empty.
    """
    if not plan.changes:
        return 0
    with transaction.atomic():
        rows = _existing()
        tenants = {tenant.slug: tenant for tenant in Tenant.objects.all()}
        for change in plan.changes:
            if change.action == "delete":
                rows[change.section].pop(change.key).delete()
                continue
            entry = plan.entries[change.section][change.key]
            row = rows[change.section].get(change.key) or MODELS[change.section]()
            for name, value in entry.values.items():
                setattr(row, name, value)
            for name, key in entry.refs.items():
                setattr(row, name, _resolve(change.section, name, key, rows, tenants))
            row.save()
            rows[change.section][change.key] = row
        record_inventory_changes([change.as_inventory_change() for change in plan.changes], acting_user=acting_user,
                                 action="network.load", reason=f"load_network {source}".strip())
    return len(plan.changes)


def _resolve(section: str, name: str, key: str | None, rows: dict[str, dict[str, models.Model]],
             tenants: dict[str, Tenant]) -> models.Model | None:
    if key is None:
        return None
    if section == "latencies" and name == "tenant":
        return tenants[key]
    target = {"speaker": "speakers"}.get(name) or REFERENCES.get(section, {}).get(name) or "centers"
    return rows[target][key]


def load_network(text: str, *, acting_user: Actor, dry_run: bool = False, prune: bool = False,
                 source: str = "", environ: dict[str, str] | None = None) -> Plan:
    """Validate, plan and (unless `dry_run`) apply a network file; raises NetworkFileError and changes nothing."""
    plan = plan_inventory_changes(parse_network_file(text, environ=environ), prune=prune)
    if not dry_run:
        apply_plan(plan, acting_user=acting_user, source=source)
    return plan


