"""How long one commit-confirmed cycle (stage + confirm) takes on one emulated Junos router and on ten at once.

Each cycle pushes a realistic intent (20 flow routes, 5 diversions) and then an empty one, so every round both
adds and removes configuration. Prints `METRIC <name> <value> <unit>` lines. Run from the repository root:
`.venv/bin/python bench/junos_push.py`.
"""

from __future__ import annotations

import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import size

from devices.drivers.base import DeviceIntent, FlowSpecRule, UnicastRoute
from devices.drivers.junos import JunosDriver
from netsim.junos import JunosEmulator

ROUNDS = size(4, 1)
ROUTERS = size(10, 2)


def realistic_intent(seed: int) -> DeviceIntent:
    actions = ("discard", "rate-limit", "discard", "redirect")
    rules = tuple(
        FlowSpecRule(
            destination=f"203.0.{113 + seed % 2}.{index}/32", action=actions[index % 4],
            protocols=((17, 17),), source_ports=((53, 53), (123, 123)), packet_lengths=((512, 9216),),
            rate_bps=5_000_000 if actions[index % 4] == "rate-limit" else None,
            redirect_target="65000:666" if actions[index % 4] == "redirect" else None,
        )
        for index in range(20)
    )
    diversions = tuple(UnicastRoute(f"198.51.{100 + index}.0/24", "192.0.2.1", communities=("65000:100",))
                       for index in range(5))
    return DeviceIntent(flow_rules=rules, diversions=diversions)


def cycle(port: int, intent: DeviceIntent) -> float:
    """Connect, stage, confirm, close; the milliseconds it took."""
    start = time.perf_counter()
    with JunosDriver("127.0.0.1", port, "bench", "bench", timeout=30) as driver:
        driver.stage(intent, confirm_minutes=2)
        driver.confirm()
    return (time.perf_counter() - start) * 1000


def intent_for_round(round_number: int) -> DeviceIntent:
    return realistic_intent(round_number) if round_number % 2 == 0 else DeviceIntent()


def main() -> int:
    emulators = [JunosEmulator(hostname=f"bench{index}", username="bench", password="bench").start()
                 for index in range(ROUTERS)]
    try:
        cycle(emulators[0].port, DeviceIntent())
        single = [cycle(emulators[0].port, intent_for_round(number)) for number in range(ROUNDS)]
        parallel: list[float] = []
        walls: list[float] = []
        with ThreadPoolExecutor(max_workers=ROUTERS) as pool:
            for number in range(ROUNDS):
                intent = intent_for_round(number)
                start = time.perf_counter()
                parallel.extend(pool.map(lambda emulator, intent=intent: cycle(emulator.port, intent), emulators))
                walls.append((time.perf_counter() - start) * 1000)
    finally:
        for emulator in emulators:
            emulator.stop()
    single_p50 = statistics.median(single)
    parallel_p50 = statistics.median(parallel)
    wall_p50 = statistics.median(walls)
    lines = [
        f"METRIC junos_cycle_1_p50 {single_p50:.0f} ms",
        f"METRIC junos_cycle_1_max {max(single):.0f} ms",
        f"METRIC junos_cycle_10_parallel_p50 {parallel_p50:.0f} ms",
        f"METRIC junos_cycle_10_parallel_max {max(parallel):.0f} ms",
        f"METRIC junos_cycle_10_parallel_wall_p50 {wall_p50:.0f} ms",
        f"METRIC junos_parallel_ratio {wall_p50 / single_p50:.2f} x",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
