"""The compiled aggregation loops give exactly the increments of the numpy path, on real and hostile records."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector import native
from collector.aggregate import BatchAggregator
from collector.decode import PacketDecoder
from collector.prefixes import MonitoredPrefix, PrefixMatcher
from collector.records import FLOW_DTYPE, address_halves
from netsim.flowgen import SCENARIOS, Scenario, encoder_for

PREFIXES = [
    MonitoredPrefix("203.0.113.0/24", "acme", host_pps=10**9, prefix_pps=10**9),
    MonitoredPrefix("198.51.100.0/25", "globex", host_pps=10**9, prefix_pps=10**9),
    MonitoredPrefix("2001:db8:5::/48", "acme", host_pps=10**9, prefix_pps=10**9),
    MonitoredPrefix("10.0.0.0/8", "big", host_pps=10**9, prefix_pps=10**9),
]


def both_paths(flows: np.ndarray, prefixes: list[MonitoredPrefix] = PREFIXES) -> tuple[dict, dict]:
    matcher = PrefixMatcher(prefixes)
    cidrs = [p.cidr for p in matcher.prefixes]
    index = matcher.match(flows)
    compiled = BatchAggregator(use_native=True).aggregate(flows, index, cidrs)
    plain = BatchAggregator(use_native=False).aggregate(flows, index, cidrs)
    return compiled, plain


def test_sluice_native_0_turns_the_helper_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_NATIVE", "0")
    assert native.extension.__wrapped__() is None  # uncached: what a process started with the switch would get


def test_the_compiled_helper_was_built_at_install() -> None:
    assert native.extension() is not None, "the C helper is not built: ./sluice runs python -m collector.native"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("fmt", ["netflow5", "ipfix", "sflow"])
def test_generator_traffic_aggregates_identically(name: str, fmt: str) -> None:
    prefix = "2001:db8:5::/48" if fmt == "ipfix" and name == "syn_flood" else "203.0.113.0/24"
    scenario = Scenario(name, prefix=prefix, attack_start=0, attack_end=10)
    packets = encoder_for(fmt, sampling=7).encode(scenario.records(1.0, 6000))
    decoder = PacketDecoder()
    flows = np.concatenate([decoder.decode(p) for p in packets])
    compiled, plain = both_paths(flows)
    assert compiled == plain
    assert compiled[prefix]["p"] > 0


def random_flows(seed: int, count: int) -> np.ndarray:
    """Records spread over every test prefix and outside them, with random ports, flags and hostile sizes."""
    rng = np.random.default_rng(seed)
    flows = np.zeros(count, dtype=FLOW_DTYPE)
    bases = [address_halves(a) for a in ("203.0.113.0", "198.51.100.0", "2001:db8:5::", "10.0.0.0", "192.0.2.0")]
    which = rng.integers(0, len(bases), count)
    hi = np.array([b[0] for b in bases], dtype=np.uint64)[which]
    lo = np.array([b[1] for b in bases], dtype=np.uint64)[which]
    spread = np.array([256, 256, 1 << 20, 1 << 24, 256], dtype=np.uint64)[which]
    flows["dst_hi"], flows["dst_lo"] = hi, lo + rng.integers(0, 1 << 30, count, dtype=np.uint64) % spread
    flows["src_hi"], flows["src_lo"] = 0, np.uint64(0xFFFF_0000_0000) + rng.integers(0, 50, count, dtype=np.uint64)
    flows["proto"] = rng.choice([1, 6, 17, 47, 58, 0, 255], count)
    flows["tcp_flags"] = rng.integers(0, 256, count)
    flows["frag"] = rng.integers(0, 2, count)
    flows["sport"] = rng.choice([53, 123, 11211, 1900, 389, 19, 80, 443, 65535], count)
    flows["dport"] = rng.integers(0, 65536, count)
    flows["packets"] = rng.choice(np.array([0, 1, 10, 1 << 45], dtype=np.uint64), count)
    flows["bytes"] = rng.choice(np.array([0, 64, 1500, 1 << 62], dtype=np.uint64), count)
    return flows


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 3000))
def test_random_and_hostile_records_aggregate_identically(seed: int, count: int) -> None:
    compiled, plain = both_paths(random_flows(seed, count))
    assert compiled == plain


def test_many_prefixes_take_the_sparse_breakdown_path_identically() -> None:
    prefixes = [MonitoredPrefix(f"10.{i}.0.0/16", f"t{i}", host_pps=1, prefix_pps=1) for i in range(16)]
    rng = np.random.default_rng(5)
    flows = np.zeros(20_000, dtype=FLOW_DTYPE)
    flows["dst_lo"] = np.uint64(0xFFFF_0A00_0000) + rng.integers(0, 16 << 16, flows.size, dtype=np.uint64)
    flows["dport"] = rng.integers(0, 65536, flows.size)
    flows["proto"], flows["packets"], flows["bytes"] = 17, 1, 100
    compiled, plain = both_paths(flows, prefixes)
    assert compiled == plain
    assert len(compiled) == 16
