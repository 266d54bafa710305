"""What is normal for a prefix, learned from the seconds in which no attack touches it.

Everything learned is an exponentially weighted mean kept as a `Baseline` (two figures and a sample count) under a
key of its own, so the store saves and restores it without knowing what it means:

- ``<cidr>``: bytes and packets per second over all hours (time constant `OVERALL_SECONDS`);
- ``<cidr>|how<h>``: the same for hour of week `h` (0 = Monday 00:00-01:00 UTC), learned only in that hour,
  and ``<cidr>|dev<h>`` their mean squared deviation: a prefix whose traffic doubles every evening has a high
  normal in the evening and a wide spread, so its evening rise is not an attack;
- ``<cidr>|top``: the busiest host's bps and pps (what one host of this prefix normally carries);
- ``<cidr>|src``: the heaviest source's bps and pps (how hard one sender normally pushes);
- ``<cidr>|mix|<class>``: each traffic class's share of bytes and packets (the protocol and port mix).

An hour of week is trusted once it holds `warmup` samples; until then nothing alarms on the prefix's rates. (An
all-hours stand-in alarmed on a cold hour's ordinary peak, and an alarmed second teaches nothing, so that hour
never learned.) The busiest host, heaviest source and mix are learned over all hours and trusted after `warmup`
seconds.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from collector.aggregate import CLASSES
from collector.store import Baseline

HOURS_PER_WEEK = 7 * 24
# 1970-01-01 was a Thursday: hour 0 of the epoch is hour 72 of its week.
EPOCH_HOUR_OF_WEEK = 72
OVERALL_SECONDS = 300.0
SLOT_SECONDS = 3 * 3600.0  # about three weeks' worth of one hour of week
SHAPE_SECONDS = 600.0
SHAPE_EVERY_SECONDS = 5  # the mix, busiest host and heaviest source are learned every fifth second per prefix
DEVIATIONS = 6.0


def hour_of_week(second: int) -> int:
    """Hour of the week (Monday 00:00 UTC is 0) of a Unix second."""
    return (second // 3600 + EPOCH_HOUR_OF_WEEK) % HOURS_PER_WEEK


def _mean(old: Baseline | None, b: float, p: float, constant: float) -> Baseline:
    """One more sample into an exponentially weighted mean; a plain mean while young, so early seconds do not
    weigh for minutes."""
    if old is None:
        return (b, p, 1)
    weight = max(1.0 - math.exp(-1.0 / constant), 1.0 / (old[2] + 1))
    return (old[0] + weight * (b - old[0]), old[1] + weight * (p - old[1]), old[2] + 1)


@dataclass(frozen=True)
class Shape:
    """What one second of a prefix's traffic looks like, beyond its totals."""

    top_host: tuple[float, float]
    top_source: tuple[float, float]
    mix: Mapping[str, tuple[float, float]]


@dataclass(frozen=True)
class Normal:
    """A prefix's trusted normal for one hour of week: mean rates and how far they usually stray."""

    bps: float
    pps: float
    spread_bps: float
    spread_pps: float

    def limit(self, factor: float, floor_bps: int, floor_pps: int) -> tuple[float, float]:
        """Rates above which traffic is not ordinary: `factor` times the mean, the usual spread well exceeded,
        and never below the floors."""
        return (
            max(factor * self.bps, self.bps + DEVIATIONS * self.spread_bps, floor_bps),
            max(factor * self.pps, self.pps + DEVIATIONS * self.spread_pps, floor_pps),
        )


class LearnedTraffic:
    """The learned baselines of every prefix, kept in one mapping the store persists as it is."""

    def __init__(self, baselines: Mapping[str, Baseline] | None = None) -> None:
        self.values: dict[str, Baseline] = dict(baselines or {})

    def update(self, baselines: Mapping[str, Baseline]) -> None:
        """Take baselines saved by another collector (a new detection leader)."""
        self.values.update(baselines)

    def __getitem__(self, key: str) -> Baseline:
        return self.values[key]

    def get(self, key: str) -> Baseline | None:
        return self.values.get(key)

    def normal(self, cidr: str, second: int, warmup: int) -> Normal | None:
        """The prefix's normal for the hour of week of `second`, or None while it is warming up."""
        how = hour_of_week(second)
        slot = self.values.get(f"{cidr}|how{how}")
        if slot is None or slot[2] < warmup:
            return None
        spread = self.values.get(f"{cidr}|dev{how}") or (0.0, 0.0, 0)
        return Normal(slot[0], slot[1], math.sqrt(spread[0]), math.sqrt(spread[1]))

    def shape_pair(self, cidr: str, name: str, warmup: int) -> tuple[float, float] | None:
        """A learned (bps, pps) pair of the shape ("top" or "src"), once warm."""
        value = self.values.get(f"{cidr}|{name}")
        if value is None or value[2] * SHAPE_EVERY_SECONDS < warmup:
            return None
        return value[0], value[1]

    def mix_distance(self, cidr: str, mix: Mapping[str, tuple[float, float]], warmup: int) -> float | None:
        """How far a mix of class shares is from the prefix's learned one: half the summed absolute difference of
        byte and packet shares, the larger of the two (0: the same mix; about 1: nothing in common). None while
        the learned mix is not warm."""
        distance_b = distance_p = 0.0
        for name in CLASSES:
            learned = self.values.get(f"{cidr}|mix|{name}")
            if learned is None or learned[2] * SHAPE_EVERY_SECONDS < warmup:
                return None
            now = mix.get(name, (0.0, 0.0))
            distance_b += abs(now[0] - learned[0])
            distance_p += abs(now[1] - learned[1])
        return max(distance_b, distance_p) / 2

    def learn(self, cidr: str, second: int, bps: float, pps: float, shape: Shape | None) -> dict[str, Baseline]:
        """Add one quiet second of a prefix; returns the entries it changed."""
        how = hour_of_week(second)
        changed: dict[str, Baseline] = {}
        changed[cidr] = _mean(self.values.get(cidr), bps, pps, OVERALL_SECONDS)
        slot_key, dev_key = f"{cidr}|how{how}", f"{cidr}|dev{how}"
        slot = self.values.get(slot_key)
        if slot is not None:
            changed[dev_key] = _mean(self.values.get(dev_key), (bps - slot[0]) ** 2, (pps - slot[1]) ** 2,
                                     SLOT_SECONDS)
        changed[slot_key] = _mean(slot, bps, pps, SLOT_SECONDS)
        if shape is not None:
            changed[f"{cidr}|top"] = _mean(self.values.get(f"{cidr}|top"), *shape.top_host, SHAPE_SECONDS)
            changed[f"{cidr}|src"] = _mean(self.values.get(f"{cidr}|src"), *shape.top_source, SHAPE_SECONDS)
            for name in CLASSES:
                key = f"{cidr}|mix|{name}"
                changed[key] = _mean(self.values.get(key), *shape.mix.get(name, (0.0, 0.0)), SHAPE_SECONDS)
        self.values.update(changed)
        return changed


def learns_shape(cidr: str, second: int) -> bool:
    """Whether this second teaches the prefix's shape: every `SHAPE_EVERY_SECONDS`, staggered across prefixes so
    the parsing this costs is spread evenly."""
    return (second + zlib.crc32(cidr.encode())) % SHAPE_EVERY_SECONDS == 0


def class_mix(classes: Mapping[str, Sequence[int]], total_b: int, total_p: int) -> dict[str, tuple[float, float]]:
    """Each class's share of bytes and packets."""
    return {name: (v[0] / total_b if total_b else 0.0, v[1] / total_p if total_p else 0.0)
            for name, v in classes.items()}
