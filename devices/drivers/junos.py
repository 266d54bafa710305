"""Junos routers through PyEZ: FlowSpec routes and diversion routes pushed with the two-phase commit protocol.

Only Sluice-owned configuration is touched: flow routes and routing instances named `sluice-...`, and the static
routes inside the diversion routing instance. stage() reads what Sluice owns on the committed configuration, loads
`delete` statements for what is no longer wanted and `set` statements for what is, and leaves a commit confirmed
pending; confirm() makes it stick, abort() rolls it back. A router that loses the session or is never confirmed
rolls back by itself, so a half-done change across many routers cannot outlive its coordinator.

The rendering and parsing helpers here are shared with the NAPALM driver when it drives Junos.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from jnpr.junos import Device
from jnpr.junos import exception as junos_errors
from jnpr.junos.utils.config import Config
from lxml import etree

from devices.drivers.base import (
    FRAGMENT_FLAGS,
    TCP_FLAGS,
    CommitError,
    ConfigDriver,
    ConfigLoadError,
    ConnectError,
    DeviceIntent,
    DriverError,
    DriverTimeoutError,
    FlowSpecRule,
    LockError,
    PortClosedError,
    RenderError,
    RuleCounters,
    StageResult,
    UnicastRoute,
    ValueRange,
    VerifyError,
)
from devices.drivers.hostkeys import HostKeyTrust, KnownHostsFiles, check_host_key

logger = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).parent / "templates" / "junos"
OWNED_PREFIX = "sluice-"
RANGE_FIELDS = ("protocols", "destination_ports", "source_ports", "packet_lengths", "icmp_types", "icmp_codes")
RANGE_LIMITS = {
    "protocols": 255, "destination_ports": 65535, "source_ports": 65535, "packet_lengths": 65535,
    "icmp_types": 255, "icmp_codes": 255,
}
MATCH_KEYWORDS = {
    "protocol": "protocols", "destination-port": "destination_ports", "source-port": "source_ports",
    "packet-length": "packet_lengths", "icmp-type": "icmp_types", "icmp-code": "icmp_codes",
}
# Whole-string patterns (fullmatch, so a trailing newline never passes as `$` would let it).
_TARGET = re.compile(r"(\d{1,10}|\d{1,3}(\.\d{1,3}){3}):\d{1,10}", re.ASCII)
_COMMUNITY = re.compile(r"\d{1,5}:\d{1,5}|no-export|no-advertise|no-export-subconfed", re.ASCII)
_INSTANCE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,127}", re.ASCII)
_FLAGS = frozenset(TCP_FLAGS) | frozenset(FRAGMENT_FLAGS)
# The configuration Sluice may own; read with one filtered get-configuration.
OWNED_FILTER = "<configuration><routing-options><flow/></routing-options><routing-instances/></configuration>"
# The filters Junos builds from the FlowSpec routes it installs, one per address family.
FLOWSPEC_FILTERS = {4: "__flowspec_default_inet__", 6: "__flowspec_default_inet6__"}
# RFC 8955 bit values, as Junos prints them in term names (`tcp-flag:02`, `frag:02`).
TCP_FLAG_BITS = {"fin": 0x01, "syn": 0x02, "rst": 0x04, "push": 0x08, "ack": 0x10, "urgent": 0x20, "ece": 0x40,
                 "cwr": 0x80}
FRAGMENT_BITS = {"dont-fragment": 0x01, "is-fragment": 0x02, "first-fragment": 0x04, "last-fragment": 0x08}


def _junos_ranges(ranges: tuple[ValueRange, ...]) -> list[str]:
    return [str(low) if low == high else f"{low}-{high}" for low, high in ranges]


def _redirect_instance(target: str) -> str:
    return OWNED_PREFIX + "redirect-" + re.sub(r"[^0-9A-Za-z]", "-", target)


def _environment() -> SandboxedEnvironment:
    environment = SandboxedEnvironment(
        loader=FileSystemLoader(str(TEMPLATE_DIR)), undefined=StrictUndefined, trim_blocks=True,
        lstrip_blocks=True, autoescape=False, keep_trailing_newline=True,
    )
    environment.filters["junos_ranges"] = _junos_ranges
    environment.filters["redirect_instance"] = _redirect_instance
    return environment


_ENVIRONMENT = _environment()


def normalize_rule(rule: FlowSpecRule) -> FlowSpecRule:
    """The rule as a router holds it: ranges sorted and unique, no per-neighbor scoping.

    Names are derived from this form, so that a rule read back from a router has the name it was pushed under.
    """
    changes: dict[str, Any] = {name: tuple(sorted(set(getattr(rule, name)))) for name in RANGE_FIELDS}
    return dataclasses.replace(rule, neighbors=(), **changes)


def _check_rule(rule: FlowSpecRule) -> None:
    for name in RANGE_FIELDS:
        for low, high in getattr(rule, name):
            if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high <= RANGE_LIMITS[name]):
                raise RenderError(f"flow rule {rule.name}: {name} range {low}-{high} is not valid")
    if rule.rate_bps is not None and not (isinstance(rule.rate_bps, int) and rule.rate_bps >= 0):
        raise RenderError(f"flow rule {rule.name}: rate {rule.rate_bps!r} is not a number of bits per second")
    if rule.action == "redirect" and not _TARGET.fullmatch(rule.redirect_target or ""):
        raise RenderError(f"flow rule {rule.name}: redirect target {rule.redirect_target!r} is not ASN:NN")
    if rule.dscp is not None and not (isinstance(rule.dscp, int) and 0 <= rule.dscp <= 63):
        raise RenderError(f"flow rule {rule.name}: DSCP {rule.dscp!r} is not between 0 and 63")
    if not set(rule.tcp_flags) | set(rule.fragments) <= _FLAGS:
        raise RenderError(f"flow rule {rule.name}: unknown TCP or fragment flag")


def render_statements(intent: DeviceIntent) -> list[str]:
    """Every Sluice-owned `set` statement the router should hold. Raises RenderError; touches no device."""
    if not _INSTANCE.fullmatch(intent.routing_instance):
        raise RenderError(f"routing instance name {intent.routing_instance!r} is not valid on Junos")
    try:
        rules = [normalize_rule(rule) for rule in intent.flow_rules]
    except ValueError as error:  # a value that bypassed FlowSpecRule's checks fails them again here
        raise RenderError(f"flow rule is not valid: {error}") from error
    for rule in rules:
        _check_rule(rule)
    for route in intent.diversions:
        for community in route.communities:
            if not _COMMUNITY.fullmatch(community):
                raise RenderError(f"diversion {route.prefix}: community {community!r} is not valid")
    targets = sorted({rule.redirect_target for rule in rules if rule.action == "redirect" and rule.redirect_target})
    try:
        text = _ENVIRONMENT.get_template("sluice.set.j2").render(
            flow_rules=rules, diversions=list(intent.diversions), routing_instance=intent.routing_instance,
            redirect_targets=targets,
        )
    except TemplateError as error:
        raise RenderError(f"Junos template failed: {error}") from error
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if not line.startswith("set ") or any(c in line for c in '";{}[]#\\'):
            raise RenderError(f"rendered statement is not a plain set statement: {line!r}")
    return sorted(set(lines))


def owned_key(tokens: list[str], instance: str) -> tuple[str, ...] | None:
    """The Sluice-owned configuration entry a statement belongs to, or None when Sluice does not own it."""
    if tokens[:3] == ["routing-options", "flow", "route"] and len(tokens) > 3 and tokens[3].startswith(OWNED_PREFIX):
        return tuple(tokens[:4])
    if tokens[:1] == ["routing-instances"] and len(tokens) > 1:
        if tokens[1].startswith(OWNED_PREFIX):
            return tuple(tokens[:2])
        if tokens[1] == instance and tokens[2:5] == ["routing-options", "static", "route"] and len(tokens) > 5:
            return tuple(tokens[:6])
    return None


def _group(lines: list[str], instance: str) -> tuple[dict[tuple[str, ...], set[str]], set[str]]:
    entries: dict[tuple[str, ...], set[str]] = {}
    others: set[str] = set()
    for line in lines:
        tokens = line.split()
        if not tokens or tokens[0] != "set":
            continue
        key = owned_key(tokens[1:], instance)
        if key is None:
            others.add(line)
        else:
            entries.setdefault(key, set()).add(line)
    return entries, others


def change_statements(current: list[str], desired: list[str], instance: str) -> list[str]:
    """The `delete` and `set` statements that turn the owned part of `current` into `desired`.

    Whole entries are deleted and re-set when they differ, so that no stale leaf survives inside an entry.
    """
    have, have_other = _group(current, instance)
    want, want_other = _group(desired, instance)
    deletes = [f"delete {' '.join(key)}" for key in sorted(have) if have[key] != want.get(key)]
    sets = sorted(line for key in want if have.get(key) != want[key] for line in want[key])
    sets += sorted(want_other - have_other)
    return deletes + sets


def _parse_range(value: str) -> ValueRange:
    low, _, high = value.partition("-")
    return int(low), int(high or low)


def intent_from_entries(
    flow_routes: dict[str, dict[str, list[str]]], statics: dict[str, dict[str, list[str]]], instance: str,
) -> DeviceIntent:
    """Build a DeviceIntent from flow routes (name -> {"match X"/"then Y": values}) and static routes.

    Routes Sluice cannot read back (a foreign action, a missing destination) are skipped with a warning, so that
    reconcile replaces them instead of failing on them.
    """
    rules: list[FlowSpecRule] = []
    for name, fields in sorted(flow_routes.items()):
        try:
            rules.append(_rule_from_fields(fields))
        except (ValueError, KeyError, IndexError) as error:
            logger.warning("flow route %s cannot be read back: %s", name, error)
    diversions = []
    for prefix, fields in sorted(statics.items()):
        for hop in fields.get("next-hop", []):
            diversions.append(UnicastRoute(prefix, hop, communities=tuple(fields.get("community", []))))
    return DeviceIntent(flow_rules=tuple(rules), diversions=tuple(diversions), routing_instance=instance)


def _rule_from_fields(fields: dict[str, list[str]]) -> FlowSpecRule:
    values: dict[str, Any] = {}
    for keyword, name in MATCH_KEYWORDS.items():
        values[name] = tuple(sorted(_parse_range(v) for v in fields.get(f"match {keyword}", [])))
    values["tcp_flags"] = tuple(fields.get("match tcp-flags", []))
    values["fragments"] = tuple(fields.get("match fragment", []))
    source = fields.get("match source", [None])[0]
    if "then discard" in fields:
        action = "discard"
    elif "then rate-limit" in fields:
        action, values["rate_bps"] = "rate-limit", int(fields["then rate-limit"][0])
    elif "then routing-instance" in fields:
        target = fields["then routing-instance"][0]
        action, values["redirect_target"] = "redirect", target.removeprefix("target:")
    elif "then mark" in fields:
        action, values["dscp"] = "mark", int(fields["then mark"][0])
    else:
        raise ValueError("no action Sluice knows")
    return FlowSpecRule(destination=fields["match destination"][0], action=action, source=source, **values)


def intent_from_statements(lines: list[str], instance: str) -> DeviceIntent:
    """Parse Sluice-owned `set` statements (as `show configuration | display set` prints them)."""
    flow_routes: dict[str, dict[str, list[str]]] = {}
    statics: dict[str, dict[str, list[str]]] = {}
    for line in lines:
        tokens = line.split()
        if not tokens or tokens[0] != "set":
            continue
        tokens = tokens[1:]
        key = owned_key(tokens, instance)
        if key is None:
            continue
        rest = tokens[len(key):]
        if key[0] == "routing-options" and len(rest) >= 2:
            fields = flow_routes.setdefault(key[3], {})
            if len(rest) == 2:
                fields.setdefault(" ".join(rest), [])
            else:
                fields.setdefault(" ".join(rest[:2]), []).append(rest[2])
        elif len(key) == 6 and len(rest) == 2:
            statics.setdefault(key[5], {}).setdefault(rest[0], []).append(rest[1])
    return intent_from_entries(flow_routes, statics, instance)


def intent_from_xml(configuration: etree._Element, instance: str) -> DeviceIntent:
    """Parse the committed configuration as Junos XML (namespaces already stripped by PyEZ)."""
    flow_routes: dict[str, dict[str, list[str]]] = {}
    for route in configuration.findall("routing-options/flow/route"):
        name = route.findtext("name", "")
        if not name.startswith(OWNED_PREFIX):
            continue
        fields: dict[str, list[str]] = {}
        for section in ("match", "then"):
            for element in route.findall(f"{section}/*"):
                values = fields.setdefault(f"{section} {element.tag}", [])
                if element.text and element.text.strip():
                    values.append(element.text.strip())
        flow_routes[name] = fields
    statics: dict[str, dict[str, list[str]]] = {}
    for entry in configuration.findall("routing-instances/instance"):
        if entry.findtext("name") != instance:
            continue
        for route in entry.findall("routing-options/static/route"):
            statics[route.findtext("name", "")] = {
                "next-hop": [hop.text.strip() for hop in route.findall("next-hop") if hop.text],
                "community": [c.text.strip() for c in route.findall("community") if c.text],
            }
    return intent_from_entries(flow_routes, statics, instance)


def same_intent(expected: DeviceIntent, found: DeviceIntent) -> bool:
    """Whether a router holds what was pushed: flow rules as the router holds them, diversions by value."""
    def diversions(intent: DeviceIntent) -> set[tuple[str, str, tuple[str, ...]]]:
        return {(str(ipaddress.ip_network(r.prefix)), r.next_hop, r.communities) for r in intent.diversions}

    rules_expected = {normalize_rule(rule) for rule in expected.flow_rules}
    rules_found = {normalize_rule(rule) for rule in found.flow_rules}
    return rules_expected == rules_found and diversions(expected) == diversions(found)


def _term_address(prefix: str | None) -> str:
    if prefix is None:
        return "*"
    network = ipaddress.ip_network(prefix)
    if network.version == 4 and network.prefixlen == 0:
        return "0/0"
    if network.version == 4 and network.prefixlen == 32:
        return str(network.network_address)
    return str(network)


def _term_values(ranges: tuple[ValueRange, ...]) -> str:
    return ",".join(f"={low}" if low == high else f">={low}&<={high}" for low, high in sorted(set(ranges)))


def junos_term_name(rule: FlowSpecRule) -> str:
    """The name Junos gives the FlowSpec filter term (and counter) of an installed rule.

    Checked against published `show firewall filter __flowspec_default_inet__` captures: destination then source
    (`*` for none; a v4 host without /32, `0/0` for the default route, v6 with its length), then components in
    RFC 8955 type order: `proto=17`, `dstport>=1026&<=65499`, `srcport=53`, several values as `=40,=50,>=70&<=80`,
    `icmp-type=8`, `tcp-flag:18`, `len=180`, `frag:02`. Assumed, not seen: `icmp-code=N`, one `:` operand per
    TCP flag, and `>=lo&<=hi` for ranges at the ends of the value space. A rate-limit rule's policer is named
    `<rate in kbit/s>K_<term name>`.
    """
    rule = normalize_rule(rule)
    parts = [_term_address(rule.destination), _term_address(rule.source)]
    for keyword, ranges in (("proto", rule.protocols), ("dstport", rule.destination_ports),
                            ("srcport", rule.source_ports), ("icmp-type", rule.icmp_types),
                            ("icmp-code", rule.icmp_codes)):
        if ranges:
            parts.append(keyword + _term_values(ranges))
    if rule.tcp_flags:
        parts.append("tcp-flag" + ",".join(f":{bits:02x}" for bits in sorted(TCP_FLAG_BITS[f] for f in rule.tcp_flags)))
    if rule.packet_lengths:
        parts.append("len" + _term_values(rule.packet_lengths))
    if rule.fragments:
        parts.append("frag" + ",".join(f":{bits:02x}" for bits in sorted(FRAGMENT_BITS[f] for f in rule.fragments)))
    return ",".join(parts)


def filter_counts(reply: etree._Element) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]]:
    """A get-firewall-filter-information reply as (term -> (packets, bytes)) for counters and for policers, the
    policers keyed by their term name (the rate prefix up to the first `_` dropped; term names hold no `_`)."""
    def count(entry: etree._Element) -> tuple[int, int]:
        return int((entry.findtext("packet-count") or "0").strip()), int((entry.findtext("byte-count") or "0").strip())

    counters = {(c.findtext("counter-name") or "").strip(): count(c) for c in reply.iter("counter")}
    policers = {(p.findtext("policer-name") or "").strip().partition("_")[2]: count(p) for p in reply.iter("policer")}
    return counters, policers


def _rule_counters(rule: FlowSpecRule, counter: tuple[int, int], policer: tuple[int, int] | None) -> RuleCounters:
    """What the router counted for `rule`. A rate-limit term's counter counts what its policer let through (in
    captures the policer's count exceeds the counter's), so matched = counter + policer, dropped = policer."""
    packets, octets = counter
    if rule.action == "discard" or (rule.action == "rate-limit" and not rule.rate_bps):
        return RuleCounters(packets, octets, packets, octets)
    if rule.action == "rate-limit":
        policed_packets, policed_octets = policer or (0, 0)
        return RuleCounters(packets + policed_packets, octets + policed_octets, policed_packets, policed_octets)
    return RuleCounters(packets, octets, 0, 0)


@contextmanager
def translate_errors(host: str) -> Iterator[None]:
    """Turn PyEZ exceptions into the driver error hierarchy, so callers decide by type, never by text."""
    try:
        yield
    except DriverError:
        raise
    except junos_errors.ConnectAuthError as error:
        raise ConnectError(f"{host}: login refused") from error
    except junos_errors.ConnectRefusedError as error:
        raise PortClosedError(f"{host}: connection refused") from error
    except junos_errors.ConnectTimeoutError as error:
        raise PortClosedError(f"{host}: connection timed out") from error
    except junos_errors.ConnectClosedError as error:
        raise ConnectError(f"{host}: the session was closed by the router") from error
    except junos_errors.ConnectError as error:
        raise ConnectError(f"{host}: cannot connect: {error}") from error
    except junos_errors.RpcTimeoutError as error:
        raise DriverTimeoutError(f"{host}: no answer in time: {error}") from error
    except junos_errors.LockError as error:
        raise LockError(f"{host}: configuration is locked: {_message(error)}") from error
    except junos_errors.UnlockError as error:
        raise LockError(f"{host}: could not unlock the configuration: {_message(error)}") from error
    except junos_errors.ConfigLoadError as error:
        raise ConfigLoadError(f"{host}: configuration refused at load: {_message(error)}") from error
    except junos_errors.CommitError as error:
        raise CommitError(f"{host}: commit failed: {_message(error)}") from error
    except junos_errors.RpcError as error:
        raise DriverError(f"{host}: RPC failed: {_message(error)}") from error


def _message(error: junos_errors.RpcError) -> str:
    """The router's own error messages, joined; PyEZ keeps them in `errs` or `rpc_error`."""
    messages = [str(e.get("message", "")).strip() for e in (getattr(error, "errs", None) or [])
                if isinstance(e, dict) and e.get("message")]
    if not messages and isinstance(getattr(error, "rpc_error", None), dict):
        messages = [str(error.rpc_error.get("message") or "").strip()]
    messages = [m for m in messages if m]
    return "; ".join(messages) if messages else str(error)


class JunosDriver(ConfigDriver):
    """One Junos router over NETCONF with PyEZ. Use as a context manager: leaving it unlocks and closes.

    Side effects: stage() leaves a commit confirmed pending that rolls back by itself after `confirm_minutes`
    unless confirm() is called; abort() rolls back at once. Every failure leaves the candidate discarded and the
    lock released (or the session closed, which makes the router do both).
    """

    def __init__(self, host: str, port: int, username: str, password: str, *, timeout: int = 30,
                 host_key: str | None = None, trust_host_key: HostKeyTrust | None = None) -> None:
        """`host_key` (`<type> <base64>`) is the router's recorded SSH host key, `trust_host_key` the inventory's
        decision on a presented key (see `hostkeys.check_host_key`). With either, open() refuses another key before
        logging in, and the NETCONF session verifies it too (ncclient `hostkey_verify` through `ssh_config`).
        With neither nothing is verified; the inventory's `driver_for` always passes a trust function."""
        self.host = host
        self.port = port
        self.timeout = timeout
        self.host_key = host_key
        self._trust = trust_host_key
        self._known_hosts = KnownHostsFiles(host, port) if host_key or trust_host_key else None
        verify = {"hostkey_verify": True, "ssh_config": str(self._known_hosts.ssh_config)} if self._known_hosts else {}
        self._device = Device(
            host, port=port, user=username, passwd=password, gather_facts=False, conn_open_timeout=timeout,
            normalize=False, look_for_keys=False, allow_agent=False, **verify,
        )
        self._config: Config | None = None
        self._locked = False
        self._pending = False

    def open(self) -> None:
        """Connect and log in; raises HostKeyError, before any password is sent, when the key is not the recorded one."""
        if self._known_hosts is not None:
            self.host_key = check_host_key(self.host, self.port, self.host_key, timeout=self.timeout,
                                           trust=self._trust)
            self._known_hosts.write(self.host_key)
        with translate_errors(self.host):
            self._device.open(gather_facts=False)
        self._device.timeout = self.timeout
        self._config = Config(self._device)

    def close(self) -> None:
        """Unlock (discarding an unconfirmed candidate) and close; a pending commit confirmed is left to expire."""
        if self._device.connected and self._locked:
            self._recover(rollback_pending=False)
        if self._device.connected:
            try:
                self._device.close()
            except (junos_errors.RpcError, junos_errors.ConnectError) as error:
                logger.warning("%s: closing the session failed: %s", self.host, error)
                self._drop()

    @property
    def _cu(self) -> Config:
        if self._config is None or not self._device.connected:
            raise ConnectError(f"{self.host}: not connected")
        return self._config

    def _drop(self) -> None:
        """Cut the SSH connection without a goodbye; the router then discards and unlocks on its own."""
        # ncclient offers no public way to cut a session without a goodbye that a hung router would not answer.
        session = getattr(self._device._conn, "_session", None) if self._device._conn else None
        if session is not None:
            session.close()
        self._device.connected = False
        self._locked = False

    def _recover(self, *, rollback_pending: bool) -> None:
        """Best effort after a failure: roll back or discard, then unlock. Never raises; logs what failed."""
        if not self._device.connected:
            return
        cu = self._cu
        steps: list[tuple[str, Callable[[], object]]] = []
        if rollback_pending and self._pending:
            steps += [("rollback 1", lambda: cu.rollback(1)), ("commit rollback", cu.commit)]
        steps.append(("discard", lambda: cu.rollback(0)))
        if self._locked:
            steps.append(("unlock", cu.unlock))
        for label, step in steps:
            try:
                step()
            except junos_errors.RpcTimeoutError:
                logger.warning("%s: %s timed out; dropping the session", self.host, label)
                self._drop()
                return
            except (junos_errors.RpcError, junos_errors.ConnectError) as error:
                logger.warning("%s: %s failed during recovery: %s", self.host, label, error)
        self._locked = False
        self._pending = False

    def _fail(self, error: BaseException, *, rollback_pending: bool = True) -> None:
        if isinstance(error, (junos_errors.RpcTimeoutError, DriverTimeoutError)):
            self._drop()
        elif isinstance(error, (junos_errors.ConnectError, ConnectError)):
            self._device.connected = False
            self._locked = False
        else:
            self._recover(rollback_pending=rollback_pending)

    def _lock(self) -> None:
        self._cu.lock()
        self._locked = True

    def _owned_statements(self) -> list[str]:
        reply = self._device.rpc.get_config(filter_xml=etree.XML(OWNED_FILTER),
                                            options={"database": "committed", "format": "set"})
        text = reply.text if isinstance(reply, etree._Element) else ""
        return [line.strip() for line in (text or "").splitlines() if line.strip()]

    def _load_changes(self, intent: DeviceIntent, desired: list[str]) -> str:
        changes = change_statements(self._owned_statements(), desired, intent.routing_instance)
        if not changes:
            return ""
        self._cu.load("\n".join(changes), format="set")
        return self._cu.diff() or ""

    def stage(self, intent: DeviceIntent, *, confirm_minutes: int = 2) -> StageResult:
        """Lock, load, diff, commit check, commit confirmed, read back. Raises a DriverError subclass."""
        desired = render_statements(intent)
        if confirm_minutes < 1:
            raise RenderError("confirm_minutes must be at least 1")
        try:
            with translate_errors(self.host):
                self._lock()
                diff = self._load_changes(intent, desired)
                if not diff:
                    self._cu.rollback(0)
                    self._cu.unlock()
                    self._locked = False
                    return StageResult(diff="", changed=False, commit_pending=False)
                self._cu.commit_check()
                self._cu.commit(confirm=confirm_minutes, comment=f"sluice stage, rollback in {confirm_minutes}min")
                self._pending = True
                found = self.read_intent(intent.routing_instance)
                if not same_intent(intent, found):
                    raise VerifyError(f"{self.host}: the committed configuration does not match the intent")
                return StageResult(diff=diff, changed=True, commit_pending=True)
        except BaseException as error:
            self._fail(error)
            raise

    def confirm(self) -> None:
        """Confirm a pending commit with a plain commit, then unlock."""
        try:
            with translate_errors(self.host):
                if self._pending:
                    self._cu.commit(comment="sluice confirm")
                    self._pending = False
                if self._locked:
                    self._cu.unlock()
                    self._locked = False
        except BaseException as error:
            self._fail(error, rollback_pending=False)
            raise

    def abort(self) -> None:
        """Roll back a pending commit confirmed (rollback 1 and commit), or discard the candidate; unlock."""
        try:
            with translate_errors(self.host):
                if self._pending:
                    self._cu.rollback(1)
                    self._cu.commit(comment="sluice abort")
                    self._pending = False
                else:
                    self._cu.rollback(0)
        except BaseException as error:
            self._fail(error, rollback_pending=False)
            raise
        finally:
            if self._locked and self._device.connected:
                with translate_errors(self.host):
                    self._cu.unlock()
                self._locked = False

    def dry_run(self, intent: DeviceIntent) -> str:
        """The diff the router would show for the intent; the candidate is discarded and nothing committed."""
        desired = render_statements(intent)
        try:
            with translate_errors(self.host):
                self._lock()
                diff = self._load_changes(intent, desired)
                self._cu.rollback(0)
                self._cu.unlock()
                self._locked = False
                return diff
        except BaseException as error:
            self._fail(error, rollback_pending=False)
            raise

    def read_intent(self, routing_instance: str = "SLUICE-DIVERT") -> DeviceIntent:
        with translate_errors(self.host):
            configuration = self._device.rpc.get_config(filter_xml=etree.XML(OWNED_FILTER),
                                                        options={"database": "committed"})
        return intent_from_xml(configuration, routing_instance)

    def get_bgp_neighbors(self) -> dict[str, dict[str, object]]:
        with translate_errors(self.host):
            reply = self._device.rpc.get_bgp_neighbor_information()
        neighbors: dict[str, dict[str, object]] = {}
        for peer in reply.findall(".//bgp-peer"):
            address = (peer.findtext("peer-address") or "").strip().split("+")[0]
            ribs = peer.findall("bgp-rib")

            def total(tag: str, ribs: list[etree._Element] = ribs) -> int:
                return sum(int(rib.findtext(tag) or 0) for rib in ribs)

            neighbors[address] = {
                "is_up": (peer.findtext("peer-state") or "").strip() == "Established",
                "state": (peer.findtext("peer-state") or "").strip(),
                "remote_as": int(peer.findtext("peer-as") or 0),
                "local_as": int(peer.findtext("local-as") or 0),
                "description": (peer.findtext("description") or "").strip(),
                "instance": (peer.findtext("peer-fwd-rti") or "master").strip(),
                "received_prefixes": total("received-prefix-count"),
                "accepted_prefixes": total("accepted-prefix-count"),
                "sent_prefixes": total("advertised-prefix-count"),
            }
        return neighbors

    def get_interfaces_counters(self) -> dict[str, dict[str, int]]:
        with translate_errors(self.host):
            reply = self._device.rpc.get_interface_information(extensive=True)
        fields = {
            "rx_octets": "traffic-statistics/input-bytes", "tx_octets": "traffic-statistics/output-bytes",
            "rx_unicast_packets": "ethernet-mac-statistics/input-unicasts",
            "tx_unicast_packets": "ethernet-mac-statistics/output-unicasts",
            "rx_errors": "input-error-list/input-errors", "tx_errors": "output-error-list/output-errors",
            "rx_discards": "input-error-list/input-discards", "tx_discards": "output-error-list/output-drops",
        }
        counters: dict[str, dict[str, int]] = {}
        for interface in reply.findall(".//physical-interface"):
            name = (interface.findtext("name") or "").strip()
            counters[name] = {key: int((interface.findtext(path) or "0").strip() or 0) for key, path in fields.items()}
        return counters

    def flowspec_counters(self, rules: Sequence[FlowSpecRule]) -> dict[str, RuleCounters]:
        """Rule name -> counters, read from the FlowSpec filters with one get-firewall-filter-information per
        address family that has rules. A rule whose term the router does not show is absent. Device I/O only."""
        by_family: dict[int, list[tuple[str, FlowSpecRule]]] = {}
        for rule in rules:
            by_family.setdefault(rule.family, []).append((junos_term_name(rule), rule))
        found: dict[str, RuleCounters] = {}
        for family, terms in sorted(by_family.items()):
            with translate_errors(self.host):
                reply = self._device.rpc.get_firewall_filter_information(filtername=FLOWSPEC_FILTERS[family])
            counters, policers = filter_counts(reply)
            for term, rule in terms:
                if term in counters:
                    found[rule.name] = _rule_counters(rule, counters[term], policers.get(term))
        return found
