"""Routers of other vendors through NAPALM, behind the same two-phase interface as the Junos driver.

NAPALM gives merge, compare, commit with automatic revert (`revert_in`, seconds, a multiple of 60 on Junos),
confirm, discard and rollback. Configuration comes from the vendor's templates; Junos is the vendor with templates
today (the same ones JunosDriver renders), which is also how this driver is tested, against the Junos emulator.

Per-rule FlowSpec counters are not offered: NAPALM 5.2 has no getter for them (its one firewall getter,
`get_firewall_policies`, reads SRX/FortiOS security policies and is not implemented by the junos or eos driver),
so `flowspec_counters` keeps the interface's default and raises UnsupportedError. Junos routers are read with
JunosDriver instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from napalm import get_network_driver
from napalm.base import NetworkDriver
from napalm.base import exceptions as napalm_errors

from devices.drivers import junos as junos_render
from devices.drivers.base import (
    CommitError,
    ConfigDriver,
    ConfigLoadError,
    ConnectError,
    DeviceIntent,
    DriverError,
    DriverTimeoutError,
    LockError,
    PortClosedError,
    RenderError,
    StageResult,
    VerifyError,
)
from devices.drivers.hostkeys import HostKeyTrust, KnownHostsFiles, check_host_key

logger = logging.getLogger(__name__)


def _junos_errors() -> dict[type[BaseException], type[DriverError]]:
    """PyEZ errors surface through NAPALM's junos driver unwrapped; map them when PyEZ is installed."""
    try:
        from jnpr.junos import exception as pyez
    except ImportError:
        return {}
    return {
        pyez.ConnectRefusedError: PortClosedError, pyez.ConnectTimeoutError: PortClosedError,
        pyez.ConnectError: ConnectError, pyez.RpcTimeoutError: DriverTimeoutError, pyez.LockError: LockError,
        pyez.UnlockError: LockError, pyez.ConfigLoadError: ConfigLoadError, pyez.CommitError: CommitError,
        pyez.RpcError: DriverError,
    }


_VENDOR_ERRORS = _junos_errors()
_NAPALM_ERRORS: dict[type[BaseException], type[DriverError]] = {
    napalm_errors.ConnectionException: ConnectError,
    napalm_errors.ConnectAuthError: ConnectError,
    napalm_errors.ConnectTimeoutError: PortClosedError,
    napalm_errors.LockError: LockError,
    napalm_errors.UnlockError: LockError,
    napalm_errors.MergeConfigException: ConfigLoadError,
    napalm_errors.ReplaceConfigException: ConfigLoadError,
    napalm_errors.CommitError: CommitError,
    napalm_errors.CommitConfirmException: CommitError,
}


@contextmanager
def translate_errors(host: str) -> Iterator[None]:
    """Map NAPALM (and the vendor library's) exceptions to the driver hierarchy by type."""
    try:
        yield
    except DriverError:
        raise
    except (TimeoutError, ConnectionError, OSError) as error:
        raise PortClosedError(f"{host}: connection failed: {error}") from error
    except Exception as error:
        for table in (_NAPALM_ERRORS, _VENDOR_ERRORS):
            for source, target in table.items():
                if isinstance(error, source):
                    raise target(f"{host}: {type(error).__name__}: {error}") from error
        raise


Renderer = Callable[[DeviceIntent], list[str]]
Reader = Callable[[list[str], str], DeviceIntent]


class NapalmDriver(ConfigDriver):
    """A router driven through NAPALM's `get_network_driver(driver_name)`.

    `optional_args` go to NAPALM unchanged (`port` is set from `port`). For Junos the Sluice templates and the
    `set`-statement reader are built in; other vendors pass `renderer` (intent -> config lines) and `reader`
    (running config lines, routing instance -> intent).
    Side effects: stage() commits with `revert_in`, so an unconfirmed change reverts by itself.
    """

    def __init__(self, driver_name: str, host: str, port: int, username: str, password: str, *,
                 timeout: int = 30, optional_args: dict[str, Any] | None = None,
                 renderer: Renderer | None = None, reader: Reader | None = None, host_key: str | None = None,
                 trust_host_key: HostKeyTrust | None = None) -> None:
        self.driver_name = driver_name
        self.host = host
        self.port = port
        self.timeout = timeout
        self.host_key = host_key
        self._trust = trust_host_key
        args = dict(optional_args or {})
        args["port"] = port
        self._known_hosts = KnownHostsFiles(host, port) if host_key or trust_host_key else None
        if self._known_hosts is not None:
            # Junos: PyEZ reads known_hosts through the ssh_config NAPALM passes on; netmiko-based drivers take
            # their own strict host key options.
            args["ssh_config_file"] = str(self._known_hosts.ssh_config)
            if driver_name != "junos":
                args.update(ssh_strict=True, system_host_keys=False, alt_host_keys=True,
                            alt_key_file=str(self._known_hosts.known_hosts))
        if driver_name == "junos":
            renderer = renderer or junos_render.render_statements
            reader = reader or self._junos_reader
        self._renderer = renderer
        self._reader = reader
        self._device: NetworkDriver = get_network_driver(driver_name)(
            host, username, password, timeout=timeout, optional_args=args,
        )
        if self._known_hosts is not None and driver_name == "junos":
            # NAPALM's junos driver has no option for PyEZ's `hostkey_verify`; its Device reads this at open().
            self._device.device._hostkey_verify = True
        self._pending = False
        self._loaded = False

    def open(self) -> None:
        """Connect and log in; raises HostKeyError, before any password is sent, when the key is not the recorded one."""
        if self._known_hosts is not None:
            self.host_key = check_host_key(self.host, self.port, self.host_key, timeout=self.timeout,
                                           trust=self._trust)
            self._known_hosts.write(self.host_key)
        with translate_errors(self.host):
            self._device.open()

    def close(self) -> None:
        """Discard what is loaded but not committed, then close; a pending commit is left to revert by itself."""
        if self._loaded:
            self._discard_quietly()
        with translate_errors(self.host):
            self._device.close()

    def _render(self, intent: DeviceIntent) -> list[str]:
        if self._renderer is None:
            raise RenderError(f"no templates for NAPALM driver {self.driver_name!r}")
        return self._renderer(intent)

    @staticmethod
    def _junos_reader(lines: list[str], instance: str) -> DeviceIntent:
        return junos_render.intent_from_statements(lines, instance)

    def _running_lines(self) -> list[str]:
        if self.driver_name == "junos":
            running = self._device.get_config(retrieve="running", format="set")["running"]
        else:
            running = self._device.get_config(retrieve="running")["running"]
        return [line.strip() for line in running.splitlines() if line.strip()]

    def _changes(self, intent: DeviceIntent, desired: list[str]) -> list[str]:
        if self.driver_name == "junos":
            return junos_render.change_statements(self._running_lines(), desired, intent.routing_instance)
        return desired

    def _discard_quietly(self) -> None:
        try:
            with translate_errors(self.host):
                self._device.discard_config()
        except DriverError as error:
            logger.warning("%s: discarding the candidate failed: %s", self.host, error)
        self._loaded = False

    def _load(self, intent: DeviceIntent) -> str:
        desired = self._render(intent)
        changes = self._changes(intent, desired)
        if not changes:
            return ""
        self._loaded = True
        self._device.load_merge_candidate(config="\n".join(changes))
        return self._device.compare_config() or ""

    def stage(self, intent: DeviceIntent, *, confirm_minutes: int = 2) -> StageResult:
        """Merge, compare, commit with revert_in, read back. Raises a DriverError subclass."""
        self._render(intent)
        try:
            with translate_errors(self.host):
                diff = self._load(intent)
                if not diff:
                    if self._loaded:
                        self._device.discard_config()
                        self._loaded = False
                    return StageResult(diff="", changed=False, commit_pending=False)
                self._device.commit_config(revert_in=confirm_minutes * 60)
                self._loaded = False
                self._pending = True
                if self._reader is not None:
                    found = self._reader(self._running_lines(), intent.routing_instance)
                    if not junos_render.same_intent(intent, found):
                        raise VerifyError(f"{self.host}: the committed configuration does not match the intent")
                return StageResult(diff=diff, changed=True, commit_pending=True)
        except BaseException as error:
            if self._pending and not isinstance(error, (ConnectError, DriverTimeoutError)):
                self._rollback_quietly()
            elif self._loaded:
                self._discard_quietly()
            raise

    def _rollback_quietly(self) -> None:
        try:
            with translate_errors(self.host):
                self._device.rollback()
        except DriverError as error:
            logger.warning("%s: rolling back failed; the commit will revert by itself: %s", self.host, error)
        self._pending = False

    def confirm(self) -> None:
        if not self._pending:
            return
        with translate_errors(self.host):
            self._device.confirm_commit()
        self._pending = False

    def abort(self) -> None:
        """Roll back a pending commit, or discard a loaded candidate."""
        with translate_errors(self.host):
            if self._pending:
                self._device.rollback()
                self._pending = False
            else:
                self._device.discard_config()
                self._loaded = False

    def dry_run(self, intent: DeviceIntent) -> str:
        self._render(intent)
        try:
            with translate_errors(self.host):
                diff = self._load(intent)
                if self._loaded:
                    self._device.discard_config()
                    self._loaded = False
                return diff
        except BaseException:
            if self._loaded:
                self._discard_quietly()
            raise

    def read_intent(self, routing_instance: str = "SLUICE-DIVERT") -> DeviceIntent:
        if self._reader is None:
            raise DriverError(f"no configuration reader for NAPALM driver {self.driver_name!r}")
        with translate_errors(self.host):
            return self._reader(self._running_lines(), routing_instance)

    def get_bgp_neighbors(self) -> dict[str, dict[str, object]]:
        """Peers of every routing instance, flattened; address families summed into prefix counts."""
        with translate_errors(self.host):
            instances = self._device.get_bgp_neighbors()
        neighbors: dict[str, dict[str, object]] = {}
        for instance, data in instances.items():
            for address, peer in data.get("peers", {}).items():
                families = peer.get("address_family", {}).values()

                def total(key: str, families: Any = families) -> int:
                    return sum(max(int(f.get(key, 0)), 0) for f in families)

                neighbors[address] = {
                    "is_up": bool(peer.get("is_up")), "remote_as": int(peer.get("remote_as", 0)),
                    "local_as": int(peer.get("local_as", 0)), "description": peer.get("description", ""),
                    "instance": instance, "uptime": peer.get("uptime", 0),
                    "received_prefixes": total("received_prefixes"),
                    "accepted_prefixes": total("accepted_prefixes"), "sent_prefixes": total("sent_prefixes"),
                }
        return neighbors

    def get_interfaces_counters(self) -> dict[str, dict[str, int]]:
        with translate_errors(self.host):
            counters = self._device.get_interfaces_counters()
        return {name: {key: int(value) for key, value in values.items()} for name, values in counters.items()}
