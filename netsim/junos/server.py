"""NETCONF over SSH on plain paramiko: the transport half of the Junos emulator, and its public test API.

One listening socket on 127.0.0.1, one thread per SSH connection, NETCONF 1.0 end-of-message framing (Junos
advertises base:1.0 unless told to be RFC compliant, so ncclient never switches to chunked framing).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self
from xml.sax.saxutils import quoteattr

import paramiko
from lxml import etree

from netsim.junos.config import ConfigTree, statements_from_set, tree_from_statements
from netsim.junos.rpc import Context, DropSession, RpcErrorInfo, RpcFailure, dispatch, local
from netsim.junos.state import (
    BgpNeighbor,
    EmulatorClock,
    FilterCounter,
    FlowRoute,
    InterfaceCounters,
    PhantomSession,
    RouterState,
    Session,
    Validator,
)

logger = logging.getLogger(__name__)

EOM = b"]]>]]>"
BASE_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
CAPABILITIES = (
    "urn:ietf:params:netconf:base:1.0",
    "urn:ietf:params:netconf:capability:candidate:1.0",
    "urn:ietf:params:netconf:capability:confirmed-commit:1.0",
    "urn:ietf:params:netconf:capability:validate:1.0",
    "urn:ietf:params:netconf:capability:url:1.0?scheme=http,ftp,file",
    "urn:ietf:params:xml:ns:netconf:base:1.0",
    "urn:ietf:params:xml:ns:netconf:capability:candidate:1.0",
    "urn:ietf:params:xml:ns:netconf:capability:confirmed-commit:1.0",
    "urn:ietf:params:xml:ns:netconf:capability:validate:1.0",
    "http://xml.juniper.net/netconf/junos/1.0",
    "http://xml.juniper.net/dmi/system/1.0",
)
_PARSER = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)


@functools.cache
def host_key() -> paramiko.PKey:
    """One host key per process: key generation costs more than a whole commit cycle, so never per router."""
    return paramiko.ECDSAKey.generate()


def persistent_host_key(path: Path) -> paramiko.PKey:
    """The host key kept in `path` (made there on first use): an emulated router keeps its identity across
    restarts, as a real one does, so clients that verify host keys keep trusting it."""
    if path.exists():
        return paramiko.ECDSAKey.from_private_key_file(str(path))
    key = paramiko.ECDSAKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    key.write_private_key_file(str(path))
    return key


class _SshServer(paramiko.ServerInterface):
    """Password login checked against the emulator's credentials; the netconf subsystem is the only service."""

    def __init__(self, emulator: JunosEmulator) -> None:
        self.emulator = emulator
        self.username = ""
        self.ready = threading.Event()

    def get_allowed_auths(self, username: str) -> str:
        return "password"

    def check_auth_password(self, username: str, password: str) -> int:
        state = self.emulator.state
        if state.faults.refuse_login or (username, password) != (self.emulator.username, self.emulator.password):
            return paramiko.AUTH_FAILED
        self.username = username
        return paramiko.AUTH_SUCCESSFUL

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_subsystem_request(self, channel: paramiko.Channel, name: str) -> bool:
        if name != "netconf":
            return False
        self.ready.set()
        return True

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        if b"xml-mode netconf" not in command:
            return False
        self.ready.set()
        return True


class JunosEmulator:
    """A stateful Junos router speaking NETCONF over SSH on 127.0.0.1, for PyEZ and NAPALM to drive unmodified.

    Tests read the configuration databases (`committed_set()`, `candidate_set()`), move the clock (`advance()`),
    set operational data (`set_bgp_neighbor()`, `set_interface_counters()`), count traffic on FlowSpec routes
    (`learn_flow_routes()`, `count_flow()`, `flow_counters()`; netsim.dataplane does), add commit-check hooks
    (`add_validator()`) and inject faults (`refuse_login()`, `refuse_connections()`, `hang_on()`,
    `drop_session_on_commit()`, `set_commit_delay()`, `set_commit_error()`, `hold_lock()`).
    """

    def __init__(self, hostname: str = "router1", username: str = "sluice", password: str = "sluice", *,
                 port: int = 0, host: str = "127.0.0.1", clock_scale: float = 1.0,
                 state_file: str | Path | None = None, model: str = "mx960",
                 host_key: paramiko.PKey | None = None) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the emulator only listens on the loopback interface")
        self.hostname = hostname
        # The process-wide key unless the test wants another (a router replaced, or an impostor on its address).
        self.host_key = host_key
        self.username = username
        self.password = password
        self.host = host
        self.clock = EmulatorClock(clock_scale)
        self.state = RouterState(hostname, clock=self.clock, model=model)
        self.state_file = Path(state_file) if state_file else None
        self._requested_port = port
        self._listener: socket.socket | None = None
        self._refused_port: int | None = None
        self._threads: list[threading.Thread] = []
        self._transports: set[paramiko.Transport] = set()
        self._phantom: PhantomSession | None = None
        self._stopping = threading.Event()
        self._registry_lock = threading.Lock()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def public_key(self) -> str:
        """The host key as `<type> <base64>`, as an SSH client records it."""
        key = self.host_key or host_key()
        return f"{key.get_name()} {key.get_base64()}"

    @property
    def port(self) -> int:
        if self._refused_port is not None:
            return self._refused_port
        if self._listener is None:
            raise RuntimeError("emulator not started")
        return int(self._listener.getsockname()[1])

    def start(self) -> Self:
        """Bind, then serve in background threads. Loads the state file, if any, as the committed config."""
        if self.state_file and self.state_file.exists():
            self.load_committed(self.state_file.read_text())
        if self.state_file:
            self.state.commit_listeners.append(self._save_state)
        host_key()
        self._listen(self._requested_port)
        self._spawn(self._expiry_loop, f"junos-{self.hostname}-clock")
        return self

    def _listen(self, port: int) -> None:
        listener = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, port))
        listener.listen(64)
        self._listener = listener
        self._spawn(self._accept_loop, f"junos-{self.hostname}-accept", listener)

    def stop(self) -> None:
        """Close the listener and every session; waits for the serving threads to end."""
        self._stopping.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        with self._registry_lock:
            transports = list(self._transports)
        for transport in transports:
            transport.close()
        with self.state.changed:
            self.state.changed.notify_all()
        for thread in list(self._threads):
            thread.join(timeout=5)

    def _spawn(self, target: object, name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._spawn(self._serve, f"junos-{self.hostname}-session", connection)

    def _expiry_loop(self) -> None:
        """Roll back unconfirmed commits on time, even when no session is asking anything."""
        state = self.state
        with state.changed:
            while not self._stopping.is_set():
                wait = 0.5
                if state.pending is not None:
                    remaining = (state.pending.deadline - self.clock.now()) / max(self.clock.scale, 1e-9)
                    wait = max(0.0, min(wait, remaining))
                state.changed.wait(wait)
                state.expire_pending()

    def _serve(self, connection: socket.socket) -> None:
        transport = paramiko.Transport(connection)
        with self._registry_lock:
            self._transports.add(transport)
        try:
            transport.add_server_key(self.host_key or host_key())
            server = _SshServer(self)
            try:
                transport.start_server(server=server)
            except (paramiko.SSHException, EOFError, OSError):
                return
            channel = transport.accept(timeout=30)
            if channel is None or not server.ready.wait(timeout=30):
                return
            session = Session(self.state.new_session_id(), server.username, close=transport.close,
                              connected=transport.is_active)
            try:
                self._netconf(channel, session)
            except (OSError, EOFError, paramiko.SSHException) as error:
                logger.debug("session %s ended: %s", session.session_id, error)
            finally:
                self.state.session_closed(session)
        finally:
            transport.close()
            with self._registry_lock:
                self._transports.discard(transport)

    def _hello(self, session: Session) -> bytes:
        capabilities = "".join(f"<capability>{c}</capability>" for c in CAPABILITIES)
        return (f'<hello xmlns="{BASE_NS}"><capabilities>{capabilities}</capabilities>'
                f"<session-id>{session.session_id}</session-id></hello>\n").encode() + EOM

    def _netconf(self, channel: paramiko.Channel, session: Session) -> None:
        channel.sendall(self._hello(session))
        context = Context(self.state, session)
        buffer = b""
        while True:
            data = channel.recv(65536)
            if not data:
                return
            buffer += data
            while EOM in buffer:
                message, buffer = buffer.split(EOM, 1)
                if message.strip() and not self._handle(channel, context, message):
                    return

    def _reply(self, message_id: str | None, body: str) -> bytes:
        mid = f" message-id={quoteattr(message_id)}" if message_id is not None else ""
        version = self.state.version
        return (f'<rpc-reply xmlns="{BASE_NS}" xmlns:junos="http://xml.juniper.net/junos/{version}/junos"{mid}>\n'
                f"{body}\n</rpc-reply>\n").encode() + EOM

    def _handle(self, channel: paramiko.Channel, context: Context, message: bytes) -> bool:
        """Answer one message; False ends the session."""
        try:
            root = etree.fromstring(message.strip(), _PARSER)
        except etree.XMLSyntaxError:
            channel.sendall(self._reply(None, RpcErrorInfo("syntax error", error_type="rpc").xml()))
            return True
        if local(root.tag) == "hello":
            return True
        message_id = root.get("message-id")
        request = next((node for node in root if isinstance(node.tag, str)), None)
        if local(root.tag) != "rpc" or request is None:
            channel.sendall(self._reply(message_id, RpcErrorInfo("syntax error", error_type="rpc").xml()))
            return True
        if local(request.tag) == "close-session":
            channel.sendall(self._reply(message_id, "<ok/>"))
            return False
        if not self._wait_unhung(local(request.tag), context.session):
            return False
        try:
            body = dispatch(context, request)
        except RpcFailure as failure:
            body = failure.body()
        except DropSession:
            context.session.close()
            return False
        except Exception:
            logger.exception("emulator failed to handle %s", local(request.tag))
            body = RpcErrorInfo("internal error in the emulator").xml()
        channel.sendall(self._reply(message_id, body))
        return True

    def _wait_unhung(self, name: str, session: Session) -> bool:
        """A hung RPC: received, never answered, until the fault is cleared (True) or the session or the emulator
        goes away (False). Nothing of the RPC is applied meanwhile."""
        while self.state.faults.hang_rpcs & {name, "*"}:
            if self._stopping.is_set() or not session.connected():
                return False
            time.sleep(0.02)
        return True

    def _save_state(self, tree: ConfigTree) -> None:
        assert self.state_file is not None
        self.state_file.write_text("\n".join(tree.set_statements()) + "\n")

    def committed_set(self) -> list[str]:
        """The committed configuration as canonical, sorted `set` statements."""
        with self.state.mutex:
            self.state.expire_pending()
            return self.state.committed.set_statements()

    def candidate_set(self) -> list[str]:
        with self.state.mutex:
            return self.state.candidate.set_statements()

    def load_committed(self, set_text: str) -> None:
        """Replace the committed configuration (and candidate) directly, as if an operator had committed it."""
        tree = tree_from_statements(statements_from_set(set_text))
        if "system" not in tree.root:
            tree.set(("system", "host-name", self.hostname))
        with self.state.mutex:
            self.state.record_commit(tree, "root", "loaded by test")
            self.state.candidate = tree.copy()

    def lock_holder(self) -> str | None:
        """Who holds the exclusive configuration lock, or None."""
        with self.state.mutex:
            return self.state.lock_owner.username if self.state.lock_owner else None

    def commit_pending(self) -> bool:
        """Whether a commit confirmed waits for its confirmation."""
        with self.state.mutex:
            self.state.expire_pending()
            return self.state.pending is not None

    def rollback_count(self) -> int:
        with self.state.mutex:
            return len(self.state.history)

    def active_sessions(self) -> int:
        with self._registry_lock:
            return sum(1 for transport in self._transports if transport.is_active())

    def advance(self, seconds: float) -> None:
        """Move the emulated clock forward; an unconfirmed commit whose time passed rolls back at once."""
        self.clock.advance(seconds)
        with self.state.changed:
            self.state.expire_pending()
            self.state.changed.notify_all()

    def set_bgp_neighbor(self, address: str, *, remote_as: int, state: str = "Established",
                         instance: str = "master", **details: object) -> None:
        """Add or update a BGP peer; `details` are BgpNeighbor fields (received_prefixes, description, ...)."""
        with self.state.mutex:
            self.state.bgp[(instance, address)] = BgpNeighbor(
                address, remote_as, state=state, instance=instance, **details)  # type: ignore[arg-type]

    def remove_bgp_neighbor(self, address: str, *, instance: str = "master") -> None:
        with self.state.mutex:
            self.state.bgp.pop((instance, address), None)

    def set_interface_counters(self, name: str, **counters: int | bool | str) -> None:
        """Add or update an interface; `counters` are InterfaceCounters fields (rx_octets, tx_octets, ...)."""
        with self.state.mutex:
            interface = self.state.interfaces.setdefault(name, InterfaceCounters(name))
            for key, value in counters.items():
                if not hasattr(interface, key):
                    raise TypeError(f"unknown interface counter {key}")
                setattr(interface, key, value)

    def installed_flow_routes(self) -> dict[tuple[str, str], FlowRoute]:
        """(filter name, term name) -> FlowSpec route, for the committed flow routes and those learned over BGP."""
        with self.state.mutex:
            self.state.expire_pending()
            return self.state.installed_flow_routes()

    def learn_flow_routes(self, routes: list[FlowRoute]) -> None:
        """The FlowSpec routes the router holds from BGP now (replacing the previous set); counters follow."""
        with self.state.mutex:
            self.state.learn_flow_routes(routes)

    def count_flow(self, route: FlowRoute, *, packets: int, octets: int, policed_packets: int = 0,
                   policed_octets: int = 0) -> bool:
        """Add traffic to the counter (and policer) of an installed route's term; False if it is not installed.

        `packets`/`octets` go to the term's counter, `policed_*` to a rate-limit route's policer (see
        FilterCounter for what each counts).
        """
        key = (route.filter_name, route.term_name)
        with self.state.mutex:
            counter = self.state.flow_counters.get(key)
            if counter is None:
                return False
            counter.packets += packets
            counter.bytes += octets
            counter.policed_packets += policed_packets
            counter.policed_bytes += policed_octets
            return True

    def flow_counters(self) -> dict[tuple[str, str], FilterCounter]:
        """A copy of the FlowSpec filter counters: (filter name, term name) -> counts."""
        with self.state.mutex:
            self.state.expire_pending()
            return {key: FilterCounter(**vars(counter)) for key, counter in self.state.flow_counters.items()}

    def add_validator(self, validator: Validator) -> None:
        """A commit-check hook: called with the candidate's set statements, returns an error message or None."""
        with self.state.mutex:
            self.state.validators.append(validator)

    def clear_validators(self) -> None:
        with self.state.mutex:
            self.state.validators.clear()

    def refuse_login(self, refuse: bool = True) -> None:
        self.state.faults.refuse_login = refuse

    def refuse_connections(self, refuse: bool = True) -> None:
        """Close the listening socket (new connections are refused, as by a router whose SSH is down or a
        firewall that rejects) or open it again on the same port. Sessions already open are left alone."""
        if refuse and self._listener is not None:
            listener, self._listener = self._listener, None
            self._refused_port = int(listener.getsockname()[1])
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        elif not refuse and self._listener is None and self._refused_port is not None:
            self._listen(self._refused_port)
            self._refused_port = None

    def go_down(self, down: bool = True) -> None:
        """The router disappears (power, or its management network): every open session is cut and new connections
        are refused; `go_down(False)` brings it back on the same port with the configuration it had committed."""
        self.refuse_connections(down)
        if down:
            with self._registry_lock:
                transports = list(self._transports)
            for transport in transports:
                transport.close()

    def hang_on(self, *rpcs: str) -> None:
        """Receive these RPCs (e.g. "commit-configuration", "lock-configuration"; "*" for all) and never answer
        them, as a router whose management plane froze; none with no argument. Cleared by clear_faults()."""
        self.state.faults.hang_rpcs = frozenset(rpcs)

    def drop_session_on_commit(self, drop: bool = True) -> None:
        """Cut the SSH connection when the next commit (not commit check) arrives, before applying it."""
        self.state.faults.drop_session_on_commit = drop

    def set_commit_delay(self, seconds: float) -> None:
        """Make commits slow; a client that gives up and hangs up leaves the commit unapplied."""
        self.state.faults.commit_delay = seconds

    def set_commit_error(self, message: str | None) -> None:
        """Fail every commit (not commit check) with this message, until set back to None."""
        self.state.faults.commit_error = message

    def set_commit_mangler(self, mangler: Callable[[list[str]], list[str]] | None) -> None:
        """Silently change what a commit applies (set statements in, set statements out): a router bug."""
        self.state.faults.commit_mangler = mangler

    def set_load_error(self, message: str | None) -> None:
        self.state.faults.load_error = message

    def hold_lock(self, username: str = "admin") -> None:
        """Take the configuration lock as another user would with `configure exclusive`."""
        with self.state.mutex:
            if self.state.lock_owner is not None:
                raise RuntimeError("the configuration is already locked")
            self._phantom = PhantomSession(self.state.new_session_id(), username)
            self.state.lock_owner = self._phantom

    def release_lock(self) -> None:
        """Release a lock taken with hold_lock()."""
        if self._phantom is not None:
            self.state.session_closed(self._phantom)
            self._phantom = None

    def reset(self, committed_set: str = "") -> None:
        """Back to a known state between tests: no faults, hooks, lock or pending commit; the given config."""
        self.clear_faults()
        self.clear_validators()
        with self.state.mutex:
            self.state.lock_owner = None
            self.state.pending = None
        self.load_committed(committed_set)

    def clear_faults(self) -> None:
        self.refuse_connections(False)
        self.hang_on()
        self.refuse_login(False)
        self.drop_session_on_commit(False)
        self.set_commit_delay(0)
        self.set_commit_error(None)
        self.set_load_error(None)
        self.set_commit_mangler(None)
        self.release_lock()
