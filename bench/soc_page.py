"""SOC board: server time and query count with 500 tenants, 5,000 prefixes and 1,000 active mitigations.

The board reads the public schema only, so the tenants here are public rows without schemas (made with bulk
inserts to keep the set-up short); prefixes, attacks, mitigations, decisions and actions are real rows. The board
is rendered through Django's test client as an operator, 50 times after a warm-up. Prints METRIC lines.
"""

from __future__ import annotations

import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyotp
from _common import size

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB_NAME = "sluice_socbench"
os.environ.update(
    DJANGO_SETTINGS_MODULE="portal.settings",
    DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
    REDIS_URL="redis://127.0.0.1:6379/12",
    SLUICE_DATA_DIR=tempfile.mkdtemp(prefix="sluice-socbench-"),
    ALLOWED_HOSTS="localhost,testserver",
)
TENANTS, PREFIXES_PER_TENANT, MITIGATIONS, RUNS = size((500, 10, 1000, 50), (3, 2, 5, 2))


def prepare() -> None:
    import psycopg

    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    subprocess.run([sys.executable, "manage.py", "migrate_schemas", "--shared", "-v", "0"], cwd=ROOT, check=True)
    subprocess.run([sys.executable, "manage.py", "load_network", "netsim/demo-network.yaml"], cwd=ROOT, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def populate() -> None:
    import ipaddress

    from django.core.management import call_command
    from django.utils import timezone

    from devices.models import ScrubbingCenter
    from mitigation.models import Action, Attack, Decision, Mitigation
    from tenants.models import Domain, Tenant, VerifiedPrefix

    call_command("bootstrap_public", operator="soc", operator_password="soc-bench-password-1",
                 stdout=io.StringIO())
    tenants = Tenant.objects.bulk_create(
        [Tenant(schema_name=f"t{i:03d}", slug=f"t{i:03d}", name=f"Tenant {i}") for i in range(TENANTS)]
    )
    Domain.objects.bulk_create([Domain(domain=f"t{i:03d}.localhost", tenant=t) for i, t in enumerate(tenants)])
    prefixes = []
    for index, tenant in enumerate(tenants):
        for n in range(PREFIXES_PER_TENANT):
            network = ipaddress.ip_network(f"10.{index // 25}.{(index % 25) * 10 + n}.0/24")
            prefixes.append(VerifiedPrefix(tenant=tenant, prefix=network, tenant_prefix_id=n + 1, verified_by="bench"))
    VerifiedPrefix.objects.bulk_create(prefixes)
    center = ScrubbingCenter.objects.first()
    now = timezone.now()
    attacks = Attack.objects.bulk_create(
        [Attack(tenant=tenants[i % TENANTS], target=ipaddress.ip_network(f"{prefixes[i].prefix.network_address + 7}/32"),
                vectors=["udp_flood"], bps=5_000_000_000, pps=700_000, peak_bps=6_000_000_000, peak_pps=800_000,
                detectors=["bench"], started_at=now, last_signal_at=now) for i in range(MITIGATIONS)]
    )
    mitigations = Mitigation.objects.bulk_create(
        [Mitigation(attack=a, tenant_id=a.tenant_id, state="active", level="diversion", center=center,
                    reason="bench", activated_at=now) for a in attacks]
    )
    Decision.objects.bulk_create([Decision(mitigation=m, level="diversion", center=center, reason="bench",
                                           inputs={"bench": True}) for m in mitigations])
    Action.objects.bulk_create([
        Action(mitigation=m, kind="diversion", route_key=f"k{m.pk}", targets=["edge"],
               spec={"type": "unicast", "prefix": str(prefixes[i].prefix), "next_hop": "192.0.2.10"})
        for i, m in enumerate(mitigations)
    ])


def main() -> None:
    prepare()
    import django

    django.setup()
    populate()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django_tenants.utils import schema_context

    from core.accounts.models import User
    from tests.support.world import login_with_code

    # The SOC board requires two-factor sign-in: the operator has enrolled an authenticator app, and signs in with
    # the password, then the app's current code, as a person would.
    secret = pyotp.random_base32()
    with schema_context("public"):
        operator = User.objects.get(username="soc")
        operator.totp_secret = secret
        operator.save(update_fields=["totp_secret"])
    client = Client(HTTP_HOST="localhost")
    if login_with_code(client, "soc", "soc-bench-password-1", secret=secret).status_code != 302:
        raise SystemExit("operator sign-in failed")
    client.get("/")
    timings, counts = [], []
    for _ in range(RUNS):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get("/")
            timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"board answered {response.status_code}")
        counts.append(len(queries.captured_queries))
    ordered = sorted(timings)
    print(f"METRIC soc_board_p50 {statistics.median(ordered):.1f} ms")
    print(f"METRIC soc_board_p95 {ordered[int(0.95 * (len(ordered) - 1))]:.1f} ms")
    print(f"METRIC soc_board_queries {max(counts)} queries")
    print(f"METRIC soc_board_bytes {len(response.content)} bytes")


if __name__ == "__main__":
    main()
