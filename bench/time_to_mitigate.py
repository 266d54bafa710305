"""Time to mitigate: signal accepted by the API to route visible in BIRD's RIB, with real processes.

A fresh database `sluice_bench` with 50 tenants (one /16 each), the lab network (an emulated Junos edge router, a
BIRD receiver, a supervised ExaBGP speaker), real Celery workers and beat (its reconcile loop every 5 s, as in
production) and the API in process. For 1, 10, 100 and 1,000 concurrent attacks spread across the tenants, each signal is posted at once (threads), and each
attack's latency runs from its signal's acceptance to the arrival BIRD stamps on its diversion. Prints METRIC lines; asserts nothing.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import size

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB_NAME = "sluice_bench"
os.environ.update(
    DJANGO_SETTINGS_MODULE="portal.settings",
    DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
    REDIS_URL="redis://127.0.0.1:6379/14",
    SLUICE_DATA_DIR=tempfile.mkdtemp(prefix="sluice-bench-"),
    # As in production: the beat's reconcile loop runs every 5 s beside the jobs signals send.
    SLUICE_RECONCILE_SECONDS="5",
    # One detector token sends every signal here; its rate is set for that, as a provider would.
    SLUICE_SIGNAL_RATE="100000/min",
    # The benchmark posts from 16 threads of its own process.
    SLUICE_DB_POOL_MAX="24",
)
TENANTS = size(50, 2)
BATCHES = tuple(int(b) for b in os.environ["SLUICE_TTM_BATCHES"].split(",")) if os.environ.get("SLUICE_TTM_BATCHES") else size((1, 10, 100, 1000), (1, 2))


def fresh_database() -> None:
    import psycopg
    import redis

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()  # no task of an earlier run may linger in the queues

    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    subprocess.run([sys.executable, "manage.py", "migrate_schemas", "--shared", "-v", "0"], cwd=ROOT, check=True)


def setup_world() -> str:
    from django.core.management import call_command

    from core.accounts.models import ApiToken, User
    from core.actors import Actor
    from tenants.services import ProfileInput, onboard_tenant

    call_command("bootstrap_public", operator="soc", operator_password="bench-operator-pw", stdout=io.StringIO())
    profile = ProfileInput(latency_threshold_ms=40, application_profile="web", allowed_actions=("diversion",),
                           hold_down_minutes=0)
    started = time.monotonic()
    for index in range(TENANTS):
        onboard_tenant(slug=f"bench-{index:02d}", name=f"Bench {index}", domain=f"bench-{index:02d}.localhost",
                       admin_email=f"a@bench{index}.example", prefixes=[f"10.{index}.0.0/16"], profile=profile,
                       verify=True, allow_bogons=True, acting_user=Actor("system", "bench"))
    print(f"# onboarded {TENANTS} tenants in {time.monotonic() - started:.1f} s", flush=True)
    key, prefix, digest = ApiToken.generate_key()
    ApiToken.objects.create(user=User.objects.get(username="soc"), name="bench", key_prefix=prefix, key_hash=digest,
                            scopes=["signals"])
    return key


def start_worker(log: Path, name: str, queues: str, concurrency: int) -> subprocess.Popen[bytes]:
    """A worker pool as `./sluice run` starts them: planning and device pushes in separate pools."""
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "-n", f"{name}@%h", "-Q", queues, "-c",
         str(concurrency), "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "INFO"],
        cwd=ROOT, env=dict(os.environ), stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )


def post_signal(token: str, target: str, phase: str) -> float:
    from django.test import Client

    response = Client(HTTP_HOST="localhost").post(
        "/api/v1/signals/",
        # Small enough that 1,000 at once fit the lab's centers and upstreams: every attack can be mitigated.
        {"target": target, "vectors": ["udp_flood"], "bps": 60_000_000, "pps": 20_000, "phase": phase,
         "detector": "bench"},
        content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}",
    )
    accepted = time.time()  # wall clock, as BIRD stamps each route's arrival
    if response.status_code not in (200, 202):
        raise RuntimeError(f"signal refused: {response.status_code} {response.content[:200]!r}")
    from django.db import connection

    connection.close()
    return accepted


def measure(token: str, bird: object, count: int, round_index: int) -> list[float]:
    targets = [(f"10.{i % TENANTS}.{round_index * 2 + i // TENANTS}.7", f"10.{i % TENANTS}.{round_index * 2 + i // TENANTS}.0/24")
               for i in range(count)]
    accepted: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = threading.Event()

    def poll() -> None:
        # BIRD stamps each route with its arrival (to the millisecond), so a rare poll measures as exactly as a
        # tight one and does not starve the system it measures (reading 1,000 routes every 10 ms did).
        while not done.is_set():
            arrived = bird.arrivals(4)  # type: ignore[attr-defined]
            for _, prefix in targets:
                if prefix in arrived and prefix not in seen:
                    seen[prefix] = arrived[prefix]
            if len(seen) == count:
                return
            time.sleep(0.25)

    poller = threading.Thread(target=poll)
    poller.start()
    with ThreadPoolExecutor(max_workers=min(count, 16)) as pool:
        futures = {prefix: pool.submit(post_signal, token, target, "start") for target, prefix in targets}
        for prefix, future in futures.items():
            accepted[prefix] = future.result()
    poller.join(timeout=120)
    done.set()
    missing = [p for _, p in targets if p not in seen]
    if missing:
        print(f"# {len(missing)} of {count} never became visible within 120 s", flush=True)
    latencies = [max(0.0, (seen[p] - accepted[p]) * 1000) for _, p in targets if p in seen]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda t: post_signal(token, t[0], "end"), targets))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(p in bird.arrivals(4) for _, p in targets):  # type: ignore[attr-defined]
        time.sleep(0.25)
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    fresh_database()
    import django

    django.setup()
    from tests.support.lab import running_lab

    token = setup_world()
    base = Path(tempfile.mkdtemp(prefix="sluice-bench-lab-"))
    slugs = tuple(f"bench-{index:02d}" for index in range(TENANTS))
    with running_lab(base, bird_address="127.0.40.1", speaker_address="127.0.40.254", bgp_port=1940,
                     tenants=slugs) as lab:
        workers = [start_worker(base / "engine.log", "engine", "engine,telemetry", 2),
                   start_worker(base / "devices.log", "devices", "devices", 3),
                   subprocess.Popen([sys.executable, "-m", "celery", "-A", "portal", "beat", "-s",
                                     str(base / "celerybeat-schedule")], cwd=ROOT, env=dict(os.environ),
                                    stdout=(base / "beat.log").open("wb"), stderr=subprocess.STDOUT)]
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not all(
                "ready." in (base / log).read_text() for log in ("engine.log", "devices.log")
            ):
                time.sleep(0.1)
            for round_index, count in enumerate(BATCHES):
                latencies = measure(token, lab.bird, count, round_index)
                if latencies:
                    print(f"METRIC ttm_{count}_p50 {statistics.median(latencies):.0f} ms")
                    print(f"METRIC ttm_{count}_p99 {percentile(latencies, 0.99):.0f} ms")
                    print(f"METRIC ttm_{count}_visible {len(latencies)} count", flush=True)
        finally:
            for worker in workers:
                worker.terminate()
                worker.wait(timeout=20)


if __name__ == "__main__":
    main()
