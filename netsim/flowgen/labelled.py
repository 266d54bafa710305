"""Labelled detection scenarios and how to judge a detector on them, shared by the tests and the benchmark.

Each scenario is one stream to one /24 with its truth: nothing (background at several levels, a flash crowd), or an
attack with its vector and target (every vector at several multiples of the host threshold, carpet bombing, a pulse
wave, a slow ramp). Rates are set in packets per second relative to the host threshold `threshold_pps`, so a
detector configured with that threshold is judged at 2x, 5x and 50x of it.

`replay_sluice` runs a stream through Sluice's collector (decode, aggregate, store, detect) on a clock that follows
the stream, after learning the prefix's baselines from the same background (what production has learned by the time
an attack comes). `judge` scores any detector's alarms against the truth.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache

from collector import FlowCollector, MemoryStore, MonitoredPrefix
from collector.signals import AMPLIFICATION_SOURCE_PORTS, AttackSignal, AttackVector, SignalPhase
from collector.store import Baseline
from netsim.flowgen.scenarios import SCENARIOS, Scenario
from netsim.flowgen.stream import generate

HOST_VECTORS = tuple(v for name, v in SCENARIOS.items() if v is not None and v is not AttackVector.CARPET_BOMBING)
MULTIPLES = (2, 5, 50)
BACKGROUND_LEVELS = (0.5, 2.0, 8.0)  # background of the whole /24, in host thresholds
ATTACK_BACKGROUND = 2.0  # the background under every attack, in host thresholds
AMPLIFIERS = 6  # reflection comes from a handful of amplifiers; other vectors from thousands of spoofed sources
LEAD_SECONDS = 3.0
ATTACK_SECONDS = 8.0
TAIL_SECONDS = 2.0
TICK = 0.05
START = 1_000_000.0  # the replay clock's start: a Monday afternoon, UTC


@dataclass(frozen=True)
class Labelled:
    """A stream and its truth: `vector` and `target` of the attack it holds, or None for none."""

    name: str
    kind: str
    scenario: Scenario
    rate: int
    duration: float
    sampling: int
    peak_pps: float = 0.0

    @property
    def vector(self) -> AttackVector | None:
        return self.scenario.vector

    @property
    def prefix(self) -> str:
        return str(self.scenario.network)

    @property
    def target(self) -> str | None:
        """The attacked address or prefix, in the form signals carry ("192.0.2.7/32")."""
        if self.vector is None:
            return None
        return str(ipaddress.ip_network(self.scenario.target_address, strict=False))

    def accepts(self, vectors: Iterable[AttackVector | str]) -> bool:
        """Whether vectors name this attack: exactly its vector, or for carpet bombing that word among them."""
        named = {AttackVector(v) for v in vectors}
        if self.vector is AttackVector.CARPET_BOMBING:
            return AttackVector.CARPET_BOMBING in named
        return named == {self.vector}

    def stream(self, fmt: str = "sflow") -> list[tuple[float, list[bytes], int]]:
        """The datagrams, every `TICK` seconds, both detectors get."""
        return list(generate(self.scenario, fmt, self.rate, self.duration, sampling=self.sampling, tick=TICK))


def _labelled(name: str, kind: str, scenario_name: str, prefix: str, threshold_pps: int, sampling: int,
              attack_multiple: float, background: float, duration: float, **scenario: object) -> Labelled:  # fmt: skip
    """A scenario whose attack peaks at `attack_multiple` host thresholds over `background` host thresholds."""
    attack_pps, background_pps = attack_multiple * threshold_pps, background * threshold_pps
    total = attack_pps + background_pps
    built = Scenario(scenario_name, prefix=prefix, attack_share=attack_pps / total, **scenario)  # type: ignore[arg-type]
    return Labelled(name, kind, built, round(total / sampling), duration, sampling, attack_pps)


def labelled_scenarios(
    threshold_pps: int, *, sampling: int = 10, prefixes: Iterable[str] | None = None,
    multiples: Sequence[float] = MULTIPLES, vectors: Sequence[AttackVector] = HOST_VECTORS,
    background_levels: Sequence[float] = BACKGROUND_LEVELS, attack_seconds: float = ATTACK_SECONDS,
) -> list[Labelled]:
    """Every labelled scenario, each on its own /24 (198.18.0.0/24, 198.18.1.0/24, ... unless given)."""
    cidrs = iter(prefixes or (f"198.18.{i}.0/24" for i in range(256)))
    start, end = LEAD_SECONDS, LEAD_SECONDS + attack_seconds
    steady = start + attack_seconds + TAIL_SECONDS
    out = [_labelled(f"background_{level:g}x", "background", "background", next(cidrs), threshold_pps, sampling,
                     0.0, level, steady) for level in background_levels]  # fmt: skip
    for vector in vectors:
        sources = AMPLIFIERS if vector in AMPLIFICATION_SOURCE_PORTS else 5_000
        out += [_labelled(f"{vector.value}_{m:g}x", "vector", vector.value, next(cidrs), threshold_pps, sampling, m,
                          ATTACK_BACKGROUND, steady, attack_start=start, attack_end=end, sources=sources)
                for m in multiples]  # fmt: skip
    out.append(_labelled("carpet_bombing", "carpet", "carpet_bombing", next(cidrs), threshold_pps, sampling, 40,
                         ATTACK_BACKGROUND, steady, attack_start=start, attack_end=end))  # fmt: skip
    pulses = start + 3 * 7.0
    out.append(_labelled("pulse_wave", "pulse", "syn_flood", next(cidrs), threshold_pps, sampling, 5,
                         ATTACK_BACKGROUND, pulses + TAIL_SECONDS, attack_start=start, attack_end=pulses,
                         shape="pulse", pulse_on=3.0, pulse_off=4.0))  # fmt: skip
    ramp = 5 * attack_seconds
    out.append(_labelled("slow_ramp", "ramp", "udp_flood", next(cidrs), threshold_pps, sampling, 2,
                         ATTACK_BACKGROUND, start + ramp, attack_start=start, attack_end=start + ramp,
                         shape="ramp"))  # fmt: skip
    out.append(_labelled("flash_crowd", "flash_crowd", "flash_crowd", next(cidrs), threshold_pps, sampling, 20,
                         ATTACK_BACKGROUND, steady, attack_start=start, attack_end=end))  # fmt: skip
    return out


def sluice_prefix(labelled: Labelled, threshold_pps: int, *, warmup: int) -> MonitoredPrefix:
    """The prefix as Sluice's production watches it (run_collector's defaults), with a packet-rate host threshold
    only (as FastNetMon is given) and baselines warm after `warmup` seconds."""
    return MonitoredPrefix.from_thresholds(labelled.prefix, "bench", host_bps=None, host_pps=threshold_pps,
                                           baseline_warmup=warmup)


@dataclass
class _Replay:
    """A collector on a clock that follows the stream."""

    prefix: MonitoredPrefix
    baselines: dict[str, Baseline] = field(default_factory=dict)
    now: float = START
    signals: list[AttackSignal] = field(default_factory=list)

    def __post_init__(self) -> None:
        store = MemoryStore()
        store.save_baselines(self.baselines)
        self.collector = FlowCollector(store=store, emit=self.signals.append, prefixes=lambda: [self.prefix],
                                       clock=lambda: self.now)

    def play(self, stream: Iterable[tuple[float, list[bytes], int]], duration: float) -> None:
        start = self.now
        for t, datagrams, _ in stream:
            self.now = start + t
            self.collector.ingest_packets(datagrams, now=self.now)
            self.collector.tick(self.now)
        self.idle(start + duration - self.now)

    def idle(self, seconds: float) -> None:
        for _ in range(max(0, int(seconds * 4))):
            self.now += 0.25
            self.collector.tick(self.now)


@cache
def _warm(background_pps: float, sampling: int, warmup: int, threshold_pps: int) -> tuple[tuple[str, Baseline], ...]:
    """Baselines of a /24 (198.51.100.0/24) that carried `background_pps` for `warmup` seconds before START."""
    learning = Scenario("background", prefix="198.51.100.0/24", seed=99, attack_share=0.0)
    seconds = warmup + 15  # the shape is learned every few seconds: enough of those too
    replay = _Replay(MonitoredPrefix.from_thresholds("198.51.100.0/24", host_bps=None, host_pps=threshold_pps,
                                                     baseline_warmup=warmup), now=START - seconds - 1)  # fmt: skip
    rate = round(background_pps / sampling)
    replay.play(generate(learning, "sflow", rate, seconds, sampling=sampling, tick=TICK), seconds)
    return tuple(replay.collector.detector.baselines.items())


def learned_baselines(labelled: Labelled, threshold_pps: int, warmup: int) -> dict[str, Baseline]:
    """What Sluice has learned of the scenario's prefix by the time the stream starts: its own background."""
    background = labelled.rate * labelled.sampling - labelled.peak_pps
    learned = _warm(background, labelled.sampling, warmup, threshold_pps)
    return {key.replace("198.51.100.0/24", labelled.prefix): value for key, value in learned}


def replay_sluice(labelled: Labelled, threshold_pps: int, *, warmup: int = 60,
                  stream: Sequence[tuple[float, list[bytes], int]] | None = None) -> list[AttackSignal]:  # fmt: skip
    """Every signal Sluice's collector emits on the stream, its clock starting at START (after warm-up)."""
    replay = _Replay(sluice_prefix(labelled, threshold_pps, warmup=warmup),
                     learned_baselines(labelled, threshold_pps, warmup))
    replay.play(stream if stream is not None else labelled.stream(), labelled.duration)
    replay.idle(replay.prefix.hold_seconds + 3)
    return replay.signals


@dataclass(frozen=True)
class Alarm:
    """A detector's alarm: when (seconds into the stream), on what, and which vectors it named."""

    at: float
    target: str
    vectors: tuple[str, ...]


def sluice_alarms(signals: Iterable[AttackSignal]) -> list[Alarm]:
    """Sluice's START signals as alarms."""
    return [Alarm(float(s.details.get("second", START)) - START, s.target, tuple(s.vectors))  # type: ignore[arg-type]
            for s in signals if s.phase is SignalPhase.START]


@dataclass
class Score:
    """A detector's results over many scenarios."""

    attacks: int = 0
    detected: int = 0
    alarms: int = 0
    true_alarms: int = 0
    vectors_right: int = 0
    hours: float = 0.0
    false_on_quiet: int = 0
    ramp_fraction: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.detected / self.attacks if self.attacks else 1.0

    @property
    def precision(self) -> float:
        return self.true_alarms / self.alarms if self.alarms else 1.0

    @property
    def false_alarms_per_hour(self) -> float:
        return (self.alarms - self.true_alarms) / self.hours if self.hours else 0.0

    @property
    def vector_accuracy(self) -> float:
        return self.vectors_right / self.detected if self.detected else 0.0


def _on_target(labelled: Labelled, target: str) -> bool:
    """Whether an alarm names the attacked target; for carpet bombing, the prefix or any of its hosts."""
    if labelled.target is None:
        return False
    if labelled.vector is AttackVector.CARPET_BOMBING:
        return ipaddress.ip_network(target).subnet_of(labelled.scenario.network)  # type: ignore[arg-type]
    return target == labelled.target


def judge(labelled: Labelled, alarms: Sequence[Alarm], score: Score, threshold_pps: int) -> None:
    """Add one scenario's alarms to `score`: the first alarm on the target after the attack started is true (a
    second one on it is a split attack, hence false), every other alarm is false."""
    score.hours += labelled.duration / 3600
    score.alarms += len(alarms)
    start = labelled.scenario.attack_start
    first = next((a for a in sorted(alarms, key=lambda a: a.at)
                  if _on_target(labelled, a.target) and a.at >= start - 1), None)  # fmt: skip
    if labelled.vector is None:
        score.false_on_quiet += len(alarms)
        if alarms:
            score.notes.append(f"{labelled.name}: false alarm on {', '.join(a.target for a in alarms)}")
        return
    score.attacks += 1
    if first is None:
        score.notes.append(f"{labelled.name}: missed")
        return
    score.detected += 1
    score.true_alarms += 1
    if labelled.accepts(first.vectors):
        score.vectors_right += 1
    else:
        score.notes.append(f"{labelled.name}: vectors {','.join(first.vectors)}")
    if labelled.kind == "ramp":
        level = labelled.scenario.level(first.at) * labelled.peak_pps
        score.ramp_fraction = level / threshold_pps
    others = [a for a in alarms if a is not first]
    if others:
        score.notes.append(f"{labelled.name}: also {', '.join(f'{a.target} at {a.at:.0f}s' for a in others)}")


def run_sluice(scenarios: Sequence[Labelled], threshold_pps: int, *, warmup: int = 60,
               streams: Callable[[Labelled], Sequence[tuple[float, list[bytes], int]]] | None = None) -> Score:  # fmt: skip
    """Sluice's score over the scenarios."""
    score = Score()
    for labelled in scenarios:
        stream = streams(labelled) if streams is not None else None
        judge(labelled, sluice_alarms(replay_sluice(labelled, threshold_pps, warmup=warmup, stream=stream)), score,
              threshold_pps)
    return score
