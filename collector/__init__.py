"""Sluice's flow collector and detector: sFlow v5, NetFlow v5/v9 and IPFIX in, `AttackSignal`s out.

Django-free on purpose: it runs in its own processes (several may share exporters and meet in Redis) and hands
signals to a callback that the Django side wraps.
"""

from collector.engine import FlowCollector
from collector.prefixes import MonitoredPrefix
from collector.run import run_collector
from collector.store import MemoryStore, RedisStore, read_dropped_toward, read_prefix_series

__all__ = ["FlowCollector", "MemoryStore", "MonitoredPrefix", "RedisStore", "read_dropped_toward", "read_prefix_series",
           "run_collector"]
