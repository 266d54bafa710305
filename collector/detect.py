"""Attack detection on merged per-second aggregates: thresholds, baselines, vectors, and the start/update/end cycle.

Two passes feed one state machine. The partial pass looks at the second still filling: counters only grow within
a second, so once they pass a per-second threshold the second is certainly over it, and the attack can start
without waiting for the second to close (this is what keeps detection latency well under a second). The complete
pass looks at each closed second: it updates running attacks, ends those that stayed below every threshold for the
prefix's hold time, and learns baselines from seconds without attacks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from collector.aggregate import AMPLIFICATION_CLASSES
from collector.prefixes import MonitoredPrefix
from collector.signals import AttackSignal, AttackVector, SignalPhase
from collector.store import Baseline

logger = logging.getLogger(__name__)

VECTOR_SHARE = 0.3
EXPLAINED_BY_HOSTS = 0.5
CARPET_TOP_HOST_SHARE = 0.25
BASELINE_SECONDS = 300.0
BASELINE_WARMUP_SAMPLES = 60
TOP_SOURCES = 5

SIMPLE_CLASS_VECTORS: dict[str, AttackVector] = {
    "syn": AttackVector.SYN_FLOOD,
    "ack": AttackVector.ACK_FLOOD,
    "icmp": AttackVector.ICMP_FLOOD,
    "gre": AttackVector.GRE_FLOOD,
    "frag": AttackVector.FRAGMENTS,
    "udp": AttackVector.UDP_FLOOD,
}


@dataclass
class Observation:
    """A target found over its thresholds in one second (or part of one)."""

    target: str
    prefix: MonitoredPrefix
    bps: int
    pps: int
    vectors: tuple[AttackVector, ...]
    top_sources: tuple[str, ...]
    details: dict[str, object]


@dataclass
class AttackState:
    """A running attack on a target, as the detector remembers it between seconds."""

    target: str
    prefix: MonitoredPrefix
    vectors: tuple[AttackVector, ...]
    started_second: int
    last_above_second: int
    last_update_second: int
    peak_bps: int = 0
    peak_pps: int = 0
    top_sources: tuple[str, ...] = ()
    extra: dict[str, object] = field(default_factory=dict)


def _split_field(name: str) -> list[str]:
    return name.split("|")


def vectors_from(classes: Mapping[str, tuple[int, int]], total: tuple[int, int], by: tuple[bool, bool]) -> tuple[
    AttackVector, ...
]:
    """Vectors whose class carries at least `VECTOR_SHARE` of the traffic, in the dimensions over threshold."""
    total_b, total_p = total
    use_bytes, use_packets = by if any(by) else (True, True)

    def share(name: str) -> float:
        b, p = classes.get(name, (0, 0))
        shares = []
        if use_bytes and total_b:
            shares.append(b / total_b)
        if use_packets and total_p:
            shares.append(p / total_p)
        return max(shares, default=0.0)

    vectors = [vector for name, (vector, _) in AMPLIFICATION_CLASSES.items() if share(name) >= VECTOR_SHARE]
    vectors += [vector for name, vector in SIMPLE_CLASS_VECTORS.items() if share(name) >= VECTOR_SHARE]
    if share("tcp") - share("syn") - share("ack") >= VECTOR_SHARE:
        vectors.append(AttackVector.TCP_FLOOD)
    return tuple(vectors) or (AttackVector.OTHER,)


@dataclass
class _PrefixView:
    """One prefix's fields of a second, parsed into totals, classes, hosts and sources."""

    bytes: int = 0
    packets: int = 0
    classes: dict[str, list[int]] = field(default_factory=dict)
    hosts: dict[str, list[int]] = field(default_factory=dict)
    host_classes: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)
    protocols: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, fields: Mapping[str, int]) -> _PrefixView:
        view = cls(bytes=fields.get("b", 0), packets=fields.get("p", 0))
        for name, value in fields.items():
            parts = _split_field(name)
            slot = 0 if parts[-1] == "b" else 1
            kind = parts[0]
            if kind == "c":
                view.classes.setdefault(parts[1], [0, 0])[slot] += value
            elif kind == "h":
                view.hosts.setdefault(parts[1], [0, 0])[slot] += value
            elif kind == "hc":
                view.host_classes.setdefault(parts[1], {}).setdefault(parts[2], [0, 0])[slot] += value
            elif kind == "src" and slot == 0:
                view.sources[parts[1]] = value
            elif kind == "proto" and slot == 0:
                view.protocols[parts[1]] = value
        return view


def _over(bps: float, pps: float, limit_bps: int | None, limit_pps: int | None) -> tuple[bool, bool]:
    return (limit_bps is not None and bps > limit_bps), (limit_pps is not None and pps > limit_pps)


class Detector:
    """Keeps attack state per target and emits `AttackSignal`s through `emit`."""

    def __init__(
        self,
        emit: Callable[[AttackSignal], None],
        *,
        detector_name: str = "sluice-flow",
        update_every_seconds: int = 10,
        baselines: Mapping[str, Baseline] | None = None,
    ) -> None:
        self.emit = emit
        self.detector_name = detector_name
        self.update_every_seconds = update_every_seconds
        self.prefixes: dict[str, MonitoredPrefix] = {}
        self.active: dict[str, AttackState] = {}
        self.baselines: dict[str, Baseline] = dict(baselines or {})

    def set_prefixes(self, prefixes: list[MonitoredPrefix]) -> None:
        """Replace the monitored prefixes; running attacks keep the thresholds they started with until they end."""
        self.prefixes = {p.cidr: p for p in prefixes}

    def analyse(self, prefix: MonitoredPrefix, fields: Mapping[str, int], elapsed: float, *, complete: bool) -> list[
        Observation
    ]:
        """Targets of `prefix` over threshold in counters covering `elapsed` seconds.

        Threshold tests use the counts themselves (a per-second threshold passed within part of a second is passed
        for the whole second); the rates reported are counts divided by the elapsed time.
        """
        total_b, total_p = fields.get("b", 0), fields.get("p", 0)
        over_prefix = _over(total_b * 8, total_p, prefix.prefix_bps, prefix.prefix_pps)
        if complete and not any(over_prefix):
            over_prefix = (self._over_baseline(prefix, total_b * 8), False)
        if not any(over_prefix) and not self.could_find(prefix, total_b, total_p):
            return []
        view = _PrefixView.parse(fields)
        scale = 1.0 / max(elapsed, 0.05)
        top_sources = tuple(ip for ip, _ in sorted(view.sources.items(), key=lambda kv: -kv[1])[:TOP_SOURCES])
        observations = []
        flagged_bytes = flagged_packets = 0
        for host, (b, p) in view.hosts.items():
            over = _over(b * 8, p, prefix.host_bps, prefix.host_pps)
            if not any(over):
                continue
            flagged_bytes += b
            flagged_packets += p
            classes = {name: (v[0], v[1]) for name, v in view.host_classes.get(host, {}).items()}
            observations.append(
                self._observation(host, prefix, b, p, scale, vectors_from(classes, (b, p), over), top_sources,
                                  {"scope": "host"})
            )
        explained = flagged_bytes >= EXPLAINED_BY_HOSTS * view.bytes or flagged_packets >= EXPLAINED_BY_HOSTS * view.packets
        if any(over_prefix) and not (flagged_packets and explained):
            classes = {name: (v[0], v[1]) for name, v in view.classes.items()}
            vectors = vectors_from(classes, (view.bytes, view.packets), over_prefix)
            busy_hosts = sum(1 for b, _ in view.hosts.values() if b)
            top_host = max((max(b / max(view.bytes, 1), p / max(view.packets, 1)) for b, p in view.hosts.values()),
                           default=1.0)
            if not flagged_bytes and busy_hosts >= prefix.carpet_min_hosts and top_host < CARPET_TOP_HOST_SHARE:
                vectors = (AttackVector.CARPET_BOMBING, *(v for v in vectors if v is not AttackVector.OTHER))
            details = {"scope": "prefix", "hosts": busy_hosts, "protocols": view.protocols}
            observations.append(
                self._observation(prefix.cidr, prefix, view.bytes, view.packets, scale, vectors, top_sources, details)
            )
        return observations

    def could_find(self, prefix: MonitoredPrefix, total_b: int, total_p: int) -> bool:
        """Whether a prefix with these totals may hold a target over its thresholds (baselines aside).

        No host can carry more than its whole prefix: below every threshold in total, reading and parsing the
        (thousands of) per-host fields cannot find anything. This keeps the partial pass, ten times a second,
        nearly free while nothing is under attack.
        """
        return any(_over(total_b * 8, total_p, prefix.prefix_bps, prefix.prefix_pps)) or any(
            _over(total_b * 8, total_p, prefix.host_bps, prefix.host_pps)
        )

    def partial_candidates(self, totals: Mapping[str, tuple[int, int]]) -> list[str]:
        """The prefixes whose fields a partial pass must read, from their (bytes, packets) so far."""
        return [cidr for cidr, (b, p) in totals.items() if cidr in self.prefixes
                and self.could_find(self.prefixes[cidr], b, p)]

    def _observation(
        self, target: str, prefix: MonitoredPrefix, b: int, p: int, scale: float, vectors: tuple[AttackVector, ...],
        top_sources: tuple[str, ...], details: dict[str, object],
    ) -> Observation:
        baseline = self.baselines.get(prefix.cidr)
        details = {
            **details,
            "tenant": prefix.tenant,
            "prefix": prefix.cidr,
            "baseline_bps": round(baseline[0]) if baseline else None,
            "baseline_pps": round(baseline[1]) if baseline else None,
        }
        return Observation(target, prefix, int(b * 8 * scale), int(p * scale), vectors, top_sources, details)

    def _over_baseline(self, prefix: MonitoredPrefix, bps: float) -> bool:
        baseline = self.baselines.get(prefix.cidr)
        if prefix.baseline_factor is None or baseline is None or baseline[2] < BASELINE_WARMUP_SAMPLES:
            return False
        return bps > max(prefix.baseline_factor * baseline[0], prefix.baseline_min_bps)

    def partial(self, second: int, merged: Mapping[str, Mapping[str, int]], elapsed: float) -> None:
        """Start attacks already certain within the second still filling; never updates or ends anything."""
        for cidr, fields in merged.items():
            prefix = self.prefixes.get(cidr)
            if prefix is None:
                continue
            for obs in self.analyse(prefix, fields, min(elapsed, 1.0), complete=False):
                if obs.target not in self.active:
                    self._start(obs, second, partial=True)

    def complete(self, second: int, merged: Mapping[str, Mapping[str, int]]) -> dict[str, Baseline]:
        """Evaluate a closed second: start, update and end attacks, learn baselines; returns updated baselines."""
        above: dict[str, Observation] = {}
        for cidr, fields in merged.items():
            prefix = self.prefixes.get(cidr)
            if prefix is not None:
                for obs in self.analyse(prefix, fields, 1.0, complete=True):
                    above[obs.target] = obs
        for target, obs in above.items():
            state = self.active.get(target)
            if state is None:
                self._start(obs, second, partial=False)
            else:
                self._continue(state, obs, second)
        for target, state in list(self.active.items()):
            if target not in above and second - state.last_above_second >= state.prefix.hold_seconds:
                self._end(state, merged, second)
        return self._learn(second, merged)

    def _start(self, obs: Observation, second: int, *, partial: bool) -> None:
        self.active[obs.target] = AttackState(
            obs.target, obs.prefix, obs.vectors, second, second, second, obs.bps, obs.pps, obs.top_sources
        )
        self._emit(obs.target, obs.vectors, obs.bps, obs.pps, SignalPhase.START, obs.top_sources,
                   {**obs.details, "second": second, "partial_second": partial})

    def _continue(self, state: AttackState, obs: Observation, second: int) -> None:
        state.last_above_second = second
        state.peak_bps = max(state.peak_bps, obs.bps)
        state.peak_pps = max(state.peak_pps, obs.pps)
        state.top_sources = obs.top_sources or state.top_sources
        changed = set(obs.vectors) != set(state.vectors)
        if changed or second - state.last_update_second >= self.update_every_seconds:
            state.vectors = tuple(dict.fromkeys((*state.vectors, *obs.vectors))) if changed else state.vectors
            state.last_update_second = second
            self._emit(state.target, state.vectors, obs.bps, obs.pps, SignalPhase.UPDATE, obs.top_sources,
                       {**obs.details, "second": second})

    def _end(self, state: AttackState, merged: Mapping[str, Mapping[str, int]], second: int) -> None:
        del self.active[state.target]
        fields = merged.get(state.prefix.cidr, {})
        if state.target == state.prefix.cidr:
            b, p = fields.get("b", 0), fields.get("p", 0)
        else:
            b, p = fields.get(f"h|{state.target}|b", 0), fields.get(f"h|{state.target}|p", 0)
        details = {
            "tenant": state.prefix.tenant,
            "prefix": state.prefix.cidr,
            "second": second,
            "started_second": state.started_second,
            "last_above_second": state.last_above_second,
            "peak_bps": state.peak_bps,
            "peak_pps": state.peak_pps,
        }
        self._emit(state.target, state.vectors, b * 8, p, SignalPhase.END, state.top_sources, details)

    def _emit(
        self, target: str, vectors: tuple[AttackVector, ...], bps: int, pps: int, phase: SignalPhase,
        top_sources: tuple[str, ...], details: dict[str, object],
    ) -> None:
        signal = AttackSignal(target=target, vectors=vectors, bps=max(0, int(bps)), pps=max(0, int(pps)), phase=phase,
                              detector=self.detector_name, top_sources=top_sources, details=details)
        try:
            self.emit(signal)
        except Exception:
            logger.exception("emitting %s %s failed", signal.phase, signal.target)

    def _learn(self, second: int, merged: Mapping[str, Mapping[str, int]]) -> dict[str, Baseline]:
        """EWMA of each prefix's rates over seconds in which no attack touches it (attacks must not teach)."""
        attacked = {state.prefix.cidr for state in self.active.values()}
        alpha = 1.0 - math.exp(-1.0 / BASELINE_SECONDS)
        updated = {}
        for cidr in self.prefixes:
            if cidr in attacked:
                continue
            fields = merged.get(cidr, {})
            bps, pps = fields.get("b", 0) * 8.0, float(fields.get("p", 0))
            old = self.baselines.get(cidr)
            if old is None:
                new = (bps, pps, 1)
            else:
                # A plain mean while warming up, so the first seconds do not weigh for minutes.
                weight = max(alpha, 1.0 / (old[2] + 1))
                new = (old[0] + weight * (bps - old[0]), old[1] + weight * (pps - old[1]), old[2] + 1)
            self.baselines[cidr] = updated[cidr] = new
        return updated
