"""Per-prefix traffic graphs from the flow collector's per-second aggregates in Redis.

The customer sees its own verified prefixes; the SOC sees the prefixes under attack now. A Redis outage gives empty
graphs, never an error page: the graphs are a view, the attack handling does not depend on them.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

from collector import read_prefix_series
from core.redis import redis_client
from mitigation.models import Attack
from mitigation.selectors import request_tenant
from portal.views import viewer_required
from tenants.models import VerifiedPrefix

logger = logging.getLogger(__name__)

GRAPH_SECONDS = 120
SOC_GRAPHS = 20


def prefix_graphs(prefixes: list[tuple[str, str]], *, seconds: int = GRAPH_SECONDS) -> list[dict[str, Any]]:
    """For each (prefix, tenant slug): the last `seconds` complete seconds of bps and pps, oldest first."""
    now = time.time()
    graphs = []
    for prefix, tenant in prefixes:
        try:
            series = read_prefix_series(redis_client(), prefix, seconds, now=now,
                                        namespace=settings.SLUICE_FLOW_NAMESPACE)
        except (redis.RedisError, OSError) as error:
            logger.warning("traffic of %s unavailable: %s", prefix, error)
            series = []
        graphs.append({"prefix": prefix, "tenant": tenant, "series": series})
    return graphs


def visible_prefixes(request: HttpRequest) -> list[tuple[str, str]]:
    """A tenant's own verified prefixes; for the SOC, the verified prefixes holding an active attack's target."""
    tenant = request_tenant(request)
    if tenant is not None:
        rows = VerifiedPrefix.objects.filter(tenant=tenant).values_list("prefix", "tenant__slug")
        return [(str(prefix), slug) for prefix, slug in rows]
    targets = Attack.objects.filter(status="active", tenant__isnull=False).values_list("target", flat=True)[:200]
    found: dict[str, str] = {}
    for target in targets:
        row = VerifiedPrefix.objects.filter(prefix__net_contains_or_equals=target).values_list(
            "prefix", "tenant__slug").first()
        if row is not None:
            found[str(row[0])] = row[1]
        if len(found) >= SOC_GRAPHS:
            break
    return sorted(found.items())


@viewer_required
@never_cache
def traffic(request: HttpRequest) -> JsonResponse:
    """The graphs' data as JSON, polled by the dashboard and the SOC board."""
    return JsonResponse({"seconds": GRAPH_SECONDS, "graphs": prefix_graphs(visible_prefixes(request))})
