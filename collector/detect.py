"""Attack detection on merged per-second aggregates: thresholds, baselines, vectors, and the start/update/end cycle.

Two passes feed one state machine. The partial pass looks at the second still filling: counters only grow within
a second, so once they pass a per-second threshold the second is certainly over it, and the attack can start
without waiting for the second to close (this is what keeps detection latency well under a second). The complete
pass looks at each closed second: it also judges traffic against the learned baselines (`collector.baselines`),
updates running attacks, ends those that stayed below every threshold for the prefix's hold time, and learns
baselines from seconds without attacks.

Hosts are judged first; the prefix-wide (carpet-bombing) thresholds apply to what the attacked hosts leave over, so
an attack on one host never makes the rest of its prefix an attack too. Traffic over a prefix-wide threshold that
looks like the prefix's normal traffic (its class mix, and no sender pushing harder than senders usually do) is a
flash crowd, not carpet bombing. When a few sources carry the attack (reflection from a handful of amplifiers),
the signal names all of them as address blocks ("192.0.2.7/32"), which tells planning it may match them in its
FlowSpec rules; otherwise it names the heaviest sources as plain addresses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from collector.aggregate import AMPLIFICATION_CLASSES
from collector.baselines import LearnedTraffic, Normal, Shape, class_mix, learns_shape
from collector.prefixes import MonitoredPrefix
from collector.signals import AttackSignal, AttackVector, SignalPhase
from collector.sources import aggregate_sources, as_network
from collector.store import Baseline

logger = logging.getLogger(__name__)

VECTOR_SHARE = 0.3
EXPLAINED_BY_HOSTS = 0.5
CARPET_TOP_HOST_SHARE = 0.25
TOP_SOURCES = 5
# A host flagged by baseline must also stand out from the other hosts of its prefix right now (a flash crowd
# lifts every host together).
HOST_STANDOUT = 10.0
# A flash crowd: the class mix within this distance of the learned one, no source above this multiple of the
# heaviest source the prefix normally has, and at most this multiple of the prefix-wide threshold (beyond that
# the links are at risk whatever the traffic looks like).
FLASH_CROWD_MIX_DISTANCE = 0.2
FLASH_CROWD_SOURCE_FACTOR = 4.0
FLASH_CROWD_MAX_FACTOR = 10.0
# Few sources: at most this many, each at least MIN_SOURCE_SHARE of the target's traffic, together carrying
# FEW_SOURCES_SHARE of it (see `_sources`).
FEW_SOURCES_MAX = 16
FEW_SOURCES_SHARE = 0.8
MIN_SOURCE_SHARE = 0.02
SIMILAR_SOURCE = 0.5
# An attack started on part of a second gets an update from the whole second when the two differ by more than this.
WHOLE_SECOND_CORRECTION = 0.1
# A pulse wave's pauses stretch its hold to this multiple of the longest pause seen, up to MAX_PULSE_HOLD_SECONDS.
PULSE_HOLD_FACTOR = 2
MAX_PULSE_HOLD_SECONDS = 600

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
    longest_pause: int = 0

    @property
    def hold_seconds(self) -> int:
        """Seconds below every threshold that end the attack: the prefix's hold, longer for a pulse wave."""
        return max(self.prefix.hold_seconds, min(PULSE_HOLD_FACTOR * self.longest_pause, MAX_PULSE_HOLD_SECONDS))


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
    sources: dict[str, list[int]] = field(default_factory=dict)
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
            elif kind == "src":
                view.sources.setdefault(parts[1], [0, 0])[slot] += value
            elif kind == "proto" and slot == 0:
                view.protocols[parts[1]] = value
        return view


def _over(bps: float, pps: float, limit_bps: float | None, limit_pps: float | None) -> tuple[bool, bool]:
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
        self.learned = LearnedTraffic(baselines)

    @property
    def baselines(self) -> dict[str, Baseline]:
        """Everything learned, as the store saves it."""
        return self.learned.values

    def set_prefixes(self, prefixes: list[MonitoredPrefix]) -> None:
        """Replace the monitored prefixes; running attacks keep the thresholds they started with until they end."""
        self.prefixes = {p.cidr: p for p in prefixes}

    def analyse(self, prefix: MonitoredPrefix, fields: Mapping[str, int], *, complete: bool,
                second: int = 0) -> list[Observation]:  # fmt: skip
        """Targets of `prefix` over threshold in the counters of `second` (whole, or the part of it counted so far).

        Threshold tests and the rates reported use the counts themselves: a per-second threshold passed within
        part of a second is passed for the whole second, and what part of a second counted is a lower bound of
        the attack's rate. Scaling it up by the time elapsed would only be right for exporters that stream: one
        that exports each second's records at once has sent all of them 0.3 s in, and the figure would be more
        than three times the attack (enough for planning to find no center with room). The whole second corrects
        the figure (`_continue`). Baselines are judged on complete seconds only.
        """
        total_b, total_p = fields.get("b", 0), fields.get("p", 0)
        normal = self._normal(prefix, second) if complete else None
        host_limit = self._host_limit(prefix) if complete else None
        if not self.could_find(prefix, total_b, total_p) and not any(
            _over(total_b * 8, total_p, *(limit or (None, None)))
            for limit in (host_limit, normal.limit(*self._floors(prefix)) if normal else None)
        ):
            return []
        view = _PrefixView.parse(fields)
        observations = []
        flagged_b = flagged_p = 0
        flagged_classes: dict[str, list[int]] = {}
        for host, (b, p) in view.hosts.items():
            over = _over(b * 8, p, prefix.host_bps, prefix.host_pps)
            how = "threshold"
            if not any(over) and host_limit is not None and _stands_out(view, b, p):
                over, how = _over(b * 8, p, *host_limit), "baseline"
            if not any(over) or (not complete and not _stands_out(view, b, p)):
                # The partial pass starts only hosts that stand out from their prefix: hosts crossing their
                # thresholds together may be carpet bombing, which the whole second tells.
                continue
            flagged_b, flagged_p = flagged_b + b, flagged_p + p
            classes = {name: (v[0], v[1]) for name, v in view.host_classes.get(host, {}).items()}
            for name, (cb, cp) in classes.items():
                total = flagged_classes.setdefault(name, [0, 0])
                total[0], total[1] = total[0] + cb, total[1] + cp
            sources, source_details = _sources(view, p, host)
            observations.append(self._observation(
                host, prefix, b, p, vectors_from(classes, (b, p), over), sources,
                {"scope": "host", "detected_by": how, **source_details},
            ))
        if _spread_over_hosts(view, observations, prefix):
            # Many hosts over their thresholds at once, none carrying much of it: one carpet-bombing attack on the
            # prefix, not one attack (and one mitigation) per address.
            whole = self._prefix_wide(prefix, view, normal, (0, 0), {}, complete=complete, forced=True)
            return [whole] if whole is not None else []
        observation = self._prefix_wide(prefix, view, normal, (flagged_b, flagged_p), flagged_classes,
                                        complete=complete)
        if observation is not None:
            observations.append(observation)
        return observations

    def _prefix_wide(
        self, prefix: MonitoredPrefix, view: _PrefixView, normal: Normal | None,
        flagged: tuple[int, int], flagged_classes: Mapping[str, list[int]], *, complete: bool, forced: bool = False,
    ) -> Observation | None:
        """The prefix as a target, judged on the traffic its attacked hosts leave over; None when that is within
        bounds or is a flash crowd.

        A second's first tenths are too few records to tell a flash crowd by its mix and senders: where one may be
        told (learned shape, traffic under the flash-crowd ceiling), the partial pass leaves the prefix to the
        complete one, a second later.
        """
        rest_b, rest_p = view.bytes - flagged[0], view.packets - flagged[1]
        if rest_p <= 0:
            return None
        over = (True, True) if forced else _over(rest_b * 8, rest_p, prefix.prefix_bps, prefix.prefix_pps)
        how = "threshold"
        if not any(over) and normal is not None:
            over, how = _over(rest_b * 8, rest_p, *normal.limit(*self._floors(prefix))), "baseline"
        if not any(over):
            return None
        classes = {}
        for name, (b, p) in view.classes.items():
            fb, fp = flagged_classes.get(name, (0, 0))
            classes[name] = (max(0, b - fb), max(0, p - fp))
        if not forced and not complete and self._may_be_flash_crowd(prefix, (rest_b, rest_p)):
            return None
        if not forced and self._flash_crowd(prefix, view, classes, (rest_b, rest_p)):
            return None
        vectors = vectors_from(classes, (rest_b, rest_p), over)
        busy_hosts = sum(1 for b, _ in view.hosts.values() if b)
        top_host = max((max(b / max(view.bytes, 1), p / max(view.packets, 1)) for b, p in view.hosts.values()),
                       default=1.0)
        if not flagged[0] and busy_hosts >= prefix.carpet_min_hosts and top_host < CARPET_TOP_HOST_SHARE:
            vectors = (AttackVector.CARPET_BOMBING, *(v for v in vectors if v is not AttackVector.OTHER))
        sources, source_details = _sources(view, rest_p)
        details = {"scope": "prefix", "hosts": busy_hosts, "protocols": view.protocols, "detected_by": how,
                   **source_details}
        return self._observation(prefix.cidr, prefix, rest_b, rest_p, vectors, sources, details)

    def _may_be_flash_crowd(self, prefix: MonitoredPrefix, rest: tuple[int, int]) -> bool:
        """Whether this much traffic could still be judged a flash crowd (baselines on, its shape learned, under
        the ceiling beyond which the links are at risk whatever the traffic looks like)."""
        if prefix.baseline_factor is None:
            return False
        for limit, value in ((prefix.prefix_bps, rest[0] * 8), (prefix.prefix_pps, rest[1])):
            if limit is not None and value > FLASH_CROWD_MAX_FACTOR * limit:
                return False
        return self.learned.shape_pair(prefix.cidr, "src", prefix.baseline_warmup) is not None

    def _flash_crowd(self, prefix: MonitoredPrefix, view: _PrefixView, classes: Mapping[str, tuple[int, int]],
                     rest: tuple[int, int]) -> bool:  # fmt: skip
        """Whether traffic over a prefix-wide threshold looks like the prefix's normal traffic: the same class mix
        and no sender pushing much harder than the heaviest sender it normally has (and not so much of it that the
        links are at risk)."""
        if not self._may_be_flash_crowd(prefix, rest):
            return False
        distance = self.learned.mix_distance(prefix.cidr, class_mix(classes, *rest), prefix.baseline_warmup)
        heaviest = self.learned.shape_pair(prefix.cidr, "src", prefix.baseline_warmup)
        if distance is None or heaviest is None or distance > FLASH_CROWD_MIX_DISTANCE:
            return False
        top_source_bps = max((b for b, _ in view.sources.values()), default=0) * 8
        return top_source_bps <= FLASH_CROWD_SOURCE_FACTOR * heaviest[0]

    def _normal(self, prefix: MonitoredPrefix, second: int) -> Normal | None:
        if prefix.baseline_factor is None:
            return None
        return self.learned.normal(prefix.cidr, second, prefix.baseline_warmup)

    def _floors(self, prefix: MonitoredPrefix) -> tuple[float, int, int]:
        return prefix.baseline_factor or 1.0, prefix.baseline_min_bps, prefix.baseline_min_pps

    def _host_limit(self, prefix: MonitoredPrefix) -> tuple[int, int] | None:
        """Rates above which one host is not ordinary for this prefix: well beyond its usual busiest host."""
        if prefix.baseline_factor is None:
            return None
        top = self.learned.shape_pair(prefix.cidr, "top", prefix.baseline_warmup)
        if top is None:
            return None
        factor = prefix.baseline_factor
        return (int(max(factor * top[0], prefix.baseline_min_bps)), int(max(factor * top[1], prefix.baseline_min_pps)))

    def could_find(self, prefix: MonitoredPrefix, total_b: int, total_p: int) -> bool:
        """Whether a prefix with these totals may hold a target over its fixed thresholds.

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
        self, target: str, prefix: MonitoredPrefix, b: int, p: int, vectors: tuple[AttackVector, ...],
        top_sources: tuple[str, ...], details: dict[str, object],
    ) -> Observation:
        baseline = self.learned.get(prefix.cidr)
        details = {
            **details,
            "tenant": prefix.tenant,
            "prefix": prefix.cidr,
            "baseline_bps": round(baseline[0]) if baseline else None,
            "baseline_pps": round(baseline[1]) if baseline else None,
        }
        return Observation(target, prefix, b * 8, p, vectors, top_sources, details)

    def partial(self, second: int, merged: Mapping[str, Mapping[str, int]]) -> None:
        """Start attacks already certain within the second still filling; never updates or ends anything."""
        for cidr, fields in merged.items():
            prefix = self.prefixes.get(cidr)
            if prefix is None:
                continue
            for obs in self.analyse(prefix, fields, complete=False, second=second):
                if obs.target not in self.active:
                    self._start(obs, second, partial=True)

    def complete(self, second: int, merged: Mapping[str, Mapping[str, int]]) -> dict[str, Baseline]:
        """Evaluate a closed second: start, update and end attacks, learn baselines; returns updated baselines."""
        above: dict[str, Observation] = {}
        for cidr, fields in merged.items():
            prefix = self.prefixes.get(cidr)
            if prefix is not None:
                for obs in self.analyse(prefix, fields, complete=True, second=second):
                    above[obs.target] = obs
        for target, obs in above.items():
            state = self.active.get(target)
            if state is None:
                self._start(obs, second, partial=False)
            else:
                self._continue(state, obs, second)
        for target, state in list(self.active.items()):
            if target not in above and second - state.last_above_second >= state.hold_seconds:
                self._end(state, merged, second)
        return self._learn(second, merged)

    def _start(self, obs: Observation, second: int, *, partial: bool) -> None:
        self.active[obs.target] = AttackState(
            obs.target, obs.prefix, obs.vectors, second, second, second, obs.bps, obs.pps, obs.top_sources
        )
        self._emit(obs.target, obs.vectors, obs.bps, obs.pps, SignalPhase.START, obs.top_sources,
                   {**obs.details, "second": second, "partial_second": partial})

    def _continue(self, state: AttackState, obs: Observation, second: int) -> None:
        # An attack started within a second still filling reported what that part of the second counted (see
        # `analyse`). The whole second corrects it, when it is off by more than the share that makes planning
        # look again.
        corrected = (second == state.started_second
                     and abs(obs.bps - state.peak_bps) > WHOLE_SECOND_CORRECTION * max(state.peak_bps, 1))
        if corrected:
            state.peak_bps, state.peak_pps = obs.bps, obs.pps
        state.longest_pause = max(state.longest_pause, second - state.last_above_second - 1)
        state.last_above_second = second
        state.peak_bps = max(state.peak_bps, obs.bps)
        state.peak_pps = max(state.peak_pps, obs.pps)
        state.top_sources = obs.top_sources or state.top_sources
        changed = set(obs.vectors) != set(state.vectors)
        if changed or corrected or second - state.last_update_second >= self.update_every_seconds:
            state.vectors = tuple(dict.fromkeys((*state.vectors, *obs.vectors))) if changed else state.vectors
            state.last_update_second = second
            self._emit(state.target, state.vectors, obs.bps, obs.pps, SignalPhase.UPDATE, obs.top_sources,
                       {**obs.details, "second": second, "longest_pause": state.longest_pause})

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
            "longest_pause": state.longest_pause,
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
        """Learn each prefix's normal from seconds in which no attack touches it (attacks must not teach)."""
        attacked = {state.prefix.cidr for state in self.active.values()}
        updated: dict[str, Baseline] = {}
        for cidr in self.prefixes:
            if cidr in attacked:
                continue
            fields = merged.get(cidr, {})
            total_b, total_p = fields.get("b", 0), fields.get("p", 0)
            shape = _shape(fields) if total_p and learns_shape(cidr, second) else None
            updated.update(self.learned.learn(cidr, second, total_b * 8.0, float(total_p), shape))
        return updated


def _spread_over_hosts(view: _PrefixView, hosts: Sequence[Observation], prefix: MonitoredPrefix) -> bool:
    """Whether the hosts found over their thresholds are carpet bombing: at least `carpet_min_hosts` of them, none
    with a large share of the prefix's traffic."""
    if len(hosts) < prefix.carpet_min_hosts:
        return False
    return all(view.hosts[o.target.split("/")[0]][0] < CARPET_TOP_HOST_SHARE * max(view.bytes, 1) for o in hosts)


def _stands_out(view: _PrefixView, b: int, p: int) -> bool:
    """Whether a host carries far more than the other hosts of its prefix do on average right now."""
    others = max(sum(1 for hb, _ in view.hosts.values() if hb) - 1, 1)
    return b >= HOST_STANDOUT * (view.bytes - b) / others or p >= HOST_STANDOUT * (view.packets - p) / others


def _sources(view: _PrefixView, target_packets: int, host: str | None = None) -> tuple[tuple[str, ...], dict[str, object]]:
    """The sources to name for a target that received `target_packets`: every one of them as blocks when a few
    carry it, else the heaviest as addresses.

    Few: the heaviest sources (by packets) reach FEW_SOURCES_SHARE of the target's packets within FEW_SOURCES_MAX of
    them; the sources about as heavy as the last one needed (at least half of it) are theirs too, so no amplifier
    of an even handful is left out. Sources are counted per prefix, not per host: packets, not bytes, keep the
    ordinary senders to the prefix's other hosts (few, large packets each) from passing for the attack's. So they
    are not named as a host's when another host of the prefix receives a comparable flow (a fifth of the host's
    packets or more): with two attacks on one prefix, the heavier one's amplifiers would otherwise be named for
    both, and a rule matching them on the other target stops nothing (found by bench/closed_loop.py: the closed
    loop judged that rule ineffective). Ordinary traffic is spread over many hosts, each far below that.
    """
    rivals = (p for name, (_, p) in view.hosts.items() if name != host) if host is not None else iter(())
    if max(rivals, default=0) >= (1 - FEW_SOURCES_SHARE) * target_packets:
        by_bytes = sorted(view.sources.items(), key=lambda kv: -kv[1][0])
        return tuple(ip for ip, _ in by_bytes[:TOP_SOURCES]), {"sources": "shared with other targets"}
    ranked = sorted(view.sources.items(), key=lambda kv: (-kv[1][1], -kv[1][0]))
    heavy: list[tuple[str, int]] = []
    carried = 0
    for ip, (_, p) in ranked:
        if carried >= FEW_SOURCES_SHARE * target_packets and p < SIMILAR_SOURCE * heavy[-1][1]:
            break
        if len(heavy) == FEW_SOURCES_MAX or p < MIN_SOURCE_SHARE * target_packets:
            break
        heavy.append((ip, p))
        carried += p
    if heavy and carried >= FEW_SOURCES_SHARE * target_packets:
        blocks = aggregate_sources([as_network(ip) for ip, _ in heavy], FEW_SOURCES_MAX)
        if blocks is not None:
            share = min(1.0, carried / max(target_packets, 1))
            return tuple(str(block) for block in blocks), {"sources": "few", "source_share": round(share, 3)}
    by_bytes = sorted(view.sources.items(), key=lambda kv: -kv[1][0])
    return tuple(ip for ip, _ in by_bytes[:TOP_SOURCES]), {}


def _shape(fields: Mapping[str, int]) -> Shape:
    """What a quiet second of a prefix looked like: busiest host, heaviest source, class mix."""
    view = _PrefixView.parse(fields)
    top_host = max(view.hosts.values(), key=lambda v: v[0], default=[0, 0])
    top_source = max((b for b, _ in view.sources.values()), default=0)
    mix = class_mix({name: (v[0], v[1]) for name, v in view.classes.items()}, view.bytes, view.packets)
    return Shape((top_host[0] * 8.0, float(top_host[1])), (top_source * 8.0, 0.0), mix)
