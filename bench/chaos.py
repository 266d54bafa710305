"""Chaos: 100 attacks across 50 tenants while, in turn, the speaker is killed, a worker is SIGKILLed mid-push, an
edge router disappears for 60 s, and Redis and PostgreSQL are restarted.

Runs on a PostgreSQL cluster and a Redis server of its own (started here, on loopback ports), so restarting them
disturbs nothing else on the machine; the lab network (emulated Junos edge router, BIRD, supervised ExaBGP speaker)
and real Celery workers with beat's reconcile loop every 5 s, as `./sluice run` has them. Signals are posted to the
API in this process; a signal refused with 503 or 429 (or that finds the database down) is sent again.

    python bench/chaos.py [--tiny]

Prints, per fault, `chaos_<fault>_converge_p99` (fault cleared to every element carrying exactly the desired
routes: BIRD behind the speaker and both edge routers, the one that was down included), and over the run
`chaos_flaps` (withdrawals BIRD received for routes that stayed wanted), `chaos_orphans` (routes left on BIRD or
either router after every attack ended), `chaos_lost_signals` (accepted, never recorded) and
`chaos_ttm_healthy_p99` (signal to visible in BIRD, for attacks sent while the second router, lab-edge-2 at the
farther center, is down: the attacks go to the nearer center and need the speaker and lab-edge-1 only).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import size

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netsim.fastnetmon import free_port  # noqa: E402  (the project is on the path from here on)
from netsim.polling import wait_for  # noqa: E402

BASE = Path(tempfile.mkdtemp(prefix="sluice-chaos-"))
TENANTS = size(50, 4)
ATTACKS = size(100, 8)
REPEATS = size(3, 1)
ROUTER_DOWN_S = size(60, 6)
DURING_FAULT = size(5, 2)
RECONCILE_S = 5.0
CONVERGE_LIMIT_S = size(180, 60)


PG_PORT, REDIS_PORT = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
os.environ.update(
    DJANGO_SETTINGS_MODULE="portal.settings",
    DATABASE_URL=f"postgres://postgres@127.0.0.1:{PG_PORT}/sluice_chaos",
    REDIS_URL=f"redis://127.0.0.1:{REDIS_PORT}/0",
    SLUICE_DATA_DIR=str(BASE / "data"),
    SLUICE_RECONCILE_SECONDS=str(RECONCILE_S),
    SLUICE_SIGNAL_RATE="100000/min",
    SLUICE_DB_POOL_MAX="24",
    SLUICE_RETRY_BASE_SECONDS="1",
    SLUICE_RETRY_MAX_SECONDS="5",
)


class Postgres:
    """A throwaway cluster: initdb in the bench's folder, owned by `postgres` when run as root."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.data = BASE / "pg"
        self.bin = next(sorted(Path("/usr/lib/postgresql").glob("*/bin")).__reversed__())
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def create(self) -> None:
        self.data.mkdir()
        if self.as_user:
            shutil.chown(BASE, "postgres")
            shutil.chown(self.data, "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self.start()
        subprocess.run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                        "sluice_chaos"], check=True)

    def start(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.data / "log"), "-w", "-o",
                  f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c max_connections=200", "start")

    def restart(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        time.sleep(2)  # down for a moment, as a real restart is
        self.start()

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")


class Redis:
    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=(BASE / "redis.log").open("ab"), stderr=subprocess.STDOUT)
        wait(lambda: _port_open(self.port), 10, "redis")

    def restart(self) -> None:
        self.stop()
        time.sleep(2)
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def wait(predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> float:
    """Seconds until `predicate` held (netsim.polling.wait_for); TimeoutError after `timeout`."""
    started = time.monotonic()
    wait_for(predicate, timeout=timeout, interval=step, what=what, error=TimeoutError)
    return time.monotonic() - started


def setup_world() -> str:
    from django.core.management import call_command

    from core.accounts.models import ApiToken, User
    from core.actors import Actor
    from tenants.services import ProfileInput, onboard_tenant

    for args in (["migrate_schemas", "--shared", "-v", "0"],):
        subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, check=True)
    call_command("bootstrap_public", operator="soc", operator_password="chaos-operator-pw", stdout=io.StringIO())
    profile = ProfileInput(latency_threshold_ms=40, application_profile="web", allowed_actions=("diversion",),
                           hold_down_minutes=0)
    for index in range(TENANTS):
        onboard_tenant(slug=f"chaos-{index:02d}", name=f"Chaos {index}", domain=f"chaos-{index:02d}.localhost",
                       admin_email=f"a@chaos{index}.example", prefixes=[f"10.{index}.0.0/16"], profile=profile,
                       verify=True, allow_bogons=True, acting_user=Actor("system", "chaos"))
    key, prefix, digest = ApiToken.generate_key()
    ApiToken.objects.create(user=User.objects.get(username="soc"), name="chaos", key_prefix=prefix,
                            key_hash=digest, scopes=["signals"])
    return key


class Signals:
    """Posts signals as a detector does, sending again what was refused; counts what was accepted."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.recorded = 0
        self.lock = threading.Lock()

    def post(self, target: str, phase: str = "start") -> float:
        from django.db import connection
        from django.test import Client

        client = Client(HTTP_HOST="localhost", raise_request_exception=False)
        body = {"target": target, "vectors": ["udp_flood"], "bps": 60_000_000, "pps": 20_000, "phase": phase,
                "detector": "chaos"}
        try:
            for _ in range(600):
                try:
                    response = client.post("/api/v1/signals/", body, content_type="application/json",
                                           HTTP_AUTHORIZATION=f"Token {self.token}")
                except Exception:  # the database or Redis went away under the request: send it again
                    connection.close()
                    time.sleep(0.5)
                    continue
                if response.status_code in (202, 200):
                    with self.lock:
                        self.recorded += response.status_code == 202
                    return time.time()  # wall clock, as BIRD stamps each route's arrival
                time.sleep(float(response.get("Retry-After", "0.5") or 0.5))
            raise RuntimeError(f"signal for {target} never accepted")
        finally:
            connection.close()


def target(index: int) -> tuple[str, str]:
    tenant, slot = index % TENANTS, index // TENANTS
    return f"10.{tenant}.{slot}.7", f"10.{tenant}.{slot}.0/24"


ROUTER_PREFIX = re.compile(r"\b(10\.\d+\.\d+\.0/24)\b")


def carried(lab: object) -> tuple[set[str], list[set[str]]]:
    """The attack prefixes BIRD has from the speaker, and those in each edge router's committed configuration (every
    edge router carries every diversion's static route)."""
    bird = {p for p in lab.bird.unicast(4) if p.startswith("10.")}  # type: ignore[attr-defined]
    routers = []
    for router in (lab.emulator, lab.second):  # type: ignore[attr-defined]
        if router is not None:
            routers.append({p for line in router.committed_set() for p in ROUTER_PREFIX.findall(line)})
    return bird, routers


def withdrawals(lab: object) -> int:
    text = lab.bird.cli(f"show protocols all {lab.bird.protocol_name(lab.bird.peers[0])}")  # type: ignore[attr-defined]
    channel = text.split("Channel ipv4", 1)[1].split("Channel ", 1)[0]
    found = re.search(r"Import withdraws:\s+(\d+)", channel)
    return int(found.group(1)) if found else 0


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] if ordered else float("nan")


@contextlib.contextmanager
def workers() -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    celery = [sys.executable, "-m", "celery", "-A", "portal"]
    supervised = [sys.executable, "-m", "portal.supervise", "--", *celery]  # as ./sluice run starts workers
    specs = {
        "engine": [*supervised, "worker", "-n", "engine@%h", "-Q", "engine,telemetry", "-c", "2", "--without-heartbeat",
                   "--without-gossip", "--without-mingle", "-l", "INFO"],
        "devices": [*supervised, "worker", "-n", "devices@%h", "-Q", "devices", "-c", "3", "--without-heartbeat",
                    "--without-gossip", "--without-mingle", "-l", "INFO"],
        "beat": [*celery, "beat", "-s", str(BASE / "celerybeat-schedule")],
    }
    running = {name: subprocess.Popen(args, cwd=ROOT, env=dict(os.environ), stdout=(BASE / f"{name}.log").open("wb"),
                                      stderr=subprocess.STDOUT) for name, args in specs.items()}
    try:
        wait(lambda: all("ready." in (BASE / f"{n}.log").read_text() for n in ("engine", "devices")), 90, "workers")
        yield running
    finally:
        for process in running.values():
            process.terminate()
        for process in running.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def children(pid: int) -> list[int]:
    with contextlib.suppress(FileNotFoundError):
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def main() -> None:
    postgres, redis_server = Postgres(PG_PORT), Redis(REDIS_PORT)
    redis_server.start()
    postgres.create()
    try:
        run(postgres, redis_server)
    finally:
        redis_server.stop()
        postgres.stop()


def run(postgres: Postgres, redis_server: Redis) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    from core.dbpool import watch_pool

    watch_pool(settings.SLUICE_DB_POOL_CHECK_SECONDS)  # this process serves the API, as a web process does

    from tests.support.lab import refresh_telemetry, running_lab

    token = setup_world()
    signals = Signals(token)
    slugs = tuple(f"chaos-{index:02d}" for index in range(TENANTS))
    (BASE / "lab").mkdir()
    with running_lab(BASE / "lab", bird_address="127.0.41.1", speaker_address="127.0.41.254",
                     tenants=slugs, second_router=True) as lab, workers() as procs:
        desired: set[str] = set()
        next_index = 0

        def attack(count: int) -> list[tuple[str, float]]:
            nonlocal next_index
            batch = [target(i) for i in range(next_index, next_index + count)]
            next_index += count
            with ThreadPoolExecutor(max_workers=16) as pool:
                accepted = list(pool.map(lambda t: signals.post(t[0]), batch))
            desired.update(prefix for _, prefix in batch)
            return [(prefix, at) for (_, prefix), at in zip(batch, accepted, strict=True)]

        def converged() -> bool:
            bird, routers = carried(lab)
            return bird == desired and all(router == desired for router in routers)

        attack(ATTACKS)
        wait(converged, 300, "the first attacks on every element", step=0.2)
        print(f"# {len(desired)} attacks on every element", flush=True)
        withdraws_before = withdrawals(lab)
        converge: dict[str, list[float]] = {}
        healthy: list[float] = []

        def keep_telemetry_fresh() -> None:
            with contextlib.suppress(Exception):
                refresh_telemetry()
            connection.close()

        def fault_speaker() -> None:
            exabgp = lab.speaker.pid  # type: ignore[attr-defined]
            lab.speaker.kill(signal.SIGKILL)  # type: ignore[attr-defined]
            wait(lambda: lab.speaker.pid not in (None, exabgp), 30, "the speaker's restart")  # type: ignore[attr-defined]

        def fault_worker() -> None:
            attack(DURING_FAULT)  # pushes are under way now
            pool = [child for name in ("devices", "engine") for main in children(procs[name].pid)
                    for child in children(main)]
            for pid in pool:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

        def fault_router() -> None:
            lab.second.go_down()  # type: ignore[attr-defined]
            started = time.monotonic()
            accepted = dict(attack(DURING_FAULT))
            seen: dict[str, float] = {}

            def all_seen() -> bool:
                arrived = lab.bird.arrivals(4)  # type: ignore[attr-defined]  # stamped by BIRD, to the millisecond
                seen.update({p: arrived[p] for p in accepted if p in arrived and p not in seen})
                return len(seen) == len(accepted)

            wait(all_seen, 60, "the attacks that need no router", step=0.25)
            healthy.extend(max(0.0, seen[p] - accepted[p]) for p in accepted)
            time.sleep(max(0.0, ROUTER_DOWN_S - (time.monotonic() - started)))
            lab.second.go_down(False)  # type: ignore[attr-defined]

        def fault_redis() -> None:
            redis_server.restart()

        def fault_postgres() -> None:
            postgres.restart()
            connection.close()

        faults = {"speaker_kill": fault_speaker, "worker_kill": fault_worker, "router_down": fault_router,
                  "postgres_restart": fault_postgres, "redis_restart": fault_redis}
        for name, inject in faults.items():
            for _ in range(1 if name == "router_down" else REPEATS):
                keep_telemetry_fresh()
                inject()
                cleared = time.monotonic()
                if name != "router_down":
                    attack(DURING_FAULT)  # the network must take new attacks right after the fault, too
                try:
                    wait(converged, CONVERGE_LIMIT_S, f"convergence after {name}", step=0.1)
                except TimeoutError:
                    print(f"# {name}: NOT converged {CONVERGE_LIMIT_S:g} s after it cleared", flush=True)
                converge.setdefault(name, []).append(time.monotonic() - cleared)
                print(f"# {name}: converged {converge[name][-1]:.1f} s after it cleared; BIRD withdrawals so far "
                      f"{withdrawals(lab) - withdraws_before}", flush=True)
        flaps = withdrawals(lab) - withdraws_before

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda i: signals.post(target(i)[0], "end"), range(next_index)))
        desired.clear()
        with contextlib.suppress(TimeoutError):
            wait(converged, 180, "every route withdrawn", step=0.2)
        bird, routers = carried(lab)
        from mitigation.models import SignalRecord

        recorded = SignalRecord.objects.filter(detector="chaos").count()
        for name, values in converge.items():
            print(f"METRIC chaos_{name}_converge_p99 {p99(values):.1f} s")
        print(f"METRIC chaos_flaps {flaps} count")
        print(f"METRIC chaos_orphans {len(bird) + sum(len(router) for router in routers)} count")
        print(f"METRIC chaos_lost_signals {max(0, signals.recorded - recorded)} count")
        print(f"METRIC chaos_ttm_healthy_p99 {p99(healthy) * 1000:.0f} ms")
        connection.close()


if __name__ == "__main__":
    main()
