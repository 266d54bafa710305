"""Detection quality: Sluice's collector and Debian's FastNetMon on the same labelled streams, in one run.

The scenarios are `netsim.flowgen.labelled`'s: background at three levels and a flash crowd (nothing to find), every
vector at 2x, 5x and 50x of the host threshold, carpet bombing, a pulse wave and a slow ramp, each on its own /24,
as sFlow sampled 1:10. Both detectors get the same host threshold (packets per second; FastNetMon's
`threshold_pps`, Sluice's host threshold with production's other defaults) and the same datagrams.

FastNetMon (netsim.fastnetmon, loopback ports) receives the streams in real time, several scenarios at once on
their own prefixes; its notify script keeps each call's arguments and details, which Sluice's own FastNetMon
integration (mitigation/integrations/fastnetmon_notify.py) turns into vectors, exactly as in production. Sluice's
collector (decode, aggregate, store, detect) replays each stream on a clock that follows it, after learning the
prefix's baselines from a minute of its background (production's warm-up is 15 minutes of each hour of week;
FastNetMon learns nothing).

Scoring (netsim.flowgen.labelled.judge): an attack is detected by an alarm on its target (for carpet bombing the
prefix or any host in it) once it started; every other alarm, and a second alarm on the same attack, is false.
Vector accuracy is over detected attacks. Prints, for each detector, recall, precision, false alarms per hour of
stream, vector accuracy, false alarms on the quiet scenarios and how far into the slow ramp (as a fraction of the
host threshold) the alarm came; then Sluice's figures over FastNetMon's.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import TINY, size

from collector.signals import AttackVector
from mitigation.integrations.fastnetmon_notify import build_signal
from netsim.fastnetmon import FastNetMon, ensure_installed
from netsim.flowgen.labelled import (
    TICK,
    Alarm,
    Labelled,
    Score,
    judge,
    labelled_scenarios,
    replay_sluice,
    sluice_alarms,
)

THRESHOLD_PPS = 2_000
WARMUP_SECONDS = 60
# Records per second the sender streams to FastNetMon at once (scenarios are packed into rounds below this).
ROUND_RECORDS_PER_SECOND = size(45_000, 20_000)
SETTLE_SECONDS = 4.0  # FastNetMon bans within a couple of seconds of its check period; its details come later

# Each call as one file: the arguments on the first line, the details FastNetMon wrote to stdin after it.
NOTIFY = """#!/bin/sh
mkdir -p {dir}/calls
f={dir}/calls/$(date +%s.%N)-$$
{ echo "$1 $2 $3 $4"; cat; } > "$f.tmp" && mv "$f.tmp" "$f.txt"
"""


def scenarios() -> list[Labelled]:
    if TINY:
        chosen = labelled_scenarios(THRESHOLD_PPS, multiples=(5,), background_levels=(2.0,), attack_seconds=4.0,
                                    vectors=(AttackVector.DNS_AMPLIFICATION, AttackVector.SYN_FLOOD))
        return [s for s in chosen if s.kind not in ("ramp", "pulse")]
    return labelled_scenarios(THRESHOLD_PPS)


def rounds(chosen: Sequence[Labelled]) -> list[list[Labelled]]:
    """Scenarios packed into rounds that FastNetMon gets at once, each round within the sender's record budget."""
    packed: list[list[Labelled]] = []
    load: list[int] = []
    for labelled in sorted(chosen, key=lambda s: -s.rate):
        for index, used in enumerate(load):
            if used + labelled.rate <= ROUND_RECORDS_PER_SECOND:
                packed[index].append(labelled)
                load[index] += labelled.rate
                break
        else:
            packed.append([labelled])
            load.append(labelled.rate)
    return packed


def send_round(fnm: FastNetMon, streams: dict[str, list[tuple[float, list[bytes], int]]]) -> float:
    """Send the round's streams to FastNetMon's sFlow port in real time, together; returns when they started."""
    # Each tick's datagrams spread evenly over the tick: sent in one burst, they overflowed FastNetMon's socket
    # buffer and it counted a fraction of the traffic.
    timeline = sorted((t + TICK * index / len(datagrams), datagram) for stream in streams.values()
                      for t, datagrams, _ in stream for index, datagram in enumerate(datagrams))  # fmt: skip
    address = fnm.address("sflow")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    started = time.time()
    begin = time.perf_counter()
    for t, datagram in timeline:
        delay = t - (time.perf_counter() - begin)
        if delay > 0.002:
            time.sleep(delay)
        sock.sendto(datagram, address)
    sock.close()
    return started


def fastnetmon_alarms(fnm: FastNetMon) -> dict[str, tuple[float, tuple[str, ...]]]:
    """Each address FastNetMon banned: when it first did, and the vectors Sluice's notify script reads from its
    details (those of `attack_details`, which carry the packet dump, where there are any)."""
    folder = fnm.dir / "calls"
    calls: dict[str, list[tuple[float, str, tuple[str, ...], bool]]] = {}
    for path in sorted(folder.glob("*.txt")) if folder.exists() else []:
        head, _, details = path.read_bytes().partition(b"\n")
        argv = head.decode().split()
        signal = build_signal(argv, details) if len(argv) == 4 else None
        if signal is None or argv[3] == "unban":
            continue
        when = float(path.name.split("-")[0])
        calls.setdefault(signal["target"], []).append((when, argv[3], tuple(signal["vectors"]), bool(details.strip())))
    out = {}
    for ip, made in calls.items():
        when = min(c[0] for c in ([c for c in made if c[1] == "ban"] or made))
        detailed = ([c for c in made if c[3] and c[1] == "attack_details"] or [c for c in made if c[3]] or made)
        out[ip] = (when, detailed[0][2])
    return out


def print_score(name: str, score: Score) -> None:
    print(f"METRIC dq_{name}_recall {score.recall:.3f} fraction", flush=True)
    print(f"METRIC dq_{name}_precision {score.precision:.3f} fraction", flush=True)
    print(f"METRIC dq_{name}_false_alarms_per_hour {score.false_alarms_per_hour:.1f} alarms/h", flush=True)
    print(f"METRIC dq_{name}_vector_accuracy {score.vector_accuracy:.3f} fraction", flush=True)
    print(f"METRIC dq_{name}_quiet_false_alarms {score.false_on_quiet} alarms", flush=True)
    if score.ramp_fraction is not None:
        print(f"METRIC dq_{name}_ramp_caught_at {score.ramp_fraction:.2f} thresholds", flush=True)
    for note in score.notes:
        print(f"# {name}: {note}", flush=True)


def main() -> None:
    chosen = scenarios()
    print(f"# {len(chosen)} labelled scenarios at a host threshold of {THRESHOLD_PPS} pps, sFlow 1:10", flush=True)
    sluice = Score()
    fastnetmon = Score() if (binary := ensure_installed()) else None
    if fastnetmon is None:
        print("# fastnetmon could not be installed (apt-get failed): Sluice alone", flush=True)
    fnm = FastNetMon(binary, threshold_pps=THRESHOLD_PPS, notify=NOTIFY,
                     networks="\n".join(s.prefix for s in chosen)) if binary else None  # fmt: skip
    try:
        for number, batch in enumerate(rounds(chosen)):
            streams = {labelled.name: labelled.stream("sflow") for labelled in batch}
            started = send_round(fnm, streams) if fnm else 0.0
            late = time.time() - started - max(labelled.duration for labelled in batch)
            print(f"# round {number}: {len(batch)} scenarios, {sum(s.rate for s in batch)} records/s, sent "
                  f"{late:.1f} s behind real time", flush=True)
            for labelled in batch:
                signals = replay_sluice(labelled, THRESHOLD_PPS, warmup=WARMUP_SECONDS, stream=streams[labelled.name])
                judge(labelled, sluice_alarms(signals), sluice, THRESHOLD_PPS)
            if fnm is None or fastnetmon is None:
                continue
            time.sleep(SETTLE_SECONDS)
            bans = fastnetmon_alarms(fnm)
            for labelled in batch:
                network = labelled.scenario.network
                alarms = [Alarm(when - started, f"{ip}/{network.max_prefixlen}", vectors)
                          for ip, (when, vectors) in bans.items() if ipaddress.ip_address(ip) in network]
                judge(labelled, alarms, fastnetmon, THRESHOLD_PPS)
    finally:
        if fnm is not None:
            fnm.stop()
    print_score("sluice", sluice)
    if fastnetmon is None:
        return
    print_score("fastnetmon", fastnetmon)
    for name, ours, theirs in (("recall", sluice.recall, fastnetmon.recall),
                               ("precision", sluice.precision, fastnetmon.precision),
                               ("vector_accuracy", sluice.vector_accuracy, fastnetmon.vector_accuracy)):
        if theirs:
            print(f"METRIC dq_{name}_ratio {ours / theirs:.2f} x", flush=True)
        else:
            print(f"# dq_{name}_ratio: FastNetMon's {name} is 0", flush=True)
    difference = fastnetmon.false_alarms_per_hour - sluice.false_alarms_per_hour
    print(f"METRIC dq_false_alarms_per_hour_fewer {difference:.1f} alarms/h", flush=True)


if __name__ == "__main__":
    main()
