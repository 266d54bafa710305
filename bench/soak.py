"""Sustained load on the processes of `./sluice run`: eight clients post signals over 100 targets for ten minutes.

Starts what `./sluice run` starts (emulated network, speaker, both worker pools, beat, the web tier) on a database of
its own with the demo loaded, then posts start, update and end signals over HTTP to daphne, as detectors would.
A refused signal (429 or 503) is sent again after its Retry-After; nothing else is retried.

    python bench/soak.py [--tiny]

Prints:
  soak_signals_per_s   accepted signals per second over the run
  soak_api_p99         the API's answer time, p99 over every request (ms)
  soak_5xx             answers 500-599 other than 503 (a 503 carries Retry-After and is sent again)
  soak_refused         429 and 503 answers, each sent again after its Retry-After
  soak_lost            accepted signals with no SignalRecord in the database at the end
  soak_rss_growth_<p>  each process's resident memory at the end over its value after the warm-up (%)
  soak_cpu_share_<p>   each process's CPU time over the run's length (100 % is one core)
"""

from __future__ import annotations

import http.client
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
DB_NAME = "sluice_soak"
DATA = Path(tempfile.mkdtemp(prefix="sluice-soak-"))
os.environ.update(
    DJANGO_SETTINGS_MODULE="portal.settings",
    DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
    REDIS_URL="redis://127.0.0.1:6379/13",
    SLUICE_DATA_DIR=str(DATA),
    # One detector token posts for the whole network here: its rate is set for that, as a provider would.
    SLUICE_SIGNAL_RATE="60000/min",
)
# SLUICE_SOAK_SECONDS shortens a run while exploring; the figures an issue asks for come from the full ten minutes.
DURATION_S = int(os.environ.get("SLUICE_SOAK_SECONDS", "0")) or size(600, 25)
WARMUP_S = size(60, 8)
CLIENTS = 8
TARGETS = [f"203.0.113.{i}" for i in range(1, 51)] + [f"198.51.100.{i}" for i in range(1, 51)]


def fresh_database() -> None:
    import psycopg
    import redis

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    for args in (["migrate_schemas", "--shared", "-v", "0"], ["migrate_schemas", "--tenant", "-v", "0"],
                 ["bootstrap_public", "--operator", "soc", "--operator-password", "soak-operator-pw"],
                 ["load_demo"]):
        subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def signals_token() -> str:
    from core.accounts.models import ApiToken, User

    key, prefix, digest = ApiToken.generate_key()
    ApiToken.objects.create(user=User.objects.get(username="soc"), name="soak", key_prefix=prefix,
                            key_hash=digest, scopes=["signals"])
    return key


def start(name: str, args: list[str]) -> subprocess.Popen[bytes]:
    log = (DATA / f"{name}.log").open("wb")
    return subprocess.Popen(args, cwd=ROOT, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT)


def processes(port: int) -> dict[str, subprocess.Popen[bytes]]:
    """The processes `./sluice run` starts, each with its log in the data folder."""
    celery = [sys.executable, "-m", "celery", "-A", "portal"]
    running = {"netsim": start("netsim", [sys.executable, "-m", "netsim.demo", "netsim/demo-network.yaml", "--dir",
                                          str(DATA / "netsim")])}
    time.sleep(1)
    running.update({
        "speaker": start("speaker", [sys.executable, "manage.py", "run_speaker", "speaker-1"]),
        "engine": start("engine", [*celery, "worker", "-n", "engine@%h", "-Q", "engine,telemetry", "-c", "2"]),
        "devices": start("devices", [*celery, "worker", "-n", "devices@%h", "-Q", "devices", "-c", "3"]),
        "beat": start("beat", [*celery, "beat", "-s", str(DATA / "celerybeat-schedule")]),
        "web": start("web", [sys.executable, "-m", "portal.serve", "--bind", "127.0.0.1", "--port", str(port)]),
    })
    return running


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (a worker pool is a parent and its forks)."""
    total = 0
    children = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
        for child in children.read_text().split():
            total += rss_kib(int(child))
    except (FileNotFoundError, ProcessLookupError):
        pass
    return total


def cpu_s(pid: int) -> float:
    """CPU seconds used by a process and its live children so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / ticks
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            total += cpu_s(int(child))
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return total


class Client:
    """One detector connection: keep-alive HTTP/1.1 to daphne, retrying only what was refused with Retry-After."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.latencies: list[float] = []
        self.accepted = self.recorded = self.refused = self.server_errors = self.other = 0

    def post(self, body: dict[str, object]) -> None:
        payload = json.dumps(body)
        while True:
            started = time.monotonic()
            try:
                self.conn.request("POST", "/api/v1/signals/", payload, {
                    "Host": "localhost", "Content-Type": "application/json", "Authorization": f"Token {self.token}",
                })
                response = self.conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.server_errors += 1
                return
            self.latencies.append((time.monotonic() - started) * 1000)
            if response.status in (429, 503) and response.getheader("Retry-After"):
                self.refused += 1
                time.sleep(float(response.getheader("Retry-After") or 1))
                continue
            if 200 <= response.status < 300:
                self.accepted += 1
                # 202: recorded on an attack; 200: an end for a target with no attack, which records nothing.
                self.recorded += response.status == 202
            elif response.status >= 500:
                self.server_errors += 1
            else:
                self.other += 1
            return


def run_client(client: Client, index: int, stop: threading.Event) -> None:
    sequence = 0
    while not stop.is_set():
        target = TARGETS[(index + sequence * CLIENTS) % len(TARGETS)]
        phase = "end" if sequence % 10 == 9 else ("update" if sequence % 10 else "start")
        client.post({"target": target, "vectors": ["udp_flood"], "bps": 2_000_000_000 + sequence,
                     "pps": 300_000, "phase": phase, "detector": f"soak-{index}"})
        sequence += 1


def wait_ready(port: int, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/accounts/login/", headers={"Host": "localhost"})
            if conn.getresponse().status < 500:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("daphne did not answer")


def main() -> None:
    fresh_database()
    import django

    django.setup()
    from django.db import connection

    from mitigation.models import SignalRecord
    from tests.support.processes import free_port

    token = signals_token()
    connection.close()
    port = free_port()
    running = processes(port)
    try:
        wait_ready(port, 60)
        clients = [Client(port, token) for _ in range(CLIENTS)]
        stop = threading.Event()
        threads = [threading.Thread(target=run_client, args=(c, i, stop), daemon=True) for i, c in enumerate(clients)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(WARMUP_S)
        baseline = {name: rss_kib(p.pid) for name, p in running.items()}
        time.sleep(max(0.0, DURATION_S - WARMUP_S))
        stop.set()
        for thread in threads:
            thread.join(60)
        elapsed = time.monotonic() - started
        final = {name: rss_kib(p.pid) for name, p in running.items()}
        cpu = {name: cpu_s(p.pid) for name, p in running.items()}
        accepted = sum(c.accepted for c in clients)
        latencies = sorted(x for c in clients for x in c.latencies)
        recorded = SignalRecord.objects.filter(detector__startswith="soak-").count()
        lost = max(0, sum(c.recorded for c in clients) - recorded)
        print(f"METRIC soak_signals_per_s {accepted / elapsed:.1f} signals/s")
        print(f"METRIC soak_api_p50 {statistics.median(latencies):.0f} ms")
        print(f"METRIC soak_api_p99 {latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]:.0f} ms")
        print(f"METRIC soak_5xx {sum(c.server_errors for c in clients)} count")
        print(f"METRIC soak_refused {sum(c.refused for c in clients)} count")
        print(f"METRIC soak_other_4xx {sum(c.other for c in clients)} count")
        print(f"METRIC soak_lost {lost} count")
        for name in running:
            if baseline[name]:
                growth = 100.0 * (final[name] - baseline[name]) / baseline[name]
                print(f"METRIC soak_rss_growth_{name} {growth:.1f} %")
        for name in running:
            print(f"METRIC soak_cpu_share_{name} {100.0 * cpu[name] / elapsed:.0f} %")
    finally:
        for process in running.values():
            process.terminate()
        for process in running.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    main()
