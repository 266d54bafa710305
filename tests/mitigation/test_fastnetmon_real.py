"""Debian's real FastNetMon, with Sluice's notify script exactly as docs/fastnetmon.md installs it, feeding a live
Sluice: the attack Sluice records is the one FastNetMon saw, and FastNetMon's unban ends it."""

from __future__ import annotations

import shlex
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django_tenants.utils import schema_context

from core.accounts.models import ApiToken, User
from mitigation.models import Attack, SignalRecord
from netsim.fastnetmon import FastNetMon, ensure_installed
from netsim.flowgen import Scenario, encoder_for
from netsim.polling import wait_for
from tests.support.processes import asgi_server
from tests.support.world import World

SCRIPT = Path(__file__).resolve().parents[2] / "mitigation" / "integrations" / "fastnetmon_notify.py"
THRESHOLD_PPS = 2_000


@pytest.fixture(scope="module")
def sluice(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with asgi_server(tmp_path_factory.mktemp("asgi") / "daphne.log") as port:
        yield port


@pytest.fixture
def fastnetmon(sluice: int, world: World, django_db_blocker: Any) -> Iterator[FastNetMon]:
    binary = ensure_installed()
    if binary is None:
        pytest.fail("Debian's fastnetmon could not be installed (apt-get install fastnetmon)")
    with django_db_blocker.unblock(), schema_context("public"):
        key, prefix, digest = ApiToken.generate_key()
        ApiToken.objects.create(user=User.objects.get(username="soc"), name="fastnetmon", key_prefix=prefix,
                                key_hash=digest, scopes=["signals"])
    # As docs/fastnetmon.md installs it: the script, with SLUICE_URL and SLUICE_TOKEN in its environment.
    # The first line only keeps FastNetMon's own arguments (its pps among them) for the test to compare with.
    notify = (f"#!/bin/sh\necho \"$@\" >> {{dir}}/calls.log\nSLUICE_URL=http://127.0.0.1:{sluice} SLUICE_TOKEN={key} "
              f"exec {shlex.quote(sys.executable)} {shlex.quote(str(SCRIPT))} \"$@\" 2>>{{dir}}/notify.log\n")
    process = FastNetMon(binary, threshold_pps=THRESHOLD_PPS, notify=notify, ban_time=5)
    try:
        yield process
    finally:
        process.stop()
        with django_db_blocker.unblock():
            Attack.objects.filter(detectors__contains=["fastnetmon"]).delete()


def send(fnm: FastNetMon, fmt: str, vector: str, target: str, seconds: float, pps: int) -> None:
    encoder = encoder_for(fmt, sampling=1)
    if hasattr(encoder, "template_every"):
        encoder.template_every = 5
    packets = encoder.encode(Scenario(vector, target=target, attack_start=0, attack_end=1e9,
                                      attack_share=1).records(0.5, 20_000))
    per_packet = 20_000 // len(packets)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        start, sent, index = time.monotonic(), 0, 0
        while time.monotonic() - start < seconds:
            while sent < pps * (time.monotonic() - start):
                sock.sendto(packets[index], fnm.address(fmt))
                sent += per_packet
                index = (index + 1) % len(packets)
            time.sleep(0.002)


@pytest.mark.parametrize(("fmt", "vector", "target", "expected"), [
    ("sflow", "syn_flood", "203.0.113.60", {"syn_flood"}),
    ("sflow", "dns_amplification", "203.0.113.61", {"dns_amplification", "udp_flood"}),
])
def test_fastnetmon_as_it_really_runs_drives_the_attack_sluice_records(
    fastnetmon: FastNetMon, django_db_blocker: Any, fmt: str, vector: str, target: str, expected: set[str],
) -> None:
    rate = THRESHOLD_PPS * 3
    send(fastnetmon, fmt, vector, target, seconds=6, pps=rate)
    with django_db_blocker.unblock():
        def recorded() -> Attack | None:
            return Attack.objects.filter(target=f"{target}/32", detectors__contains=["fastnetmon"]).first()

        attack = wait_for(recorded, timeout=30, what=f"FastNetMon's ban of {target} in Sluice")
        assert set(attack.vectors) & expected, (attack.vectors, (fastnetmon.dir / "notify.log").read_text())
        assert "other" not in attack.vectors
        # The figures are FastNetMon's own: the pps it passed with its ban and attack details.
        calls = [line.split() for line in (fastnetmon.dir / "calls.log").read_text().splitlines()]
        fastnetmon_pps = max(int(c[2]) for c in calls if c[0] == target and c[3] in ("ban", "attack_details"))
        assert attack.peak_pps == fastnetmon_pps and fastnetmon_pps > THRESHOLD_PPS
        assert attack.peak_bps > 0
        wait_for(lambda: SignalRecord.objects.filter(attack=attack, phase="end").exists(), timeout=40,
                 what="FastNetMon's unban reaching Sluice once the attack stopped")
        attack.refresh_from_db()
        assert attack.end_signalled_at is not None
