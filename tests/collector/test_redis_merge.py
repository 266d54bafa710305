"""Several collectors share exporters: their per-second shares meet in Redis and one of them detects."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from collector import RedisStore, read_dropped_toward, read_prefix_series
from collector.signals import AttackVector, SignalPhase
from netsim.flowgen import Scenario, generate
from tests.collector.helpers import FakeClock, Harness, customer_prefix

REDIS_URL = "redis://127.0.0.1:6379/9"


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(REDIS_URL)
    connection.ping()  # ./sluice test starts Redis; without it this must fail, not pass by skipping
    yield connection
    connection.close()


@pytest.fixture
def namespace(client: redis.Redis) -> Iterator[str]:
    name = f"test:collector:{uuid.uuid4().hex}"
    yield name
    keys = list(client.scan_iter(f"{name}:*"))
    if keys:
        client.delete(*keys)


def test_two_collectors_each_below_threshold_merge_into_one_attack(client: redis.Redis, namespace: str) -> None:
    clock = FakeClock()
    prefix = customer_prefix(hold_seconds=2, host_bps=None)
    first = Harness([prefix], store=RedisStore(client, namespace), clock=clock)
    second = Harness([prefix], store=RedisStore(client, namespace), clock=clock)
    scenario = Scenario("cldap_amplification", attack_start=1, attack_end=4)
    # 2,000 records/s sampled 1:10 puts 18,000 pps on the target during the attack, over the 10,000 pps host
    # threshold only when both halves are added; each collector alone sees 9,000 pps.
    start = clock.now
    for index, (t, packets, _) in enumerate(generate(scenario, "netflow5", 2000, 6, sampling=10, tick=0.05)):
        clock.now = start + t
        receiver = first if index % 2 == 0 else second
        receiver.collector.ingest_packets(packets, now=clock.now)
        first.collector.tick(clock.now)
        second.collector.tick(clock.now)
    for _ in range(40):
        clock.now += 0.25
        first.collector.tick(clock.now)
        second.collector.tick(clock.now)
    leaders = [h for h in (first, second) if h.signals]
    assert len(leaders) == 1
    signals = leaders[0].signals
    assert (signals[0].phase, signals[0].target, signals[0].vectors) == (
        SignalPhase.START, "203.0.113.10/32", (AttackVector.CLDAP_AMPLIFICATION,)
    )
    assert signals[-1].phase is SignalPhase.END
    series = read_prefix_series(client, "203.0.113.0/24", 20, now=clock.now, namespace=namespace)
    assert max(row["pps"] for row in series) >= 18_000


def test_alone_each_collector_stays_below_threshold(client: redis.Redis, namespace: str) -> None:
    clock = FakeClock()
    lone = Harness([customer_prefix(host_bps=None)], store=RedisStore(client, namespace), clock=clock)
    scenario = Scenario("cldap_amplification", attack_start=1, attack_end=4)
    start = clock.now
    for index, (t, packets, _) in enumerate(generate(scenario, "netflow5", 2000, 6, sampling=10, tick=0.05)):
        clock.now = start + t
        if index % 2 == 0:
            lone.collector.ingest_packets(packets, now=clock.now)
        lone.collector.tick(clock.now)
    assert lone.signals == []


def test_baselines_persist_in_redis_across_restarts(client: redis.Redis, namespace: str) -> None:
    clock = FakeClock()
    prefix = customer_prefix()
    first = Harness([prefix], store=RedisStore(client, namespace), clock=clock)
    first.play(Scenario("background"), "sflow", rate=1000, duration=3)
    learned = first.collector.detector.baselines["203.0.113.0/24"]
    client.delete(f"{namespace}:leader")
    restarted = Harness([prefix], store=RedisStore(client, namespace), clock=clock)
    assert restarted.collector.detector.baselines["203.0.113.0/24"] == pytest.approx(learned)


def test_pushed_counters_add_up_exactly_and_expire(client: redis.Redis, namespace: str) -> None:
    store = RedisStore(client, namespace, ttl_seconds=120)
    big = 2**53 + 1  # no double holds it: the values travel as decimal text and Redis adds them as integers
    store.push(7, {"203.0.113.0/24": {"b": 10, "p": big, "h|203.0.113.1|b": 7, "quiet": 0},
                   "2001:db8:100::/48": {"src|2001:db8::1|p": 1}})  # fmt: skip
    store.push(7, {"203.0.113.0/24": {"b": 5, "p": big}})
    assert store.read(7) == {"203.0.113.0/24": {"b": 15, "p": 2 * big, "h|203.0.113.1|b": 7},
                             "2001:db8:100::/48": {"src|2001:db8::1|p": 1}}  # fmt: skip
    assert 0 < client.ttl(f"{namespace}:agg:7:203.0.113.0/24") <= 120
    assert store.read(8) == {}


def test_totals_and_chosen_prefixes_are_read_without_the_rest(client: redis.Redis, namespace: str) -> None:
    store = RedisStore(client, namespace)
    store.push(9, {"203.0.113.0/24": {"b": 1500, "p": 3, "h|203.0.113.1|p": 3}, "198.51.100.0/24": {"b": 64, "p": 1}})
    assert store.read_totals(9) == {"203.0.113.0/24": (1500, 3), "198.51.100.0/24": (64, 1)}
    assert store.read(9, ["203.0.113.0/24"]) == {"203.0.113.0/24": {"b": 1500, "p": 3, "h|203.0.113.1|p": 3}}
    assert store.read_totals(10) == {} and store.read(10, []) == {}


def test_what_the_network_dropped_toward_a_host_is_read_back_with_gaps_left_out(
    client: redis.Redis, namespace: str
) -> None:
    """Seconds 20 and 22 have counters for the prefix (22 none dropped: a zero), 21 none at all (a gap); two
    prefixes that may hold the host add up; the current second is still filling and left out."""
    store = RedisStore(client, namespace)
    store.push(20, {"203.0.113.0/24": {"b": 100, "p": 1, "nd|203.0.113.10|b": 1000, "nd|203.0.113.10|p": 2,
                                       "nd|203.0.113.11|b": 7, "nd|203.0.113.11|p": 1},
                    "203.0.113.0/28": {"nd|203.0.113.10|b": 500, "nd|203.0.113.10|p": 1}})  # fmt: skip
    store.push(22, {"203.0.113.0/24": {"b": 100, "p": 1}})
    store.push(23, {"203.0.113.0/24": {"nd|203.0.113.10|b": 9, "nd|203.0.113.10|p": 9}})
    rows = read_dropped_toward(client, "203.0.113.10", ["203.0.113.0/24", "203.0.113.0/28"], 4, now=23.5,
                               namespace=namespace)
    assert rows == [{"second": 20, "bps": 12_000, "pps": 3}, {"second": 22, "bps": 0, "pps": 0}]
    assert read_dropped_toward(client, "203.0.113.10", ["203.0.113.0/24"], 4, now=21.5, namespace=namespace) == [
        {"second": 20, "bps": 8000, "pps": 2}]
    assert read_dropped_toward(client, "203.0.113.10", ["192.0.2.0/24"], 4, now=23.5, namespace=namespace) == []

