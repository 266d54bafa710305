"""Keep one long-running process up: start it again when it exits, stop it on SIGTERM or SIGINT.

    python -m portal.supervise -- celery -A portal worker -Q devices ...

`./sluice run` starts the Celery workers through this, so a worker that ends itself (its consumer could not come
back after a broker restart, see portal.celery) or that crashed is replaced within a second.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    command = argv[argv.index("--") + 1:] if "--" in argv else argv
    if not command:
        print("usage: python -m portal.supervise -- <command> [args]", file=sys.stderr)
        return 2
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)

    child = subprocess.Popen(command)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        code = child.wait()
        if stopping:
            return code
        print(f"supervise: {command[0]} exited with {code}; starting it again", file=sys.stderr, flush=True)
        time.sleep(1)
        if stopping:
            return code
        child = subprocess.Popen(command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
