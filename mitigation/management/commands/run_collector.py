"""Run Sluice's flow collector against the database: verified prefixes in, recorded attack signals out.

The collector itself (`collector/`) is Django-free; this command gives it the three things that live in Django: the
monitored prefixes (the verified-prefix registry with each tenant's detection thresholds) and a signal sink that
calls `record_signal`, and the allow list of flow exporters (routers' `exporter_addresses`, reloaded with the
prefixes). The sink never lets a database problem stop collection: failed signals wait in a small
bounded queue and are retried on the next signal and at every prefix refresh.

`--processes N` runs N collectors on the same ports (SO_REUSEPORT: the kernel keeps each exporter on one of them)
under this process, which restarts any that dies. They add their aggregates into the same Redis hashes and only
the one holding the detection lease emits signals, so N processes detect exactly like one, on N cores.
"""

from __future__ import annotations

import logging
import os
import signal as signals
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, InterfaceError, close_old_connections, connections

from collector import MonitoredPrefix, run_collector
from collector.signals import AttackSignal
from collector.store import DEFAULT_NAMESPACE
from core.actors import Actor
from devices.models import Router
from mitigation.services.signals import record_signal
from tenants.models import TenantPolicy, VerifiedPrefix

logger = logging.getLogger(__name__)

ACTOR = Actor("detector", "sluice-flow")
DEFAULT_HOST = "127.0.0.1"
# Listener name -> (environment variable with its port, default port); each socket accepts every format.
DEFAULT_PORTS: dict[str, tuple[str, int]] = {
    "sflow": ("SLUICE_SFLOW_PORT", 6343),
    "netflow": ("SLUICE_NETFLOW_PORT", 2055),
    "ipfix": ("SLUICE_IPFIX_PORT", 4739),
}
MAX_PENDING_SIGNALS = 1000
RESTART_DELAY_SECONDS = 1.0


def default_listen(environ: Mapping[str, str] | None = None) -> dict[str, tuple[str, int]]:
    """The three standard listeners on 127.0.0.1, ports overridable through the environment."""
    environ = os.environ if environ is None else environ
    host = environ.get("SLUICE_COLLECTOR_HOST", DEFAULT_HOST)
    return {name: (host, int(environ.get(variable, port))) for name, (variable, port) in DEFAULT_PORTS.items()}


def parse_listen(values: list[str]) -> dict[str, tuple[str, int]]:
    """`name=host:port` (IPv6 as `[::1]:2055`) to a listen mapping; raises ValueError on a malformed entry."""
    listen: dict[str, tuple[str, int]] = {}
    for value in values:
        name, sep, address = value.partition("=")
        host, colon, port = address.rpartition(":")
        if not sep or not name or not colon or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"--listen expects name=host:port, got {value!r}")
        listen[name] = (host.strip("[]"), int(port))
    return listen


def refresh_connection() -> None:
    """Drop a stale or broken database connection before using it, as Django does around each request.

    Skipped inside a transaction: closing there would break the caller's work (a test, a management shell).
    """
    if not connections["default"].in_atomic_block:
        close_old_connections()


def load_prefixes() -> list[MonitoredPrefix]:
    """Every verified prefix with its thresholds: the prefix's own where set, else its tenant's policy.

    Host thresholds apply to each address; prefix-wide (carpet-bombing) thresholds left unset are the host's scaled
    by `carpet_multiplier` (at most SLUICE_CARPET_MULTIPLIER_MAX). Learned baselines are on: a prefix also alarms at
    SLUICE_BASELINE_FACTOR times its learned normal for the hour of week, once that is warm
    (SLUICE_BASELINE_WARMUP_SECONDS) and the traffic is at least a quarter of the host threshold (a slow ramp is
    caught before the fixed threshold; a rise that is ordinary for that hour is not an attack).
    """
    refresh_connection()
    policies = {p.tenant_id: p for p in TenantPolicy.objects.all()}
    prefixes = []
    factor = float(settings.SLUICE_BASELINE_FACTOR) or None
    for row in VerifiedPrefix.objects.select_related("tenant").order_by("prefix"):
        policy = policies.get(row.tenant_id)
        prefixes.append(MonitoredPrefix.from_thresholds(
            str(row.prefix), row.tenant.slug,
            host_bps=row.threshold_bps or (policy.detection_threshold_bps if policy else None),
            host_pps=row.threshold_pps or (policy.detection_threshold_pps if policy else None),
            prefix_bps=row.prefix_threshold_bps, prefix_pps=row.prefix_threshold_pps, baseline_factor=factor,
            baseline_warmup=int(settings.SLUICE_BASELINE_WARMUP_SECONDS),
            carpet_max=float(settings.SLUICE_CARPET_MULTIPLIER_MAX),
        ))
    return prefixes


def load_exporters() -> dict[str, int]:
    """Every enabled router's flow exporter addresses, each with the router's maximum sampling rate."""
    refresh_connection()
    exporters: dict[str, int] = {}
    for addresses, limit in Router.objects.filter(enabled=True).values_list("exporter_addresses", "max_sampling_rate"):
        for address in addresses:
            exporters[address] = max(limit, exporters.get(address, 0))
    return exporters


class SignalRecorder:
    """The collector's `emit`: records signals through `record_signal`, keeping the undelivered ones for later.

    Order matters (a start must be recorded before its end), so delivery stops at the first failure and resumes
    from there. The queue is bounded: when the database stays away, the oldest signals are dropped (and logged)
    rather than the collector's memory growing. A signal refused for anything but a database error is dropped:
    retrying it would block every signal behind it.
    """

    def __init__(
        self,
        record: Callable[..., object] = record_signal,
        actor: Actor = ACTOR,
        max_pending: int = MAX_PENDING_SIGNALS,
        refresh: Callable[[], None] = refresh_connection,
    ) -> None:
        self._record = record
        self._refresh = refresh
        self._actor = actor
        self._pending: deque[AttackSignal] = deque()
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self.stats: Counter[str] = Counter()

    @property
    def pending(self) -> int:
        """Signals waiting for the database."""
        return len(self._pending)

    def __call__(self, signal: AttackSignal) -> None:
        with self._lock:
            if len(self._pending) >= self._max_pending:
                dropped = self._pending.popleft()
                self.stats["dropped"] += 1
                logger.error("signal queue full: dropped %s %s", dropped.phase, dropped.target)
            self._pending.append(signal)
        self.deliver()

    def deliver(self) -> int:
        """Record queued signals in order until one fails; returns how many were recorded."""
        recorded = 0
        with self._lock:
            if not self._pending:
                return 0
            self._refresh()
            while self._pending:
                signal = self._pending[0]
                try:
                    self._record(signal, acting_user=self._actor)
                except (DatabaseError, InterfaceError):
                    self.stats["retries"] += 1
                    logger.exception("recording %s %s failed; %d signals wait", signal.phase, signal.target,
                                     len(self._pending))  # fmt: skip
                    # A broken connection is not reused: the next attempt opens a fresh one.
                    self._refresh()
                    break
                except Exception:
                    self._pending.popleft()
                    self.stats["rejected"] += 1
                    logger.exception("signal %s %s rejected; dropped", signal.phase, signal.target)
                    continue
                self._pending.popleft()
                self.stats["recorded"] += 1
                recorded += 1
        return recorded


def collect(
    *,
    listen: Mapping[str, tuple[str, int]],
    redis_url: str | None,
    stop_event: threading.Event,
    namespace: str = DEFAULT_NAMESPACE,
    recorder: SignalRecorder | None = None,
    on_ready: Callable[[dict[str, tuple[str, int]]], None] | None = None,
    prefix_refresh_seconds: float = 10.0,
    reuse_port: bool = False,
) -> Counter[str]:
    """Run the collector until `stop_event`, with prefixes from the database and signals recorded into it.

    Safe to run in a thread: the database connection this thread opens is closed when it returns.
    """
    recorder = recorder or SignalRecorder()

    def prefixes() -> list[MonitoredPrefix]:
        # The refresh is also when signals held back by a database outage get their next chance.
        recorder.deliver()
        return load_prefixes()

    try:
        return run_collector(listen=listen, prefixes=prefixes, emit=recorder, redis_url=redis_url,
                             stop_event=stop_event, namespace=namespace, on_ready=on_ready,
                             prefix_refresh_seconds=prefix_refresh_seconds, reuse_port=reuse_port,
                             exporters=load_exporters)  # fmt: skip
    finally:
        recorder.deliver()
        connections.close_all()


class Command(BaseCommand):
    help = "Collect sFlow, NetFlow and IPFIX on loopback, detect attacks on verified prefixes, record signals."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--listen", action="append", default=[], metavar="NAME=HOST:PORT",
                            help="a listener (repeatable); default: sflow, netflow and ipfix on 127.0.0.1 from "
                                 "SLUICE_SFLOW_PORT (6343), SLUICE_NETFLOW_PORT (2055), SLUICE_IPFIX_PORT (4739)")  # fmt: skip
        parser.add_argument("--redis-url", default=None, help="shared aggregates (default: settings.REDIS_URL)")
        parser.add_argument("--no-redis", action="store_true", help="keep aggregates in this process only")
        parser.add_argument("--namespace", default=settings.SLUICE_FLOW_NAMESPACE,
                            help="Redis key prefix of the aggregates (default: settings.SLUICE_FLOW_NAMESPACE)")
        parser.add_argument("--processes", type=int, default=int(os.environ.get("SLUICE_COLLECTOR_PROCESSES", "1")),
                            help="collector processes sharing the ports (default: SLUICE_COLLECTOR_PROCESSES or 1)")
        parser.add_argument("--reuse-port", action="store_true",
                            help="bind with SO_REUSEPORT, beside other collectors on the same ports")  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            listen = parse_listen(options["listen"]) if options["listen"] else default_listen()
        except ValueError as error:
            raise CommandError(str(error)) from error
        redis_url = None if options["no_redis"] else (options["redis_url"] or settings.REDIS_URL)
        processes = options["processes"]
        if processes < 1:
            raise CommandError("--processes must be at least 1")
        if processes > 1:
            if redis_url is None:
                raise CommandError("--processes needs Redis: that is where the processes' aggregates meet")
            if any(port == 0 for _, port in listen.values()):
                raise CommandError("--processes needs fixed ports (port 0 would give each process its own)")
            listen_args = [f"--listen={name}=[{host}]:{port}" if ":" in host else f"--listen={name}={host}:{port}"
                           for name, (host, port) in listen.items()]  # fmt: skip
            child = [sys.executable, str(settings.BASE_DIR / "manage.py"), "run_collector", "--processes=1", "--reuse-port",
                     f"--redis-url={redis_url}", f"--namespace={options['namespace']}", *listen_args]  # fmt: skip
            self._supervise(child, processes)
            return
        stop = threading.Event()

        def request_stop(signum: int, frame: object) -> None:
            self.stdout.write(f"{signals.Signals(signum).name}: stopping")
            stop.set()

        previous = {s: signals.signal(s, request_stop) for s in (signals.SIGTERM, signals.SIGINT)}
        try:
            stats = collect(
                listen=listen, redis_url=redis_url, stop_event=stop, namespace=options["namespace"],
                reuse_port=options["reuse_port"],
                on_ready=lambda bound: self.stdout.write(
                    "listening on " + ", ".join(f"{name}={host}:{port}" for name, (host, port) in bound.items())
                ),
            )  # fmt: skip
        except OSError as error:
            raise CommandError(f"cannot listen: {error}") from error
        finally:
            for sig, handler in previous.items():
                signals.signal(sig, handler)
        self.stdout.write("stopped: " + ", ".join(f"{k}={v}" for k, v in sorted(stats.items())))

    def _supervise(self, command: list[str], count: int) -> None:
        """Run `count` collector processes until SIGTERM/SIGINT, restarting any that exits on its own."""
        stop = threading.Event()

        def request_stop(signum: int, frame: object) -> None:
            stop.set()

        previous = {s: signals.signal(s, request_stop) for s in (signals.SIGTERM, signals.SIGINT)}
        children: list[subprocess.Popen[bytes]] = []
        try:
            children = [subprocess.Popen(command) for _ in range(count)]
            self.stdout.write(f"supervising {count} collector processes: {', '.join(str(c.pid) for c in children)}")
            while not stop.wait(0.5):
                for index, child in enumerate(children):
                    if child.poll() is not None:
                        self.stderr.write(f"collector process {child.pid} exited with {child.returncode}; "
                                          "restarting it")  # fmt: skip
                        time.sleep(RESTART_DELAY_SECONDS)
                        children[index] = subprocess.Popen(command)
        finally:
            for sig, handler in previous.items():
                signals.signal(sig, handler)
            for child in children:
                if child.poll() is None:
                    child.terminate()
            for child in children:
                try:
                    child.wait(30)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
        self.stdout.write("stopped every collector process")
