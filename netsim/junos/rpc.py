"""Junos RPC handlers: each takes the router state, the calling session and the request element, and returns the
body of the <rpc-reply> as text, or raises RpcFailure with the <rpc-error> elements Junos would send.

Reply shapes follow what PyEZ and NAPALM read (tables in napalm/junos/utils/junos_views.yml, jnpr/junos/facts).
Commit replies never carry <ok/>: ncclient rewrites any reply that mentions routing-engine and holds <ok/>.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from xml.sax.saxutils import escape

from lxml import etree

from netsim.junos.config import (
    ConfigSyntaxError,
    ConfigTree,
    Statement,
    diff,
    statements_from_set,
    statements_from_text,
    statements_from_xml,
    tree_from_statements,
)
from netsim.junos.state import BgpNeighbor, PendingConfirm, RouterState, Session

OK = "<ok/>"


@dataclass
class RpcErrorInfo:
    """One <rpc-error>, with the fields Junos fills in."""

    message: str
    severity: str = "error"
    tag: str = "operation-failed"
    error_type: str = "application"
    path: str | None = None
    bad_element: str | None = None
    session_id: int | None = None

    def xml(self) -> str:
        parts = [f"<error-type>{self.error_type}</error-type>", f"<error-tag>{self.tag}</error-tag>",
                 f"<error-severity>{self.severity}</error-severity>"]
        if self.path:
            parts.append(f"<error-path>{escape(self.path)}</error-path>")
        info = ""
        if self.bad_element is not None:
            info += f"<bad-element>{escape(self.bad_element)}</bad-element>"
        if self.session_id is not None:
            info += f"<session-id>{self.session_id}</session-id>"
        if info:
            parts.append(f"<error-info>{info}</error-info>")
        parts.append(f"<error-message>\n{escape(self.message)}\n</error-message>")
        return "<rpc-error>\n" + "\n".join(parts) + "\n</rpc-error>"


@dataclass
class RpcFailure(Exception):
    """An RPC that failed: `wrapper` is the results element Junos nests the errors in, if any."""

    errors: list[RpcErrorInfo]
    wrapper: str | None = None
    trailer: str = ""

    def body(self) -> str:
        inner = "\n".join(error.xml() for error in self.errors) + self.trailer
        return f"<{self.wrapper}>\n{inner}\n</{self.wrapper}>" if self.wrapper else inner


class DropSession(Exception):
    """The handler wants the SSH connection cut without a reply (fault injection, session killed)."""


@dataclass
class Context:
    """What a handler may use besides the request: the state and the calling session."""

    state: RouterState
    session: Session
    sleep: Callable[[float], None] = field(default=time.sleep)


Handler = Callable[[Context, etree._Element], str]


def local(tag: object) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def child(element: etree._Element, name: str) -> etree._Element | None:
    for node in element:
        if local(node.tag) == name:
            return node
    return None


def child_text(element: etree._Element, name: str, default: str | None = None) -> str | None:
    node = child(element, name)
    if node is None:
        return default
    return (node.text or "").strip()


def timestamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _locked_by_other(ctx: Context) -> RpcErrorInfo | None:
    owner = ctx.state.lock_owner
    if owner is None or owner is ctx.session:
        return None
    since = timestamp(owner.started)
    return RpcErrorInfo(
        f"configuration database locked by:\n  {owner.username} terminal pts/0 (pid {owner.session_id}) "
        f"on since {since}\n      exclusive [edit]",
        tag="lock-denied", error_type="protocol", session_id=owner.session_id,
    )


def lock_configuration(ctx: Context, request: etree._Element) -> str:
    with ctx.state.mutex:
        error = _locked_by_other(ctx)
        if error:
            raise RpcFailure([error])
        if ctx.state.lock_owner is None and ctx.state.candidate != ctx.state.committed:
            raise RpcFailure([RpcErrorInfo("configuration database modified", tag="lock-denied",
                                           error_type="protocol")])
        ctx.state.lock_owner = ctx.session
    return OK


def unlock_configuration(ctx: Context, request: etree._Element) -> str:
    with ctx.state.mutex:
        error = _locked_by_other(ctx)
        if error:
            raise RpcFailure([error])
        if ctx.state.lock_owner is ctx.session:
            ctx.state.lock_owner = None
            ctx.state.candidate = ctx.state.committed.copy()
            ctx.state.changed.notify_all()
    return OK


def discard_changes(ctx: Context, request: etree._Element) -> str:
    with ctx.state.mutex:
        error = _locked_by_other(ctx)
        if error:
            raise RpcFailure([error])
        ctx.state.candidate = ctx.state.committed.copy()
    return OK


def _statements(request: etree._Element, action: str) -> list[Statement]:
    content_set = child(request, "configuration-set")
    if content_set is not None:
        return statements_from_set(content_set.text or "")
    content_text = child(request, "configuration-text")
    if content_text is not None:
        statements = statements_from_text(content_text.text or "")
    else:
        configuration = child(request, "configuration")
        if configuration is None:
            if child(request, "configuration-json") is not None:
                raise ConfigSyntaxError("JSON configuration is not supported by this emulator", "configuration-json")
            raise ConfigSyntaxError("syntax error, expecting <configuration>", bad_element="load-configuration")
        statements = statements_from_xml(configuration)
    if action != "replace":
        statements = [Statement("set", s.tokens) if s.op == "replace" else s for s in statements]
    return statements


def _load_failure(error: RpcErrorInfo) -> RpcFailure:
    return RpcFailure([error], wrapper="load-configuration-results", trailer="\n<load-error-count>1</load-error-count>")


def load_configuration(ctx: Context, request: etree._Element) -> str:
    action = request.get("action", "merge")
    state = ctx.state
    with state.mutex:
        error = _locked_by_other(ctx)
        if error:
            raise _load_failure(error)
        rollback = request.get("rollback")
        if rollback is not None:
            index = int(rollback)
            if index >= len(state.history):
                raise _load_failure(RpcErrorInfo(f"rollback {index}: no such configuration", bad_element=rollback))
            state.candidate = state.history[index].tree.copy()
            return "<load-configuration-results>\n<ok/>\n</load-configuration-results>"
        if state.faults.load_error:
            raise _load_failure(RpcErrorInfo(state.faults.load_error))
        try:
            statements = _statements(request, action)
            candidate = ConfigTree() if action == "override" else state.candidate.copy()
            for statement in statements:
                candidate.apply(statement)
        except ConfigSyntaxError as syntax:
            path = "[edit " + " ".join(syntax.path) + "]" if syntax.path else None
            raise _load_failure(RpcErrorInfo(syntax.message, bad_element=syntax.bad_element, path=path)) from syntax
        state.candidate = candidate
    return "<load-configuration-results>\n<ok/>\n</load-configuration-results>"


def _filter_paths(request: etree._Element) -> list[tuple[str, ...]] | None:
    configuration = child(request, "configuration")
    if configuration is None:
        holder = child(request, "filter")
        if holder is not None:
            configuration = child(holder, "configuration")
    if configuration is None or not len(configuration):
        return None
    return [statement.tokens for statement in statements_from_xml(configuration)]


def _render_configuration(ctx: Context, tree: ConfigTree, fmt: str) -> str:
    revision = ctx.state.history[0]
    if fmt == "text":
        return f"<configuration-text>{escape(tree.text())}</configuration-text>"
    if fmt == "set":
        return f"<configuration-set>{escape(chr(10).join(tree.set_statements()))}\n</configuration-set>"
    inner = "".join(etree.tostring(node, encoding="unicode") for node in tree.xml())
    return (f'<configuration junos:commit-seconds="{int(revision.when)}" '
            f'junos:commit-localtime="{timestamp(revision.when)}" junos:commit-user="{revision.user}">'
            f"{inner}</configuration>")


def _diff_output(text: str) -> str:
    return ("<configuration-information>\n<configuration-output>\n"
            f"{escape(text)}</configuration-output>\n</configuration-information>")


def get_configuration(ctx: Context, request: etree._Element) -> str:
    state = ctx.state
    fmt = request.get("format", "xml")
    with state.mutex:
        if request.get("compare") == "rollback":
            index = int(request.get("rollback", "0"))
            if index >= len(state.history):
                raise RpcFailure([RpcErrorInfo(f"rollback {index}: no such configuration")])
            return _diff_output(diff(state.history[index].tree, state.candidate))
        tree = state.committed if request.get("database") == "committed" else state.candidate
        paths = _filter_paths(request)
        if paths is not None:
            tree = tree.subtree(paths)
        return _render_configuration(ctx, tree, fmt)


def get_config(ctx: Context, request: etree._Element) -> str:
    state = ctx.state
    source = child(request, "source")
    running = source is not None and child(source, "running") is not None
    with state.mutex:
        tree = state.committed if running else state.candidate
        paths = _filter_paths(request)
        if paths is not None:
            tree = tree.subtree(paths)
        return "<data>" + _render_configuration(ctx, tree, "xml") + "</data>"


def _validate(ctx: Context) -> list[RpcErrorInfo]:
    state = ctx.state
    errors: list[RpcErrorInfo] = []
    routes = state.candidate.root.get("routing-options", {}).get("flow", {}).get("route", {})
    for name, route in sorted(routes.items()):
        for mandatory in ("match", "then"):
            if not route.get(mandatory):
                errors.append(RpcErrorInfo(f"Missing mandatory statement: '{mandatory}'", tag="invalid-value",
                                           path=f"[edit routing-options flow route {name}]"))
    statements = state.candidate.set_statements()
    for validator in state.validators:
        try:
            message = validator(statements)
        except Exception as error:  # a broken hook must read as a refused commit, not kill the session
            message = f"validation hook failed: {error}"
        if message:
            errors.append(RpcErrorInfo(message, tag="invalid-value", path="[edit]"))
    return errors


def _commit_failure(errors: list[RpcErrorInfo]) -> RpcFailure:
    errors = [*errors, RpcErrorInfo("configuration check-out failed", tag="invalid-value")]
    return RpcFailure(errors, wrapper="commit-results")


def _wait_commit_delay(ctx: Context) -> None:
    """A slow commit: the reply comes late; if the client hangs up meanwhile, the commit never happens."""
    remaining = ctx.state.faults.commit_delay
    while remaining > 0:
        step = min(remaining, 0.05)
        ctx.sleep(step)
        remaining -= step
        if not ctx.session.alive or not ctx.session.connected():
            raise DropSession()


def commit(ctx: Context, request: etree._Element, *, rfc: bool = False) -> str:
    state = ctx.state
    check = child(request, "check") is not None
    confirmed = child(request, "confirmed") is not None
    timeout_text = child_text(request, "confirm-timeout")
    minutes = math.ceil(int(timeout_text or 600) / 60) if rfc else int(timeout_text or 10)
    if not check:
        if state.faults.drop_session_on_commit:
            raise DropSession()
        _wait_commit_delay(ctx)
    with state.mutex:
        state.expire_pending()
        error = _locked_by_other(ctx)
        if error:
            raise RpcFailure([error], wrapper="commit-results")
        errors = _validate(ctx)
        if errors:
            raise _commit_failure(errors)
        if check:
            return ("<commit-results>\n<routing-engine junos:style=\"normal\">\n<name>re0</name>\n"
                    "<commit-check-success/>\n</routing-engine>\n</commit-results>")
        if state.faults.commit_error:
            raise _commit_failure([RpcErrorInfo(state.faults.commit_error, tag="invalid-value", path="[edit]")])
        old = state.history[0]
        log = child_text(request, "log") or ""
        if state.faults.commit_mangler is not None:
            mangled = state.faults.commit_mangler(state.candidate.set_statements())
            state.candidate = tree_from_statements(statements_from_set("\n".join(mangled)))
        if confirmed:
            restore = state.pending.restore if state.pending else state.committed
            log = log or f"commit confirmed, rollback in {minutes}mins"
            revision = state.record_commit(state.candidate, ctx.session.username, log)
            state.pending = PendingConfirm(state.clock.now() + minutes * 60, restore.copy(), minutes)
        else:
            state.pending = None
            revision = state.record_commit(state.candidate, ctx.session.username, log)
    if rfc:
        return OK
    return ("<commit-results>\n<routing-engine junos:style=\"normal\">\n<name>re0</name>\n<commit-success/>\n"
            "<commit-revision-information>\n"
            f"<new-db-revision>re0-{int(revision.when)}-{revision.sequence}</new-db-revision>\n"
            f"<old-db-revision>re0-{int(old.when)}-{old.sequence}</old-db-revision>\n"
            "</commit-revision-information>\n</routing-engine>\n</commit-results>")


def commit_configuration(ctx: Context, request: etree._Element) -> str:
    return commit(ctx, request)


def rfc_commit(ctx: Context, request: etree._Element) -> str:
    return commit(ctx, request, rfc=True)


def get_rollback_information(ctx: Context, request: etree._Element) -> str:
    state = ctx.state
    index = int(child_text(request, "rollback", "0") or 0)
    compare = child_text(request, "compare")
    fmt = child_text(request, "format") or request.get("format", "xml")
    with state.mutex:
        if index >= len(state.history) or (compare is not None and int(compare) >= len(state.history)):
            raise RpcFailure([RpcErrorInfo(f"rollback {index}: no such configuration")])
        tree = state.history[index].tree
        if compare is not None:
            body = _diff_output(diff(tree, state.history[int(compare)].tree))
        elif fmt == "text":
            body = f"<configuration-information><configuration-output>{escape(tree.text())}" \
                   "</configuration-output></configuration-information>"
        else:
            inner = "".join(etree.tostring(node, encoding="unicode") for node in tree.xml())
            body = f"<configuration>{inner}</configuration>"
    return f"<rollback-information>\n{body}\n</rollback-information>"


def get_commit_information(ctx: Context, request: etree._Element) -> str:
    with ctx.state.mutex:
        entries = []
        for index, revision in enumerate(ctx.state.history):
            entries.append(
                f"<commit-history><sequence-number>{index}</sequence-number><user>{escape(revision.user)}</user>"
                f"<client>{revision.client}</client><date-time junos:seconds=\"{int(revision.when)}\">"
                f"{timestamp(revision.when)}</date-time><log>{escape(revision.log)}</log></commit-history>")
    return "<commit-information>" + "".join(entries) + "</commit-information>"


def get_commit_revision_information(ctx: Context, request: etree._Element) -> str:
    with ctx.state.mutex:
        revision = ctx.state.history[0]
        comment = ""
        if ctx.state.pending is not None:
            comment = f"<comment>commit confirmed, rollback in {ctx.state.pending.minutes}mins</comment>"
    return (f"<commit-revision-information><revision>re0-{int(revision.when)}-{revision.sequence}</revision>"
            f"<date-time junos:seconds=\"{int(revision.when)}\">{timestamp(revision.when)}</date-time>"
            f"<user>{escape(revision.user)}</user>{comment}</commit-revision-information>")


def ok(ctx: Context, request: etree._Element) -> str:
    return OK


def _software_information(ctx: Context) -> str:
    state = ctx.state
    return (f"<software-information>\n<host-name>{escape(state.hostname)}</host-name>\n"
            f"<product-model>{state.model}</product-model>\n<product-name>{state.model}</product-name>\n"
            f"<junos-version>{state.version}</junos-version>\n"
            "<package-information>\n<name>junos</name>\n"
            f"<comment>JUNOS Software Release [{state.version}]</comment>\n</package-information>\n"
            "</software-information>")


def get_software_information(ctx: Context, request: etree._Element) -> str:
    return _software_information(ctx)


def command(ctx: Context, request: etree._Element) -> str:
    text = " ".join((request.text or "").split())
    if text in ("show version invoke-on all-routing-engines", "show version"):
        return ("<multi-routing-engine-results>\n<multi-routing-engine-item>\n<re-name>re0</re-name>\n"
                f"{_software_information(ctx)}\n</multi-routing-engine-item>\n</multi-routing-engine-results>")
    raise RpcFailure([RpcErrorInfo("syntax error, expecting <command>", bad_element=text, error_type="protocol")])


def get_route_engine_information(ctx: Context, request: etree._Element) -> str:
    uptime = int(ctx.state.clock.now() - ctx.state.booted)
    return ("<route-engine-information>\n<route-engine>\n<slot>0</slot>\n<mastership-state>master</mastership-state>\n"
            "<mastership-priority>master (default)</mastership-priority>\n<status>OK</status>\n"
            f"<model>RE-S-1800x4</model>\n<start-time junos:seconds=\"{int(ctx.state.booted)}\">{timestamp(ctx.state.booted)}</start-time>\n"
            f"<up-time junos:seconds=\"{uptime}\">{uptime // 86400} days</up-time>\n"
            "<last-reboot-reason>Router rebooted after a normal shutdown.</last-reboot-reason>\n"
            "</route-engine>\n</route-engine-information>")


def get_chassis_inventory(ctx: Context, request: etree._Element) -> str:
    return ("<chassis-inventory>\n<chassis junos:style=\"inventory\">\n<name>Chassis</name>\n"
            f"<serial-number>{ctx.state.serial}</serial-number>\n<description>{ctx.state.model.upper()}</description>\n"
            "</chassis>\n</chassis-inventory>")


def get_system_uptime_information(ctx: Context, request: etree._Element) -> str:
    now = ctx.state.clock.now()
    booted = ctx.state.booted
    return ("<system-uptime-information>\n<current-time>\n"
            f"<date-time junos:seconds=\"{int(now)}\">{timestamp(now)}</date-time>\n</current-time>\n"
            f"<system-booted-time>\n<date-time junos:seconds=\"{int(booted)}\">{timestamp(booted)}</date-time>\n"
            f"<time-length junos:seconds=\"{int(now - booted)}\">1d 00:00</time-length>\n</system-booted-time>\n"
            "</system-uptime-information>")


def unsupported(message: str) -> Handler:
    """Handlers for RPCs an MX without the feature answers with an error, as PyEZ's fact gathering expects."""

    def handler(ctx: Context, request: etree._Element) -> str:
        raise RpcFailure([RpcErrorInfo(message)])

    return handler


def file_list(ctx: Context, request: etree._Element) -> str:
    home = f"/var/home/{ctx.session.username}/"
    return (f"<directory-list root-path=\"{home}\">\n<directory>\n<directory-name>{escape(home)}</directory-name>\n"
            "</directory>\n</directory-list>")


def get_interface_information(ctx: Context, request: etree._Element) -> str:
    pattern = child_text(request, "interface-name") or "*"
    with ctx.state.mutex:
        interfaces = [i for name, i in sorted(ctx.state.interfaces.items()) if fnmatch(name, pattern)]
        parts = []
        for interface in interfaces:
            status = "up" if interface.oper_up else "down"
            counters = (
                f"<traffic-statistics junos:style=\"verbose\">\n<input-bytes>{interface.rx_octets}</input-bytes>\n"
                f"<output-bytes>{interface.tx_octets}</output-bytes>\n"
                f"<input-packets>{interface.rx_unicast_packets}</input-packets>\n"
                f"<output-packets>{interface.tx_unicast_packets}</output-packets>\n</traffic-statistics>\n"
                f"<input-error-list>\n<input-errors>{interface.rx_errors}</input-errors>\n"
                f"<input-discards>{interface.rx_discards}</input-discards>\n</input-error-list>\n"
                f"<output-error-list>\n<output-errors>{interface.tx_errors}</output-errors>\n"
                f"<output-drops>{interface.tx_discards}</output-drops>\n</output-error-list>\n"
                "<ethernet-mac-statistics junos:style=\"verbose\">\n"
                f"<input-broadcasts>{interface.rx_broadcast_packets}</input-broadcasts>\n"
                f"<output-broadcasts>{interface.tx_broadcast_packets}</output-broadcasts>\n"
                f"<input-unicasts>{interface.rx_unicast_packets}</input-unicasts>\n"
                f"<output-unicasts>{interface.tx_unicast_packets}</output-unicasts>\n"
                f"<input-multicasts>{interface.rx_multicast_packets}</input-multicasts>\n"
                f"<output-multicasts>{interface.tx_multicast_packets}</output-multicasts>\n"
                "</ethernet-mac-statistics>\n")
            parts.append(
                f"<physical-interface>\n<name>{escape(interface.name)}</name>\n<admin-status>up</admin-status>\n"
                f"<oper-status>{status}</oper-status>\n{_optional('description', interface.description)}"
                "<mtu>1514</mtu>\n<speed>1000mbps</speed>\n"
                "<current-physical-address>00:05:86:71:00:01</current-physical-address>\n"
                "<interface-flapped junos:seconds=\"3600\">2024-01-01 00:00:00 UTC (01:00:00 ago)</interface-flapped>\n"
                f"{counters}</physical-interface>")
    return "<interface-information junos:style=\"normal\">\n" + "\n".join(parts) + "\n</interface-information>"


def get_firewall_filter_information(ctx: Context, request: etree._Element) -> str:
    """`show firewall filter [<name>]` for the FlowSpec filters: a counter per installed FlowSpec route, then a
    policer per rate-limit route (named by its rate in kbit/s, `K_`, and the term name).

    Junos builds a FlowSpec filter only while it holds a route of that family; a filter with no route (or a name
    the emulator does not know) answers with no <filter-information>, never an error (an assumption: no capture
    of that case was found).
    """
    wanted = child_text(request, "filtername") or None
    counters: dict[str, list[str]] = {}
    policers: dict[str, list[str]] = {}
    with ctx.state.mutex:
        installed = ctx.state.sync_flow_counters()
        for (filter_name, term), route in sorted(installed.items()):
            counter = ctx.state.flow_counters[(filter_name, term)]
            counters.setdefault(filter_name, []).append(
                f"<counter>\n<counter-name>{escape(term)}</counter-name>\n<packet-count>{counter.packets}"
                f"</packet-count>\n<byte-count>{counter.bytes}</byte-count>\n</counter>")
            if route.policer_name:
                policers.setdefault(filter_name, []).append(
                    f"<policer>\n<policer-name>{escape(route.policer_name)}</policer-name>\n<packet-count>"
                    f"{counter.policed_packets}</packet-count>\n<byte-count>{counter.policed_bytes}</byte-count>\n"
                    "</policer>")
    blocks = [f"<filter-information>\n<filter-name>{name}</filter-name>\n"
              + "\n".join(entries + policers.get(name, [])) + "\n</filter-information>"
              for name, entries in sorted(counters.items()) if wanted in (None, name)]
    namespace = f"http://xml.juniper.net/junos/{ctx.state.version}/junos-filter"
    return f'<firewall-information xmlns="{namespace}">\n' + "\n".join(blocks) + "\n</firewall-information>"


def get_instance_information(ctx: Context, request: etree._Element) -> str:
    with ctx.state.mutex:
        names = ["master", *sorted(ctx.state.committed.root.get("routing-instances", {}))]
        names += sorted({n.instance for n in ctx.state.bgp.values()} - set(names))
    cores = "".join(f"<instance-core>\n<instance-name>{escape(name)}</instance-name>\n"
                    f"<instance-type>{'forwarding' if name == 'master' else 'vrf'}</instance-type>\n</instance-core>\n"
                    for name in names)
    return f"<instance-information junos:style=\"terse\">\n{cores}</instance-information>"


def _optional(tag: str, value: str) -> str:
    return f"<{tag}>{escape(value)}</{tag}>\n" if value else ""


def _neighbors(ctx: Context, request: etree._Element) -> list[BgpNeighbor]:
    instance = child_text(request, "instance") or None
    wanted = child_text(request, "neighbor-address") or None
    with ctx.state.mutex:
        return [n for (inst, address), n in sorted(ctx.state.bgp.items())
                if (instance is None or inst == instance) and (wanted is None or address == wanted)]


def _table(neighbor: BgpNeighbor) -> str:
    return neighbor.table if neighbor.instance == "master" else f"{neighbor.instance}.{neighbor.table}"


def get_bgp_neighbor_information(ctx: Context, request: etree._Element) -> str:
    peers = []
    for n in _neighbors(ctx, request):
        rib = ""
        if n.state == "Established":
            rib = (f"<bgp-rib junos:style=\"detail\">\n<name>{_table(n)}</name>\n<rib-bit>20000</rib-bit>\n"
                   "<bgp-rib-state>BGP restart is complete</bgp-rib-state>\n<send-state>in sync</send-state>\n"
                   f"<active-prefix-count>{n.accepted_prefixes}</active-prefix-count>\n"
                   f"<received-prefix-count>{n.received_prefixes}</received-prefix-count>\n"
                   f"<accepted-prefix-count>{n.accepted_prefixes}</accepted-prefix-count>\n"
                   "<suppressed-prefix-count>0</suppressed-prefix-count>\n"
                   f"<advertised-prefix-count>{n.advertised_prefixes}</advertised-prefix-count>\n</bgp-rib>\n")
        peers.append(
            f"<bgp-peer junos:style=\"detail\">\n<peer-address>{n.address}+179</peer-address>\n"
            f"<peer-as>{n.remote_as}</peer-as>\n<local-address>{n.local_address}+50000</local-address>\n"
            f"<local-as>{n.local_as}</local-as>\n{_optional('description', n.description)}"
            f"<peer-type>External</peer-type>\n<peer-state>{n.state}</peer-state>\n"
            f"<peer-fwd-rti>{escape(n.instance)}</peer-fwd-rti>\n<peer-id>{n.peer_id or n.address}</peer-id>\n"
            f"<local-id>{n.router_id}</local-id>\n<bgp-option-information>\n"
            "<bgp-options>Preference PeerAS Refresh</bgp-options>\n"
            "<bgp-options-extended>GracefulShutdownRcv</bgp-options-extended>\n</bgp-option-information>\n"
            f"{rib}</bgp-peer>")
    return "<bgp-information>\n" + "\n".join(peers) + "\n</bgp-information>"


def get_bgp_summary_information(ctx: Context, request: etree._Element) -> str:
    peers = []
    for n in _neighbors(ctx, request):
        peers.append(
            f"<bgp-peer junos:style=\"terse\">\n<peer-address>{n.address}</peer-address>\n"
            f"<peer-as>{n.remote_as}</peer-as>\n<peer-state>{n.state}</peer-state>\n"
            f"<elapsed-time junos:seconds=\"{n.elapsed_seconds}\">{n.elapsed_seconds // 60}:00</elapsed-time>\n"
            f"<bgp-rib>\n<name>{_table(n)}</name>\n<received-prefix-count>{n.received_prefixes}"
            "</received-prefix-count>\n</bgp-rib>\n</bgp-peer>")
    return ("<bgp-information>\n<peer-count>{}</peer-count>\n{}\n</bgp-information>".format(
        len(peers), "\n".join(peers)))


HANDLERS: dict[str, Handler] = {
    "lock-configuration": lock_configuration,
    "unlock-configuration": unlock_configuration,
    "lock": lock_configuration,
    "unlock": unlock_configuration,
    "discard-changes": discard_changes,
    "load-configuration": load_configuration,
    "get-configuration": get_configuration,
    "get-config": get_config,
    "commit-configuration": commit_configuration,
    "commit": rfc_commit,
    "get-rollback-information": get_rollback_information,
    "get-commit-information": get_commit_information,
    "get-commit-revision-information": get_commit_revision_information,
    "open-configuration": ok,
    "close-configuration": ok,
    "get-software-information": get_software_information,
    "command": command,
    "get-route-engine-information": get_route_engine_information,
    "get-chassis-inventory": get_chassis_inventory,
    "get-system-uptime-information": get_system_uptime_information,
    "get-virtual-chassis-information": unsupported("the virtual-chassis-control subsystem is not running"),
    "get-chassis-cluster-status": unsupported("Chassis cluster is not enabled."),
    "get-jnu-satellites-information": unsupported("Junos Node Unifier is not running"),
    "get-ethernet-switching-table-information": unsupported("the l2-learning subsystem is not running"),
    "get-system-nodes-information": unsupported("syntax error, expecting <command>"),
    "file-show": unsupported("could not resolve file"),
    "file-list": file_list,
    "get-interface-information": get_interface_information,
    "get-instance-information": get_instance_information,
    "get-firewall-filter-information": get_firewall_filter_information,
    "get-bgp-neighbor-information": get_bgp_neighbor_information,
    "get-bgp-summary-information": get_bgp_summary_information,
}


def dispatch(ctx: Context, request: etree._Element) -> str:
    """Run one RPC. A commit confirmed whose time ran out is rolled back first, whatever the RPC."""
    with ctx.state.mutex:
        ctx.state.expire_pending()
    name = local(request.tag)
    handler = HANDLERS.get(name)
    if handler is None:
        raise RpcFailure([RpcErrorInfo("syntax error", bad_element=name, error_type="protocol")])
    return handler(ctx, request)
