"""Where per-second aggregates of all collectors meet, and where baselines survive restarts.

Every collector adds its share of a second into one hash per (second, prefix) with HINCRBY, so the detector reads
the sum of all collectors that see the same exporters. Keys expire on their own; nothing needs cleaning up.
`MemoryStore` is the same contract inside one process (no Redis configured, and tests).
"""

from __future__ import annotations

import ipaddress
import json
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import redis

DEFAULT_NAMESPACE = "sluice:flow"
DEFAULT_TTL_SECONDS = 900

Baseline = tuple[float, float, int]  # bps, pps, samples



def _text(value: bytes | str) -> str:
    """A Redis reply as text (this client does not decode replies itself)."""
    return value.decode() if isinstance(value, bytes) else value

class AggregateStore(Protocol):
    """The operations the collector and detector need from a shared store."""

    def push(self, second: int, deltas: Mapping[str, Mapping[str, int]]) -> None:
        """Add field increments of one second, per prefix cidr."""

    def read(self, second: int, prefixes: Iterable[str] | None = None) -> dict[str, dict[str, int]]:
        """The merged fields of one second, per prefix cidr that saw traffic (only `prefixes` when given)."""

    def read_totals(self, second: int) -> dict[str, tuple[int, int]]:
        """(bytes, packets) of one second, per prefix cidr that saw traffic: what tells whether to read more."""

    def series(self, prefix: str, first_second: int, last_second: int) -> list[tuple[int, int, int]]:
        """(second, bytes, packets) of a prefix for each second in [first, last]."""

    def dropped_series(self, prefix: str, host: str, first_second: int, last_second: int) -> list[tuple[int, int, int]]:
        """(second, bytes, packets) the network dropped toward `host` (the ``nd|`` fields) for each second in [first,
        last] in which anything was pushed for `prefix`; the other seconds are left out (a gap, not a zero)."""

    def load_baselines(self) -> dict[str, Baseline]:
        """Baselines saved by whichever collector led detection last."""

    def save_baselines(self, baselines: Mapping[str, Baseline]) -> None:
        """Persist baselines (called each evaluated second)."""

    def try_lead(self, owner: str, ttl_seconds: float) -> bool:
        """Take or keep the detection lease; only the holder emits signals."""


class MemoryStore:
    """In-process store for a single collector, with the same semantics as `RedisStore`."""

    def __init__(self, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        self.ttl_seconds = ttl_seconds
        self._seconds: dict[int, dict[str, Counter[str]]] = {}
        self._baselines: dict[str, Baseline] = {}
        self._lock = threading.Lock()

    def push(self, second: int, deltas: Mapping[str, Mapping[str, int]]) -> None:
        """Add increments and forget seconds older than the TTL."""
        with self._lock:
            bucket = self._seconds.setdefault(second, {})
            for prefix, fields in deltas.items():
                bucket.setdefault(prefix, Counter()).update(fields)
            horizon = second - self.ttl_seconds
            for old in [s for s in self._seconds if s < horizon]:
                del self._seconds[old]

    def read(self, second: int, prefixes: Iterable[str] | None = None) -> dict[str, dict[str, int]]:
        """A copy of the second's counters."""
        with self._lock:
            bucket = self._seconds.get(second, {})
            chosen = bucket if prefixes is None else [p for p in prefixes if p in bucket]
            return {prefix: dict(bucket[prefix]) for prefix in chosen}

    def read_totals(self, second: int) -> dict[str, tuple[int, int]]:
        """Each prefix's bytes and packets of the second."""
        with self._lock:
            return {prefix: (f.get("b", 0), f.get("p", 0)) for prefix, f in self._seconds.get(second, {}).items()}

    def series(self, prefix: str, first_second: int, last_second: int) -> list[tuple[int, int, int]]:
        """Totals per second, zero where nothing was seen."""
        with self._lock:
            out = []
            for second in range(first_second, last_second + 1):
                fields = self._seconds.get(second, {}).get(prefix, Counter())
                out.append((second, fields.get("b", 0), fields.get("p", 0)))
            return out

    def dropped_series(self, prefix: str, host: str, first_second: int, last_second: int) -> list[tuple[int, int, int]]:
        """The host's ``nd|`` fields of each second the prefix has counters in."""
        with self._lock:
            out = []
            for second in range(first_second, last_second + 1):
                fields = self._seconds.get(second, {}).get(prefix)
                if fields is not None:
                    out.append((second, fields.get(f"nd|{host}|b", 0), fields.get(f"nd|{host}|p", 0)))
            return out

    def load_baselines(self) -> dict[str, Baseline]:
        """Baselines kept in memory."""
        return dict(self._baselines)

    def save_baselines(self, baselines: Mapping[str, Baseline]) -> None:
        """Keep baselines in memory."""
        self._baselines.update(baselines)

    def try_lead(self, owner: str, ttl_seconds: float) -> bool:
        """A single process always leads."""
        return True


# KEYS: one hash per prefix. ARGV: expiry in seconds, then per key one text of "name\nvalue\n" lines (field names
# never hold a newline: they are built from addresses, numbers and class names).
ADD_FIELDS_SCRIPT = """
local ttl = ARGV[1]
for k = 1, #KEYS do
    for name, value in string.gmatch(ARGV[k + 1], '([^\\n]+)\\n([^\\n]+)\\n') do
        redis.call('HINCRBY', KEYS[k], name, value)
    end
    redis.call('EXPIRE', KEYS[k], ttl)
end
return #KEYS
"""

# KEYS: hashes. Returns per hash one text of "name\nvalue\n" lines (empty for a missing hash).
READ_FIELDS_SCRIPT = """
local texts = {}
for k = 1, #KEYS do
    local flat = redis.call('HGETALL', KEYS[k])
    texts[k] = #flat > 0 and (table.concat(flat, '\\n') .. '\\n') or ''
end
return texts
"""


class RedisStore:
    """Redis-backed store shared by collector processes (HINCRBY per second-bucket hash, with expiry)."""

    def __init__(
        self, client: redis.Redis, namespace: str = DEFAULT_NAMESPACE, ttl_seconds: int = DEFAULT_TTL_SECONDS
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.ttl_seconds = ttl_seconds
        self._add_fields = client.register_script(ADD_FIELDS_SCRIPT)
        self._read_fields = client.register_script(READ_FIELDS_SCRIPT)

    @classmethod
    def from_url(cls, url: str, namespace: str = DEFAULT_NAMESPACE, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> RedisStore:
        """A store on the Redis at `url` (redis://host:port/db)."""
        return cls(redis.Redis.from_url(url), namespace, ttl_seconds)

    def _agg_key(self, second: int, prefix: str) -> str:
        return f"{self.namespace}:agg:{second}:{prefix}"

    def _active_key(self, second: int) -> str:
        return f"{self.namespace}:active:{second}"

    def push(self, second: int, deltas: Mapping[str, Mapping[str, int]]) -> None:
        """Add a flush's counters into the second's hashes: one script call (HINCRBY in a loop inside Redis).

        A flush holds a thousand or more fields; one pipelined HINCRBY each cost the collector ~6 µs of Python per
        field in redis-py, more than decoding and aggregating the records behind them. The script takes one text
        per hash, which costs a fraction of that to build and send.
        """
        if not deltas:
            return
        keys: list[str] = []
        args: list[str | int] = [self.ttl_seconds]
        for prefix, fields in deltas.items():
            keys.append(self._agg_key(second, prefix))
            args.append("".join(f"{name}\n{value}\n" for name, value in fields.items() if value))
        active = self._active_key(second)
        pipe = self.client.pipeline(transaction=False)
        self._add_fields(keys=keys, args=args, client=pipe)
        pipe.sadd(active, *deltas.keys())
        pipe.expire(active, self.ttl_seconds)
        pipe.execute()

    def read(self, second: int, prefixes: Iterable[str] | None = None) -> dict[str, dict[str, int]]:
        """Every prefix active in the second (or those of `prefixes`) with its counters: one script call that
        returns each hash as one text.

        The detecting collector reads the current second ten times a second, a thousand and more fields each time;
        one text per hash is split in C by Python instead of each field being parsed as its own reply.
        """
        if prefixes is None:
            prefixes = sorted(_text(p) for p in self.client.smembers(self._active_key(second)))
        prefixes = list(prefixes)
        if not prefixes:
            return {}
        texts = self._read_fields(keys=[self._agg_key(second, prefix) for prefix in prefixes])
        out = {}
        for prefix, text in zip(prefixes, texts, strict=True):
            words = _text(text).split("\n")
            out[prefix] = dict(zip(words[0:-1:2], map(int, words[1::2]), strict=True))
        return out

    def read_totals(self, second: int) -> dict[str, tuple[int, int]]:
        """HMGET of the totals of every prefix active in the second, in one pipeline."""
        prefixes = sorted(_text(p) for p in self.client.smembers(self._active_key(second)))
        if not prefixes:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for prefix in prefixes:
            pipe.hmget(self._agg_key(second, prefix), "b", "p")
        return {prefix: (int(b or 0), int(p or 0)) for prefix, (b, p) in zip(prefixes, pipe.execute(), strict=True)}

    def series(self, prefix: str, first_second: int, last_second: int) -> list[tuple[int, int, int]]:
        """HMGET of the totals of each second."""
        seconds = list(range(first_second, last_second + 1))
        pipe = self.client.pipeline(transaction=False)
        for second in seconds:
            pipe.hmget(self._agg_key(second, prefix), "b", "p")
        return [(s, int(b or 0), int(p or 0)) for s, (b, p) in zip(seconds, pipe.execute(), strict=True)]

    def dropped_series(self, prefix: str, host: str, first_second: int, last_second: int) -> list[tuple[int, int, int]]:
        """EXISTS and HMGET of the host's ``nd|`` fields for each second, in one pipeline."""
        seconds = list(range(first_second, last_second + 1))
        pipe = self.client.pipeline(transaction=False)
        for second in seconds:
            key = self._agg_key(second, prefix)
            pipe.exists(key)
            pipe.hmget(key, f"nd|{host}|b", f"nd|{host}|p")
        replies = pipe.execute()
        return [(s, int(b or 0), int(p or 0))
                for s, present, (b, p) in zip(seconds, replies[0::2], replies[1::2], strict=True) if present]

    def load_baselines(self) -> dict[str, Baseline]:
        """Baselines as saved in one hash, prefix -> JSON [bps, pps, samples]."""
        raw = self.client.hgetall(f"{self.namespace}:baselines")
        out = {}
        for prefix, value in raw.items():
            bps, pps, samples = json.loads(value)
            out[_text(prefix)] = (float(bps), float(pps), int(samples))
        return out

    def save_baselines(self, baselines: Mapping[str, Baseline]) -> None:
        """Overwrite the saved baselines of these prefixes."""
        if baselines:
            mapping: dict[Any, Any] = {prefix: json.dumps(list(value)) for prefix, value in baselines.items()}
            self.client.hset(f"{self.namespace}:baselines", mapping=mapping)

    def try_lead(self, owner: str, ttl_seconds: float) -> bool:
        """A lease key: set if absent, renewed by its owner; another collector takes over when it expires."""
        key = f"{self.namespace}:leader"
        ttl_ms = max(1, int(ttl_seconds * 1000))
        if self.client.set(key, owner, nx=True, px=ttl_ms):
            return True
        current = self.client.get(key)
        if current is not None and _text(current) == owner:
            self.client.pexpire(key, ttl_ms)
            return True
        return False


def read_prefix_series(
    client: redis.Redis | AggregateStore,
    prefix: str,
    seconds: int,
    *,
    now: float,
    namespace: str = DEFAULT_NAMESPACE,
) -> list[dict[str, int]]:
    """Per-second bps and pps of `prefix` over the last `seconds` complete seconds before `now`, oldest first.

    Takes a Redis client (what a web view has) or a store. The current second is left out: it is still filling.
    """
    store = RedisStore(client, namespace) if isinstance(client, redis.Redis) else client
    last = int(now) - 1
    rows = store.series(str(ipaddress.ip_network(prefix, strict=False)), last - seconds + 1, last)
    return [{"second": s, "bps": b * 8, "pps": p} for s, b, p in rows]


def read_dropped_toward(
    client: redis.Redis | AggregateStore,
    host: str,
    prefixes: Iterable[str],
    seconds: int,
    *,
    now: float,
    namespace: str = DEFAULT_NAMESPACE,
) -> list[dict[str, int]]:
    """Per-second bps and pps the network dropped toward `host` (forwardingStatus; the ``nd|`` fields) over the
    last `seconds` complete seconds before `now`, oldest first, summed over `prefixes` (the monitored prefixes that
    may hold it). Seconds in which nothing was pushed for any of them are left out: a gap, not a zero.

    Takes a Redis client (what the Django side has) or a store.
    """
    store = RedisStore(client, namespace) if isinstance(client, redis.Redis) else client
    last = int(now) - 1
    name = str(ipaddress.ip_address(host))
    found: dict[int, tuple[int, int]] = {}
    for prefix in prefixes:
        cidr = str(ipaddress.ip_network(prefix, strict=False))
        for second, b, p in store.dropped_series(cidr, name, last - seconds + 1, last):
            before_b, before_p = found.get(second, (0, 0))
            found[second] = (before_b + b, before_p + p)
    return [{"second": s, "bps": b * 8, "pps": p} for s, (b, p) in sorted(found.items())]
