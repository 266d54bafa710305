"""Flows an exporter reports as dropped or consumed (forwardingStatus, element 89) are no traffic toward their target.

A router that discards a flood with a FlowSpec rule or an ACL still exports its flows, marked "dropped": counting
them would have the collector see an attack that no longer reaches the customer (and keep a mitigation from ever
looking effective). They are left out of every rate and counted in `records_dropped_by_network` instead; exporters
that send no status are counted as before. The decoders' C and numpy paths agree on this record for record
(`test_native_templated.py`). What was dropped toward each protected host is kept as evidence, in the ``nd|`` fields
of the same seconds, which the closed loop reads back with `read_dropped_toward`.
"""

from __future__ import annotations

import pytest

from collector import FlowCollector, MemoryStore, read_dropped_toward
from collector.signals import SignalPhase
from tests.collector.helpers import FakeClock, Harness, customer_prefix
from tests.collector.test_native_templated import V4_FIELDS, Field, exchange

FORWARDED, UNKNOWN, DROPPED_BY_ACL, CONSUMED = 0x40, 0x00, 0x80 | 20, 0xC0
TARGET, BYSTANDER = "203.0.113.10", "203.0.113.20"
FLOOD_RECORDS, QUIET_RECORDS = 50, 4
SAMPLING = 10
STEPS, STEP_SECONDS = 24, 0.25


def flood_packets(version: int, flood_status: int | None, width: int = 1) -> list[bytes]:
    """A quarter second of export: a UDP flood to the target with `flood_status` (None: a template without the
    element), and a little forwarded traffic to a bystander. Each flood record is 1,000 sampled packets (10,000
    with the 1:10 sampling the options announce): 2,000,000 pps at the target, 200 times its threshold."""
    fields: list[Field] = [*V4_FIELDS] if flood_status is None else [*V4_FIELDS, (89, width)]
    flood: dict[int, int | bytes] = {8: bytes([198, 51, 100, 7]), 12: bytes([203, 0, 113, 10]), 4: 17, 7: 123,
                                     11: 4444, 1: 1_000_000, 2: 1000, 89: flood_status or 0}  # fmt: skip
    quiet: dict[int, int | bytes] = {**flood, 12: bytes([203, 0, 113, 20]), 1: 1000, 2: 1, 89: FORWARDED}
    records = [flood] * FLOOD_RECORDS + [quiet] * QUIET_RECORDS
    return exchange(version, fields, records, per_packet=27, sampler_rates={0: SAMPLING})


def replay(harness: Harness, packets: list[bytes]) -> list[int]:
    """Send the packets every quarter second for `STEPS` steps, then let the hold time pass; returns the seconds."""
    seconds = []
    for _ in range(STEPS):
        harness.clock.now += STEP_SECONDS
        seconds.append(int(harness.clock.now))
        harness.collector.ingest_packets(packets, now=harness.clock.now)
        harness.collector.tick(harness.clock.now)
    harness.idle(max(p.hold_seconds for p in harness.prefixes) + 3)
    return sorted(set(seconds))


@pytest.mark.parametrize("compiled", [True, False], ids=["C", "numpy"])
@pytest.mark.parametrize("version", [9, 10])
@pytest.mark.parametrize(("status", "width"), [(DROPPED_BY_ACL, 1), (CONSUMED, 1), (DROPPED_BY_ACL, 4)])
def test_a_flood_the_network_dropped_does_not_reach_its_target(
    version: int, status: int, width: int, compiled: bool
) -> None:
    """...but what was dropped toward it is counted per second, on either decode path: 4 steps a second of 50
    records of 1,000 packets and 1 MB, sampled 1:10."""
    harness = Harness([customer_prefix()])
    harness.collector.decoder.templated.use_compiled = compiled
    seconds = replay(harness, flood_packets(version, status, width))
    assert harness.signals == []
    stats = harness.collector.stats
    assert stats["records"] == STEPS * (FLOOD_RECORDS + QUIET_RECORDS)
    assert stats["records_dropped_by_network"] == STEPS * FLOOD_RECORDS
    fields = harness.store.read(seconds[1])["203.0.113.0/24"]
    assert f"h|{TARGET}|p" not in fields and f"h|{TARGET}|b" not in fields
    assert fields[f"h|{BYSTANDER}|p"] == fields["p"] == 4 * QUIET_RECORDS * SAMPLING
    assert fields["b"] == 4 * QUIET_RECORDS * 1000 * SAMPLING
    assert fields[f"nd|{TARGET}|p"] == 4 * FLOOD_RECORDS * 1000 * SAMPLING
    assert fields[f"nd|{TARGET}|b"] == 4 * FLOOD_RECORDS * 1_000_000 * SAMPLING
    assert not [name for name in fields if name.startswith("nd|") and TARGET not in name], "the bystander's arrived"
    dropped = read_dropped_toward(harness.store, TARGET, ["203.0.113.0/24"], 3, now=seconds[-1])
    assert dropped == [{"second": s, "bps": 4 * FLOOD_RECORDS * 8_000_000 * SAMPLING,
                        "pps": 4 * FLOOD_RECORDS * 1000 * SAMPLING} for s in seconds[-4:-1]]
    assert read_dropped_toward(harness.store, BYSTANDER, ["203.0.113.0/24"], 3, now=seconds[-1])[0]["bps"] == 0


def test_what_was_dropped_toward_unprotected_addresses_is_not_kept() -> None:
    harness = Harness([customer_prefix("198.51.100.0/24")])
    seconds = replay(harness, flood_packets(10, DROPPED_BY_ACL))
    assert harness.collector.stats["records_dropped_by_network"] == STEPS * FLOOD_RECORDS
    assert harness.store.read(seconds[1]) == {}


@pytest.mark.parametrize("version", [9, 10])
@pytest.mark.parametrize("status", [FORWARDED, UNKNOWN, None])
def test_a_flood_forwarded_or_without_status_is_an_attack(version: int, status: int | None) -> None:
    """Forwarded, unknown and absent statuses all count, as every flow did before the element was read."""
    harness = Harness([customer_prefix()])
    seconds = replay(harness, flood_packets(version, status))
    assert harness.phases(f"{TARGET}/32")[0] is SignalPhase.START
    assert harness.phases(f"{TARGET}/32")[-1] is SignalPhase.END
    assert "records_dropped_by_network" not in harness.collector.stats
    fields = harness.store.read(seconds[1])["203.0.113.0/24"]
    assert fields[f"h|{TARGET}|p"] == 4 * FLOOD_RECORDS * 1000 * SAMPLING
    assert not [name for name in fields if name.startswith("nd|")]


@pytest.mark.parametrize(("limit", "kept"), [(SAMPLING, True), (SAMPLING - 1, False)])
def test_an_exporter_allow_list_holds_what_was_dropped_to_the_same_sampling_cap(limit: int, kept: bool) -> None:
    """A listed exporter claiming more than its maximum sampling rate is believed no more about drops than about
    traffic: those records are counted and left out of the evidence too."""
    store = MemoryStore()
    collector = FlowCollector(store=store, emit=lambda signal: None, prefixes=lambda: [customer_prefix()],
                              clock=FakeClock(), exporters=lambda: {"127.0.0.1": limit})
    collector.ingest_packets(flood_packets(10, DROPPED_BY_ACL), now=1_000_000.5)
    collector.flush()
    fields = store.read(1_000_000).get("203.0.113.0/24", {})
    assert (f"nd|{TARGET}|p" in fields) is kept
    assert collector.stats["sampling_over_limit_records"] == (0 if kept else FLOOD_RECORDS + QUIET_RECORDS)
