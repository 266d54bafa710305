"""Command line: send a scenario to a loopback collector.

    python -m netsim.flowgen --format ipfix --target 127.0.0.1:4739 --scenario dns_amplification \
        --rate 100000 --duration 10
"""

from __future__ import annotations

import argparse
import sys
import time

from netsim.flowgen.scenarios import DEFAULT_PREFIX_V4, DEFAULT_PREFIX_V6, SCENARIOS, Scenario
from netsim.flowgen.stream import send


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, send, print a summary."""
    parser = argparse.ArgumentParser(prog="python -m netsim.flowgen", description=__doc__)
    parser.add_argument("--format", choices=["sflow", "netflow5", "netflow9", "ipfix"], required=True)
    parser.add_argument("--target", required=True, help="loopback host:port, e.g. 127.0.0.1:2055 or [::1]:6343")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="background")
    parser.add_argument("--rate", type=int, default=10_000, help="records per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds")
    parser.add_argument("--sampling", type=int, default=1, help="1-in-N sampling announced by the exporter")
    parser.add_argument("--attack-start", type=float, default=None, help="seconds (default: 20%% of duration)")
    parser.add_argument("--attack-end", type=float, default=None, help="seconds (default: 80%% of duration)")
    parser.add_argument("--ipv6", action="store_true", help=f"attack {DEFAULT_PREFIX_V6} instead of {DEFAULT_PREFIX_V4}")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    scenario = Scenario(
        args.scenario,
        prefix=DEFAULT_PREFIX_V6 if args.ipv6 else DEFAULT_PREFIX_V4,
        attack_start=args.duration * 0.2 if args.attack_start is None else args.attack_start,
        attack_end=args.duration * 0.8 if args.attack_end is None else args.attack_end,
        seed=args.seed,
    )
    started = time.monotonic()
    try:
        stats = send(scenario, args.format, args.target, args.rate, args.duration, args.sampling)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.monotonic() - started
    print(
        f"sent {stats.records} records in {stats.datagrams} datagrams ({stats.bytes} bytes) in {elapsed:.1f} s "
        f"to {args.target}: scenario {args.scenario}, target {scenario.target_address}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
