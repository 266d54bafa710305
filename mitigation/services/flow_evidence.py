"""What the flow records say the network dropped toward each mitigation's target: the closed loop's fourth source.

Exporters that send forwardingStatus (IPFIX element 89, NetFlow v9 FORWARDING_STATUS) mark the traffic their filters
dropped; the collectors keep it per destination host and second beside the traffic that got through (the ``nd|``
fields of `collector.aggregate`), in the same Redis hashes the traffic graphs read. Routers whose filter counters
cannot be read (platform, permissions, an unreachable management address) still say through their flows that an
attack is being held back.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
from collections import defaultdict

import redis
from django.conf import settings

from collector.store import read_dropped_toward
from core.redis import redis_client
from mitigation.models import Mitigation
from tenants.models import VerifiedPrefix

logger = logging.getLogger(__name__)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def network_dropped_toward_targets(mitigations: list[Mitigation], *, now: datetime.datetime,
                                   seconds: int) -> dict[int, int]:
    """Per mitigation whose target is one host: the bits per second flow records marked dropped or consumed toward
    it, the mean over those of the last `seconds` complete seconds before `now` in which the collectors wrote
    anything for its tenant's verified prefixes holding it. No entry where no second had data (a gap, not a zero),
    for prefix-wide targets (no per-host figure) and when Redis cannot be read (logged).
    """
    hosts = {m.pk: target for m in mitigations
             if (target := ipaddress.ip_network(str(m.attack.target))).num_addresses == 1}
    if not hosts:
        return {}
    owned: dict[int, list[Network]] = defaultdict(list)
    rows = VerifiedPrefix.objects.filter(tenant_id__in={m.tenant_id for m in mitigations})
    for tenant_id, prefix in rows.values_list("tenant_id", "prefix"):
        owned[tenant_id].append(ipaddress.ip_network(str(prefix)))
    found = {}
    for mitigation in mitigations:
        host = hosts.get(mitigation.pk)
        if host is None:
            continue
        prefixes = [str(prefix) for prefix in owned[mitigation.tenant_id]
                    if prefix.version == host.version and host.subnet_of(prefix)]  # type: ignore[arg-type]
        try:
            per_second = read_dropped_toward(redis_client(), str(host.network_address), prefixes, seconds,
                                             now=now.timestamp(), namespace=settings.SLUICE_FLOW_NAMESPACE)
        except (redis.RedisError, OSError) as error:
            logger.warning("flow records toward %s unavailable: %s", host, error)
            continue
        if per_second:
            found[mitigation.pk] = round(sum(row["bps"] for row in per_second) / len(per_second))
    return found
