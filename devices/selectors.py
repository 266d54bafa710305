"""Reads of the inventory for the engine: the measured tenant latencies.

Read from the public schema in one query however large the network is, because the engine replans every live
attack on each signal. The engine's network snapshot is built in `mitigation.snapshot`.
"""

from __future__ import annotations

from devices.models import TenantLatency


def tenant_latencies() -> dict[int, dict[int, float]]:
    """tenant id -> center id -> measured latency in ms (one query); a missing pair means "never choose"."""
    latencies: dict[int, dict[int, float]] = {}
    for tenant_id, center_id, latency_ms in TenantLatency.objects.values_list("tenant_id", "center_id", "latency_ms"):
        latencies.setdefault(tenant_id, {})[center_id] = latency_ms
    return latencies
