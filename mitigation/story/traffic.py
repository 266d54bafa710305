"""The traffic graph's series: attack toward the target, FlowSpec-dropped, scrubbed and clean bit/s over time."""

from __future__ import annotations

import datetime
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from mitigation.choices import ActionKindChoices
from mitigation.models import Action, CenterPrefixSample, Mitigation, SignalRecord
from mitigation.story.counters import SAMPLES_LIMIT, counter_rates, counter_samples

GRAPH_BUCKETS = 240
MIN_BUCKET_S = 10


@dataclass(frozen=True)
class TrafficSeries:
    """Bucketed series over the attack's life, each value in bit/s or None where nothing was measured."""

    start: datetime.datetime
    bucket_s: int
    times: list[datetime.datetime]
    attack_bps: list[float | None]
    dropped_bps: list[float | None]
    scrubbed_bps: list[float | None]
    clean_bps: list[float | None]
    activated_at: datetime.datetime | None
    ended_at: datetime.datetime | None
    markers: list[tuple[datetime.datetime, str]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(v is not None for v in (*self.attack_bps, *self.dropped_bps, *self.scrubbed_bps))

    def as_json(self) -> dict[str, Any]:
        """Plain JSON for the page's graph: seconds since `start`, values rounded to bit/s."""
        def values(series: list[float | None]) -> list[int | None]:
            return [None if v is None else round(v) for v in series]

        def offset(moment: datetime.datetime | None) -> float | None:
            return None if moment is None else round((moment - self.start).total_seconds(), 1)

        return {
            "start": self.start.isoformat(), "bucket_s": self.bucket_s,
            "t": [offset(t) for t in self.times],
            "series": [
                {"key": "attack", "label": "attack toward the target", "values": values(self.attack_bps)},
                {"key": "dropped", "label": "dropped by FlowSpec", "values": values(self.dropped_bps)},
                {"key": "scrubbed", "label": "scrubbed by the center", "values": values(self.scrubbed_bps)},
                {"key": "clean", "label": "clean traffic returned", "values": values(self.clean_bps)},
            ],
            "markers": [{"t": offset(at), "label": label} for at, label in self.markers],
        }


def _bucketed(points: Iterable[tuple[datetime.datetime, float]], start: datetime.datetime, bucket_s: int,
              count: int, how: str) -> list[float | None]:
    """Points into `count` buckets: the largest (`max`) or the mean (`mean`); a bucket with none stays None."""
    found: list[list[float]] = [[] for _ in range(count)]
    for at, value in points:
        index = math.floor((at - start).total_seconds() / bucket_s)
        if 0 <= index < count:
            found[index].append(value)
    if how == "max":
        return [max(items) if items else None for items in found]
    return [sum(items) / len(items) if items else None for items in found]


def _summed(per_key: Iterable[list[float | None]], count: int) -> list[float | None]:
    """Series of several routers or prefixes added up; a bucket none of them measured stays None."""
    total: list[float | None] = [None] * count
    for series in per_key:
        for index, value in enumerate(series):
            if value is not None:
                total[index] = (total[index] or 0.0) + value
    return total


def traffic_series(mitigation: Mitigation, *, now: datetime.datetime | None = None,
                   buckets: int = GRAPH_BUCKETS) -> TrafficSeries:
    """Attack traffic toward the target from the signals (before and after the mitigation), FlowSpec-dropped bit/s
    from the rules' counters (per rule and router, then summed), and the center's scrubbed and clean bit/s."""
    attack = mitigation.attack
    now = now or timezone.now()
    end = mitigation.ended_at or attack.ended_at or now
    start = min(attack.started_at, mitigation.created_at)
    span = max((end - start).total_seconds(), 1.0)
    bucket_s = max(MIN_BUCKET_S, math.ceil(span / buckets))
    count = max(1, math.ceil(span / bucket_s) + 1)
    times = [start + datetime.timedelta(seconds=i * bucket_s) for i in range(count)]

    signals = SignalRecord.objects.filter(attack_id=attack.pk, received_at__gte=start).exclude(phase="end")
    attack_bps = _bucketed(signals.values_list("received_at", "bps"), start, bucket_s, count, "max")

    action_ids = Action.objects.filter(mitigation=mitigation, kind=ActionKindChoices.FLOWSPEC).values_list(
        "pk", flat=True)
    dropped = [
        _bucketed(((r.at, r.dropped_bps) for r in counter_rates(samples)), start, bucket_s, count, "mean")
        for samples in counter_samples(action_ids).values()
    ]
    center_rows: dict[tuple[int, str], list[tuple[datetime.datetime, int, int]]] = defaultdict(list)
    for center_id, prefix, at, center_dropped, center_clean in CenterPrefixSample.objects.filter(
            mitigation=mitigation, at__gte=start).order_by("at", "id").values_list(
            "center_id", "prefix", "at", "dropped_bps", "clean_bps")[:SAMPLES_LIMIT]:
        center_rows[(center_id, str(prefix))].append((at, center_dropped, center_clean))
    scrubbed = [_bucketed(((at, s) for at, s, _ in rows), start, bucket_s, count, "mean")
                for rows in center_rows.values()]
    clean = [_bucketed(((at, c) for at, _, c in rows), start, bucket_s, count, "mean")
             for rows in center_rows.values()]
    markers = [(moment, label) for moment, label in ((mitigation.activated_at, "mitigation active"),
                                                     (mitigation.ended_at, "mitigation ended")) if moment]
    return TrafficSeries(start, bucket_s, times, attack_bps, _summed(dropped, count), _summed(scrubbed, count),
                         _summed(clean, count), mitigation.activated_at, mitigation.ended_at, markers)
