"""The network file: the provider's inventory as YAML, parsed, validated, diffed and applied as one change.

`load_network` reads the file, validates every entry (types, ranges, model validators, references between
entries and to existing rows) before anything is written, builds a plan of creates, updates and deletes against
the database, and applies the whole plan in one transaction with one audit row. Entries are keyed by their
natural names, so loading the same file twice changes nothing. The format is documented in docs/network-file.md.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.db import models, transaction

from devices.crypto import MASK
from devices.models import (
    BgpSpeaker,
    BgpSpeakerNeighbor,
    Router,
    ScrubbingCenter,
    TenantLatency,
    UpstreamPeer,
    validate_asn_nn,
)
from mitigation.audit import record_audit
from portal.accounts.actors import Actor
from tenants.models import Tenant

REQUIRED = object()
SECTIONS = ("centers", "routers", "upstreams", "speakers", "latencies")
SECRET_FIELDS = frozenset({"password"})


@dataclass(frozen=True)
class Spec:
    """How one field of an entry is written in the file: its Python type, default and inclusive range."""

    kind: type | tuple[type, ...]
    default: Any = REQUIRED
    low: float | None = None
    high: float | None = None
    nullable: bool = False


def _text(default: Any = REQUIRED, *, nullable: bool = False) -> Spec:
    return Spec(str, default, nullable=nullable)


def _int(default: Any = REQUIRED, low: int | None = None, high: int | None = None) -> Spec:
    return Spec(int, default, low, high)


def _num(default: Any = REQUIRED, low: float | None = 0.0, high: float | None = None) -> Spec:
    return Spec((int, float), default, low, high)


def _bool(default: Any = REQUIRED) -> Spec:
    return Spec(bool, default)


ASN = (1, 4_294_967_295)
PORT = (1, 65535)
INTERVAL = (1, 86_400)

CENTER_FIELDS = {
    "slug": _text(), "name": _text(), "site": _text(""), "region": _text(""),
    "capacity_gbps": _num(), "capacity_mpps": _num(),
    "diversion_next_hop_v4": _text(None, nullable=True), "diversion_next_hop_v6": _text(None, nullable=True),
    "routing_instance": _text(""), "route_target": _text(""), "telemetry_interval_s": _int(30, *INTERVAL),
}
ROUTER_FIELDS = {
    "name": _text(), "vendor": _text(), "platform": _text(), "role": _text("edge"), "center": _text(None, nullable=True),
    "mgmt_host": _text(), "mgmt_port": _int(830, *PORT), "username": _text(), "password": _text(""),
    "flowspec_rule_limit": _int(8000, 0, 1_000_000), "enabled": _bool(True),
    "exporter_addresses": Spec(list, []), "max_sampling_rate": _int(65535, 1, 4_294_967_295),
}
UPSTREAM_FIELDS = {
    "name": _text(), "isp": _text(), "asn": _int(REQUIRED, *ASN), "router": _text(), "center": _text(),
    "neighbor_address": _text(), "interface": _text(""), "capacity_gbps": _num(),
    "blackhole_community": _text(""), "prepend_community": _text(""), "no_export_community": _text(""),
    "communities": Spec(dict, {}), "flowspec_accepted": _bool(False), "flowspec_rule_limit": _int(0, 0, 1_000_000),
    "telemetry_interval_s": _int(30, *INTERVAL),
}
SPEAKER_FIELDS = {
    "name": _text(), "kind": _text("exabgp"), "router_id": _text(), "local_as": _int(REQUIRED, *ASN),
    "local_address": _text(), "center": _text(None, nullable=True), "enabled": _bool(True),
    "neighbors": Spec(list, []),
}
NEIGHBOR_FIELDS = {
    "peer_address": _text(), "peer_as": _int(REQUIRED, *ASN), "families": Spec(list, ["ipv4 unicast", "ipv4 flow"]),
    "passive": _bool(False), "port": _int(179, *PORT), "router": _text(None, nullable=True),
    "upstream": _text(None, nullable=True), "description": _text(""),
}
# Which fields name another entry: field -> section of the entry it names.
REFERENCES = {
    "centers": {}, "routers": {"center": "centers"}, "upstreams": {"router": "routers", "center": "centers"},
    "speakers": {"center": "centers"}, "neighbors": {"router": "routers", "upstream": "upstreams"},
}
MODELS: dict[str, type[models.Model]] = {
    "centers": ScrubbingCenter, "routers": Router, "upstreams": UpstreamPeer, "speakers": BgpSpeaker,
    "neighbors": BgpSpeakerNeighbor, "latencies": TenantLatency,
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

    def describe(self) -> str:
        head = f"{self.action} {SINGULAR[self.section]} {self.key}"
        if self.action == "delete" or not self.fields:
            return head
        if self.action == "create":
            return head + ": " + ", ".join(f"{name}={_show(name, new)}" for name, (_, new) in self.fields.items())
        return head + ": " + ", ".join(
            f"{name} {_show(name, old)} -> {_show(name, new)}" for name, (old, new) in self.fields.items())

    def as_audit(self) -> dict[str, Any]:
        return {"action": self.action, "kind": SINGULAR[self.section], "key": self.key,
                "fields": {name: [_show(name, old), _show(name, new)] for name, (old, new) in self.fields.items()}}


def _show(name: str, value: Any) -> str:
    if name in SECRET_FIELDS:
        return MASK if value else "''"
    return repr(value)


@dataclass
class Plan:
    """What loading the file would do; empty when the database already matches it."""

    changes: list[Change]
    entries: dict[str, dict[str, Entry]]

    def lines(self) -> list[str]:
        return [change.describe() for change in self.changes] or ["no changes"]


class _Reader:
    """Checks the raw YAML entries of one section and collects every problem instead of stopping at the first."""

    def __init__(self, environ: dict[str, str]) -> None:
        self.problems: list[str] = []
        self.environ = environ

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def fields(self, raw: object, specs: dict[str, Spec], where: str) -> dict[str, Any] | None:
        if not isinstance(raw, dict):
            self.fail(where, "must be a mapping of field: value")
            return None
        values: dict[str, Any] = {}
        for name in raw:
            if name not in specs:
                self.fail(f"{where}.{name}", f"unknown field (expected one of {', '.join(specs)})")
        for name, spec in specs.items():
            if name not in raw:
                if spec.default is REQUIRED:
                    self.fail(f"{where}.{name}", "is required")
                else:
                    values[name] = _copy(spec.default)
                continue
            value = self.value(raw[name], spec, f"{where}.{name}")
            if value is not _INVALID:
                values[name] = value
        return values

    def value(self, value: Any, spec: Spec, where: str) -> Any:
        if value is None and spec.nullable:
            return None
        if isinstance(value, bool) and spec.kind is not bool:
            self.fail(where, f"must be a {_type_name(spec.kind)}, not a boolean")
            return _INVALID
        if spec.kind is str and isinstance(value, int | float):
            value = str(value)
        if not isinstance(value, spec.kind):
            self.fail(where, f"must be a {_type_name(spec.kind)}")
            return _INVALID
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(where, "must be a finite number")
            return _INVALID
        if spec.low is not None and spec.high is not None and not spec.low <= value <= spec.high:
            self.fail(where, f"must be {_bound(spec.low)}..{_bound(spec.high)}")
            return _INVALID
        if spec.low is not None and spec.high is None and value < spec.low:
            self.fail(where, f"must be >= {_bound(spec.low)}")
            return _INVALID
        if isinstance(value, str):
            value = value.strip()
        if isinstance(value, float) or spec.kind == (int, float):
            value = float(value)
        return value

    def secret(self, value: str, where: str) -> str:
        """A literal credential, or `env:NAME` read from the environment (so files can be committed)."""
        if not value.startswith("env:"):
            return value
        name = value[4:]
        if name not in self.environ:
            self.fail(where, f"environment variable {name} is not set")
            return ""
        return self.environ[name]


class _Invalid:
    pass


_INVALID = _Invalid()


def _copy(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else list(value) if isinstance(value, list) else value


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "string", int: "whole number", bool: "boolean", dict: "mapping", list: "list"}
    return "number" if isinstance(kind, tuple) else names.get(kind, kind.__name__)


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _keyed_entries(reader: _Reader, data: dict[str, Any], section: str, specs: dict[str, Spec],
                   key_field: str) -> dict[str, dict[str, Any]]:
    raw_entries = data.get(section) or []
    if not isinstance(raw_entries, list):
        reader.fail(section, "must be a list of entries")
        return {}
    parsed: dict[str, dict[str, Any]] = {}
    for index, raw in enumerate(raw_entries):
        key = raw.get(key_field) if isinstance(raw, dict) else None
        where = f"{section}[{key}]" if isinstance(key, str | int) and not isinstance(key, bool) else f"{section}[#{index + 1}]"
        if str(key) in parsed:
            reader.fail(f"{where}.{key_field}", f"{key!r} appears twice")
            continue
        values = reader.fields(raw, specs, where)
        if values is not None and key_field in values:
            parsed[str(values[key_field])] = values
    return parsed


def _model_problems(reader: _Reader, model: type[models.Model], values: dict[str, Any], where: str,
                    exclude: set[str]) -> None:
    """Run the model's own field validators (addresses, communities, choices, slugs, lengths) on the values."""
    instance = model(**{name: value for name, value in values.items() if name not in exclude})
    try:
        instance.full_clean(exclude=list(exclude), validate_unique=False, validate_constraints=False)
    except ValidationError as error:
        for name, messages in error.message_dict.items():
            label = where if name == "__all__" else f"{where}.{name}"
            reader.fail(label, "; ".join(messages))
        return
    for name in values:
        if name not in exclude:
            values[name] = getattr(instance, name)  # cleaned: addresses normalised, so re-runs compare equal


def parse_network_file(text: str, *, environ: dict[str, str] | None = None) -> dict[str, dict[str, Entry]]:
    """Parse and validate the YAML text; return the entries per section, or raise NetworkFileError.

    Checks are complete before anything is returned: every problem of the file is reported at once. References
    to other entries are checked against the file and the database by `plan_network`.
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
    entries: dict[str, dict[str, Entry]] = {section: {} for section in (*SECTIONS, "neighbors")}
    specs = {"centers": CENTER_FIELDS, "routers": ROUTER_FIELDS, "upstreams": UPSTREAM_FIELDS,
             "speakers": SPEAKER_FIELDS}
    for section, section_specs in specs.items():
        for key, values in _keyed_entries(reader, data, section, section_specs, KEY_FIELD[section]).items():
            where = f"{section}[{key}]"
            if section == "routers":
                values["password"] = reader.secret(values.get("password", ""), f"{where}.password")
            if section == "upstreams":
                _check_communities(reader, values.get("communities", {}), f"{where}.communities")
            neighbors = values.pop("neighbors", []) if section == "speakers" else []
            refs = {name: values.pop(name, None) for name in REFERENCES[section]}
            _model_problems(reader, MODELS[section], values, where, set(REFERENCES[section]))
            entries[section][key] = Entry(section, key, values, refs)
            for neighbor_key, neighbor in _neighbors(reader, neighbors, where).items():
                neighbor_refs = {name: neighbor.pop(name, None) for name in REFERENCES["neighbors"]}
                _model_problems(reader, BgpSpeakerNeighbor, neighbor, f"{where}.neighbors[{neighbor_key}]",
                                {"speaker", *REFERENCES["neighbors"]})
                full_key = f"{key}/{neighbor_key}"
                entries["neighbors"][full_key] = Entry("neighbors", full_key, neighbor,
                                                       {"speaker": key, **neighbor_refs})
    _latencies(reader, data.get("latencies"), entries)
    if reader.problems:
        raise NetworkFileError(reader.problems)
    return entries


def _check_communities(reader: _Reader, communities: object, where: str) -> None:
    if not isinstance(communities, dict):
        return
    for label, value in communities.items():
        try:
            validate_asn_nn(str(value))
        except ValidationError as error:
            reader.fail(f"{where}.{label}", error.messages[0])


def _neighbors(reader: _Reader, raw: object, where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, list):
        reader.fail(f"{where}.neighbors", "must be a list of entries")
        return {}
    parsed: dict[str, dict[str, Any]] = {}
    for index, item in enumerate(raw):
        address = item.get("peer_address") if isinstance(item, dict) else None
        item_where = f"{where}.neighbors[{address or f'#{index + 1}'}]"
        if address is not None and str(address) in parsed:
            reader.fail(f"{item_where}.peer_address", f"{address!r} appears twice")
            continue
        values = reader.fields(item, NEIGHBOR_FIELDS, item_where)
        if values is None or "peer_address" not in values:
            continue
        families = values.get("families", [])
        if not families or not all(isinstance(family, str) for family in families):
            reader.fail(f"{item_where}.families", "must be a non-empty list of family names")
        parsed[str(values["peer_address"])] = values
    return parsed


def _latencies(reader: _Reader, raw: object, entries: dict[str, dict[str, Entry]]) -> None:
    """`latencies: {tenant-slug: {center-slug: ms}}`; each tenant listed gets exactly these measurements."""
    if raw is None:
        return
    if not isinstance(raw, dict):
        reader.fail("latencies", "must be a mapping of tenant slug to {center slug: milliseconds}")
        return
    spec = _num(REQUIRED, 0.0, 10_000.0)
    for tenant, centers in raw.items():
        if not isinstance(centers, dict):
            reader.fail(f"latencies[{tenant}]", "must be a mapping of center slug to milliseconds")
            continue
        for center, latency in centers.items():
            value = reader.value(latency, spec, f"latencies[{tenant}].{center}")
            if value is not _INVALID:
                key = f"{tenant}/{center}"
                entries["latencies"][key] = Entry("latencies", key, {"latency_ms": value},
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


def _natural_key(row: models.Model | None) -> str | None:
    if row is None:
        return None
    if isinstance(row, ScrubbingCenter | Tenant):
        return row.slug
    if isinstance(row, BgpSpeaker | Router | UpstreamPeer):
        return row.name
    return str(row.pk)


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
        old_key = _natural_key(getattr(row, name)) if row is not None else None
        if row is None or old_key != new_key:
            changes[name] = (old_key, new_key)
    if row is None:
        changes = {name: change for name, change in changes.items() if change[1] not in (None, "", [], {})}
    return changes


ORDER = ("centers", "routers", "upstreams", "speakers", "neighbors", "latencies")


def plan_network(entries: dict[str, dict[str, Entry]], *, prune: bool = False) -> Plan:
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
        record_audit(acting_user, "network.load", reason=f"load_network {source}".strip(),
                     diff={"changes": [change.as_audit() for change in plan.changes]})
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
    plan = plan_network(parse_network_file(text, environ=environ), prune=prune)
    if not dry_run:
        apply_plan(plan, acting_user=acting_user, source=source)
    return plan


