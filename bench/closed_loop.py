"""The closed loop at work: 20 concurrent attacks on the emulated data plane, judged, escalated and held by evidence.

A fresh database `sluice_bench_loop` with 10 tenants (web shops, one /16 each), the lab network (an emulated Junos
edge router whose FlowSpec routes come from a BIRD receiver fed by the supervised ExaBGP speaker, one scrubbing
center), real Celery workers and beat with the production cadence (reconcile 5 s, closed loop 2 s, settle 10 s),
and in this process the emulated data plane exporting its post-filter flows to a real collector, whose signals are
recorded as `run_collector` records them, and the stand-in scrubbing appliance reporting what reaches it.

Three attacks in four are DNS reflections a FlowSpec discard stops; the fourth floods UDP port 443, which the web
shop's UDP rule leaves open, so the rule goes in and does nothing until the closed loop escalates to diversion.
The collector ends an attack 3 s after it stops seeing it and tenants hold down 0 minutes, so only the counters
keep a working discard in place. Printed (asserts nothing):
- `verdict_p50`, `verdict_p99`: mitigation active to its first verdict (includes the settle time, printed too);
- `escalate_p99`: first "ineffective" verdict to the diversion visible in BIRD;
- `premature_withdrawals`: mitigations withdrawn while their attack still ran;
- `flaps`: routes BIRD lost and then got back while the attacks ran.
"""

from __future__ import annotations

import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import size

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB_NAME = "sluice_bench_loop"
os.environ.update(
    DJANGO_SETTINGS_MODULE="portal.settings",
    DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
    REDIS_URL="redis://127.0.0.1:6379/13",
    SLUICE_DATA_DIR=tempfile.mkdtemp(prefix="sluice-bench-loop-"),
    SLUICE_RECONCILE_SECONDS="5",
    SLUICE_DB_POOL_MAX="16",
)
ATTACKS = size(20, 2)
TENANTS = size(10, 1)
OBSERVE_S = size(30.0, 8.0)  # after every attack was judged effective: the attacks still run, nothing may move
GBPS = 1_000_000_000
QUIET = ("--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "INFO")


def fresh_database() -> None:
    import psycopg
    import redis

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    subprocess.run([sys.executable, "manage.py", "migrate_schemas", "--shared", "-v", "0"], cwd=ROOT, check=True)


def setup_world() -> None:
    from django.core.management import call_command

    from core.actors import Actor
    from tenants.services import ProfileInput, onboard_tenant

    call_command("bootstrap_public", operator="soc", operator_password="bench-operator-pw", stdout=io.StringIO())
    profile = ProfileInput(latency_threshold_ms=40, application_profile="web", hold_down_minutes=0,
                           allowed_actions=("flowspec", "diversion"), detection_threshold_bps=100_000_000,
                           detection_threshold_pps=20_000)
    for index in range(TENANTS):
        onboard_tenant(slug=f"loop-{index:02d}", name=f"Loop {index}", domain=f"loop-{index:02d}.localhost",
                       admin_email=f"a@loop{index}.example", prefixes=[f"10.{index}.0.0/16"], profile=profile,
                       verify=True, allow_bogons=True, acting_user=Actor("system", "bench"))


def start(base: Path, name: str, args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "portal", *args], cwd=ROOT, env=dict(os.environ),
                            stdout=(base / f"{name}.log").open("wb"), stderr=subprocess.STDOUT)


def target(index: int) -> str:
    return f"10.{index % TENANTS}.{index // TENANTS}.10"


def escalating(index: int) -> bool:
    return index % 4 == 3 or (ATTACKS < 4 and index == ATTACKS - 1)


def every(period: float, work: object, stop: threading.Event) -> threading.Thread:
    def loop() -> None:
        from django.db import connection

        try:
            while not stop.wait(period):
                try:
                    work()  # type: ignore[operator]
                except Exception as error:  # a bench helper reports and carries on
                    print(f"# {getattr(work, '__name__', work)}: {error}", flush=True)
        finally:
            connection.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


class RouteWatch:
    """BIRD's routes, read every 0.25 s: when each first arrived, and every route lost and then back (a flap)."""

    def __init__(self, bird: object) -> None:
        self.bird = bird
        self.present: set[str] = set()
        self.lost: set[str] = set()
        self.flaps: list[str] = []
        self.arrived: dict[str, float] = {}

    def read(self) -> None:
        arrivals = self.bird.arrivals(4)  # type: ignore[attr-defined]
        routes = set(arrivals) | {f"flow {match}" for match in self.bird.flows(4)}  # type: ignore[attr-defined]
        for prefix, stamp in arrivals.items():
            self.arrived.setdefault(prefix, stamp)
        self.flaps += sorted(routes & self.lost)
        self.lost = (self.lost | (self.present - routes)) - routes
        self.present = routes


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    fresh_database()
    import django

    django.setup()
    from django.conf import settings

    from mitigation.models import Mitigation, Verdict
    from tests.support.closed_loop import closed_loop_lab
    from tests.support.lab import refresh_telemetry, running_lab

    setup_world()
    base = Path(tempfile.mkdtemp(prefix="sluice-bench-loop-lab-"))
    slugs = tuple(f"loop-{index:02d}" for index in range(TENANTS))
    stop = threading.Event()
    with running_lab(base, bird_address="127.0.41.1", speaker_address="127.0.41.254", bgp_port=1941,
                     tenants=slugs) as lab, closed_loop_lab(lab) as loop:
        processes = [start(base, "engine", ["worker", "-n", "engine@%h", "-Q", "engine,telemetry", "-c", "2", *QUIET]),
                     start(base, "devices", ["worker", "-n", "devices@%h", "-Q", "devices", "-c", "3", *QUIET]),
                     start(base, "beat", ["beat", "-s", str(base / "celerybeat-schedule")])]
        watch = RouteWatch(lab.bird)
        try:
            deadline = time.monotonic() + 90
            while not all("ready." in (base / f"{n}.log").read_text() for n in ("engine", "devices")):
                if time.monotonic() > deadline:
                    raise RuntimeError("the workers did not start")
                time.sleep(0.1)
            every(0.05, loop.record_signals, stop)
            every(2.0, loop.report_centers, stop)
            every(10.0, refresh_telemetry, stop)  # the upstream pollers of a healthy network
            every(0.25, watch.read, stop)
            started = time.monotonic()
            for index in range(ATTACKS):
                if escalating(index):  # UDP to 443 slips past the web shop's UDP rule
                    loop.add(f"attack-{index}", target(index), bps=2 * GBPS, destination_port=443, packet_size=1200)
                else:
                    loop.add(f"attack-{index}", target(index), bps=GBPS, source_port=53,
                             source=f"192.0.2.{100 + index}")
            targets = [f"{target(i)}/32" for i in range(ATTACKS)]

            def all_effective() -> bool:
                rows = Mitigation.objects.filter(attack__target__in=targets, state="active", verdict="effective")
                return rows.count() == ATTACKS

            while not all_effective():
                if time.monotonic() - started > 300:
                    print("# not every attack was judged effective within 300 s", flush=True)
                    break
                time.sleep(0.5)
            print(f"# every attack judged effective after {time.monotonic() - started:.1f} s", flush=True)
            time.sleep(OBSERVE_S)
            mitigations = list(Mitigation.objects.filter(attack__target__in=targets).select_related("attack"))
            premature = sum(1 for m in mitigations if m.state not in {"applying", "active"})
            flaps = len(watch.flaps)
            verdict_ms, escalate_ms = [], []
            for mitigation in mitigations:
                history = list(Verdict.objects.filter(mitigation=mitigation).order_by("at").values_list("outcome",
                                                                                                        flat=True))
                print(f"# {mitigation.attack.target}: {mitigation.state} at {mitigation.level} "
                      f"(escalated: {mitigation.override_level or 'no'}); verdicts {history}", flush=True)
                if os.environ.get("SLUICE_BENCH_VERBOSE"):
                    for verdict in Verdict.objects.filter(mitigation=mitigation).order_by("at"):
                        print(f"#   {verdict.outcome}: {verdict.summary} {verdict.evidence}")
                    for action in mitigation.actions.all():
                        print(f"#   {action.status} {action.kind} {action.spec}")
                first = Verdict.objects.filter(mitigation=mitigation).order_by("at").first()
                if first is not None and mitigation.activated_at is not None:
                    verdict_ms.append((first.at - mitigation.activated_at).total_seconds() * 1000)
                ineffective = Verdict.objects.filter(mitigation=mitigation, outcome="ineffective").order_by("at").first()
                if not mitigation.override_level:
                    continue
                diverted = watch.arrived.get(str(mitigation.attack.target).rsplit(".", 1)[0] + ".0/24")
                if ineffective is not None and diverted is not None:
                    escalate_ms.append((diverted - ineffective.at.timestamp()) * 1000)
            stop.set()
            for index in range(ATTACKS):
                loop.plane.remove_stream(f"attack-{index}")
        finally:
            stop.set()
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
    print(f"METRIC verdict_settle {settings.SLUICE_VERDICT_SETTLE_SECONDS:.0f} s")
    if verdict_ms:
        print(f"METRIC verdict_p50 {statistics.median(verdict_ms):.0f} ms")
        print(f"METRIC verdict_p99 {percentile(verdict_ms, 0.99):.0f} ms")
    print(f"METRIC verdict_judged {len(verdict_ms)} count")
    if escalate_ms:
        print(f"METRIC escalate_p50 {statistics.median(escalate_ms):.0f} ms")
        print(f"METRIC escalate_p99 {percentile(escalate_ms, 0.99):.0f} ms")
    print(f"METRIC escalated {len(escalate_ms)} count")
    print(f"METRIC premature_withdrawals {premature} count")
    print(f"METRIC flaps {flaps} count")
    if watch.flaps:
        print(f"# flapped: {watch.flaps[:10]}")


if __name__ == "__main__":
    main()
