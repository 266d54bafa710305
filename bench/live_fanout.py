"""Live fan-out: event published to websocket client, with 1,000 clients across 200 tenants at 50 events/s.

A fresh database `sluice_fanout` with 200 tenants (5 logged-in users each), a real daphne, and 1,000 websocket
clients in this process. Events are published with core.events.publish() round-robin across the tenants for
20 s; each client checks it gets exactly its own tenant's events. Prints p50/p95 latency and lost events.
"""

from __future__ import annotations

import asyncio
import io
import json
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
DB_NAME = "sluice_fanout"
os.environ.update(
    DJANGO_SETTINGS_MODULE="portal.settings",
    DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
    REDIS_URL="redis://127.0.0.1:6379/13",
    SLUICE_DATA_DIR=tempfile.mkdtemp(prefix="sluice-fanout-"),
)
TENANTS = size(200, 2)
CLIENTS_PER_TENANT = size(5, 1)
RATE = 50
SECONDS = size(20, 1)


def prepare() -> list[tuple[str, list[str]]]:
    import psycopg
    import redis

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    subprocess.run([sys.executable, "manage.py", "migrate_schemas", "--shared", "-v", "0"], cwd=ROOT, check=True)
    import django

    django.setup()
    from django.core.management import call_command

    from core.accounts.models import User
    from core.actors import Actor
    from tenants.services import ProfileInput, onboard_tenant
    from tests.support.world import session_for

    call_command("bootstrap_public", stdout=io.StringIO())
    started = time.monotonic()
    tenants = []
    for index in range(TENANTS):
        slug = f"fan-{index:03d}"
        onboard_tenant(slug=slug, name=slug, domain=f"{slug}.localhost", admin_email=f"a@{slug}.example",
                       prefixes=[f"10.{index // 250}.{index % 250}.0/24"], profile=ProfileInput(latency_threshold_ms=40),
                       allow_bogons=True, acting_user=Actor("system", "bench"))
        from django_tenants.utils import schema_context

        with schema_context(slug.replace("-", "_")):
            for user in range(CLIENTS_PER_TENANT):
                User.objects.create_user(username=f"u{user}", password=None)
        sessions = [session_for(slug.replace("-", "_"), f"u{user}") for user in range(CLIENTS_PER_TENANT)]
        tenants.append((slug, sessions))
    print(f"# onboarded {TENANTS} tenants with {TENANTS * CLIENTS_PER_TENANT} users in "
          f"{time.monotonic() - started:.0f} s", flush=True)
    return tenants


async def client(port: int, slug: str, session: str, sink: dict, ready: asyncio.Event, stop: asyncio.Event) -> None:
    import websockets

    host = f"{slug}.localhost"
    try:
        socket = await websockets.connect(
            f"ws://{host}:{port}/ws/live/", host="127.0.0.1", port=port, open_timeout=120,
            additional_headers={"Origin": f"http://{host}:{port}", "Cookie": f"sessionid={session}"},
        )
    except (OSError, TimeoutError, websockets.exceptions.WebSocketException):
        sink["failed"] = True
        return
    finally:
        ready.set()
    async with socket:
        while not stop.is_set():
            try:
                message = await asyncio.wait_for(socket.recv(), 0.5)
            except TimeoutError:
                continue
            arrived = time.time()
            event = json.loads(message)
            sink["latencies"].append((arrived - event["ts"]) * 1000)
            sink["seqs"].add(event["data"]["n"])
            if event.get("tenant") != slug.replace("-", "_"):
                sink["foreign"] += 1


def publisher(tenants: list[tuple[str, list[str]]], sent: dict[str, set[int]]) -> None:
    from core.events import flush_events, publish

    interval = 1 / RATE
    start = time.perf_counter()
    for n in range(RATE * SECONDS):
        slug = tenants[n % len(tenants)][0]
        publish("bench.event", {"n": n}, tenant_schema=slug.replace("-", "_"))
        sent[slug].add(n)
        delay = start + (n + 1) * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    flush_events(30)


async def run(port: int, tenants: list[tuple[str, list[str]]]) -> None:
    stop = asyncio.Event()
    sinks: dict[tuple[str, int], dict] = {}
    tasks = []
    readies = []
    for slug, sessions in tenants:
        for index, session in enumerate(sessions):
            sink = {"latencies": [], "seqs": set(), "foreign": 0, "failed": False}
            sinks[(slug, index)] = sink
            ready = asyncio.Event()
            readies.append(ready)
            tasks.append(asyncio.create_task(client(port, slug, session, sink, ready, stop)))
            if len(tasks) % 25 == 0:
                await asyncio.sleep(0.5)  # browsers arrive over seconds, not all in one instant
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 300)
    await asyncio.sleep(1)
    failed = sum(sink["failed"] for sink in sinks.values())
    print(f"# {len(tasks) - failed} of {len(tasks)} clients connected", flush=True)
    sent: dict[str, set[int]] = {slug: set() for slug, _ in tenants}
    await asyncio.to_thread(publisher, tenants, sent)
    await asyncio.sleep(3)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    latencies = [value for sink in sinks.values() for value in sink["latencies"]]
    lost = sum(len(sent[slug] - sink["seqs"]) for (slug, _), sink in sinks.items() if not sink["failed"])
    foreign = sum(sink["foreign"] for sink in sinks.values())
    ordered = sorted(latencies)
    print(f"METRIC fanout_p50 {statistics.median(ordered):.1f} ms")
    print(f"METRIC fanout_p95 {ordered[int(0.95 * (len(ordered) - 1))]:.1f} ms")
    print(f"METRIC fanout_delivered {len(latencies)} events")
    print(f"METRIC fanout_lost {lost} events")
    print(f"METRIC fanout_cross_tenant {foreign} events")
    print(f"METRIC fanout_clients_failed {failed} clients")


def main() -> None:
    tenants = prepare()
    from tests.support.processes import free_port, wait_for_port

    port = free_port()
    log = Path(os.environ["SLUICE_DATA_DIR"]) / "daphne.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "portal.asgi:application"],
        cwd=ROOT, env=dict(os.environ), stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, process=server)
        asyncio.run(run(port, tenants))
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    threading.stack_size(512 * 1024)
    main()
