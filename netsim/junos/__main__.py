"""Run one or more emulated Junos routers until interrupted, for demos and manual testing.

Repeat --port/--hostname (and optionally --user/--password/--state-file) to start several routers; options given
once apply to all.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from netsim.junos.server import JunosEmulator


def _pick(values: list[str] | None, index: int, default: str | None) -> str | None:
    if not values:
        return default
    return values[index] if index < len(values) else values[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netsim.junos", description=__doc__)
    parser.add_argument("--port", type=int, action="append", help="TCP port on 127.0.0.1 (0 = any free one)")
    parser.add_argument("--hostname", action="append")
    parser.add_argument("--user", action="append")
    parser.add_argument("--password", action="append")
    parser.add_argument("--state-file", action="append", help="committed config is kept here as set statements")
    parser.add_argument("--clock-scale", type=float, default=1.0, help="emulated seconds per real second")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    count = max(len(args.port or [0]), len(args.hostname or ["router1"]))
    emulators = []
    for index in range(count):
        emulator = JunosEmulator(
            hostname=_pick(args.hostname, index, f"router{index + 1}") or "router1",
            username=_pick(args.user, index, "sluice") or "sluice",
            password=_pick(args.password, index, "sluice") or "sluice",
            port=int(_pick([str(p) for p in args.port or []], index, "0") or 0),
            state_file=args.state_file[index] if args.state_file and index < len(args.state_file) else None,
            clock_scale=args.clock_scale,
        ).start()
        emulators.append(emulator)
        sys.stdout.write(f"{emulator.hostname} listening on 127.0.0.1:{emulator.port}\n")
    sys.stdout.flush()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for emulator in emulators:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
