"""The web tier: several daphne processes on one port, so the API uses every core.

    python -m portal.serve --bind 127.0.0.1 --port 8000 [--workers N]

One daphne process runs Django's sync views under one interpreter lock, so it tops out near one core; a detector
burst then queues behind it. This binds one socket per process on the same port (SO_REUSEPORT: the kernel spreads
connections over them) and starts a daphne process on each (`daphne --fd`). Websockets work across them: live
events travel through the Redis channel layer. A process that exits is started again; SIGTERM or SIGINT stops them.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time


def default_workers() -> int:
    return int(os.environ.get("SLUICE_WEB_WORKERS", "0")) or max(1, min(4, os.cpu_count() or 1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args(argv)
    family = socket.AF_INET6 if ":" in args.bind else socket.AF_INET
    listeners = []
    for _ in range(max(1, args.workers)):
        # One socket per process on the same port (SO_REUSEPORT): the kernel spreads new connections over them,
        # so long-lived keep-alive connections (a detector's) do not all pile onto the process that accepted first.
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((args.bind, args.port))
        listener.listen(1024)
        listeners.append(listener)

    def start(index: int) -> subprocess.Popen[bytes]:
        fd = listeners[index].fileno()
        return subprocess.Popen([sys.executable, "-m", "daphne", "--fd", str(fd), "portal.asgi:application"],
                                pass_fds=(fd,))

    processes = [start(index) for index in range(len(listeners))]
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"web: {len(processes)} daphne processes on {args.bind}:{args.port}", flush=True)
    while not stopping:
        for index, process in enumerate(processes):
            if process.poll() is not None and not stopping:
                print(f"web: daphne {process.pid} exited ({process.returncode}); starting another", flush=True)
                processes[index] = start(index)
        time.sleep(0.5)
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


if __name__ == "__main__":
    main()
