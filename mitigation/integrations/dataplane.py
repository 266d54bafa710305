"""A client of the demo's emulated data plane: one JSON-lines request at a time to its loopback control socket.

Its protocol is `netsim.dataplane`'s module docstring; the apps do not import the simulator. `simulate_attack`
sends traffic through it, `demo_scrubbers` reads what it diverts to each center (stdlib only, like the other
integrations).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

DEFAULT_ADDRESS = ("127.0.0.1", 4790)
# Where `netsim.demo --dir var/netsim` (as `./sluice run` starts it) writes the port it bound.
PORT_FILE = Path("var") / "netsim" / "dataplane.port"


class DataPlaneUnreachable(Exception):
    """No data plane answers at the address, or it refused a request."""


def dataplane_address(value: str | None, base_dir: Path) -> tuple[str, int]:
    """`host:port` as a pair; without one, the port `netsim.demo` wrote under `base_dir`, else the default.
    Raises ValueError for a value that is not host:port."""
    if value:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"expected host:port, got {value!r}")
        return host.strip("[]"), int(port)
    try:
        return DEFAULT_ADDRESS[0], int((base_dir / PORT_FILE).read_text().strip())
    except (OSError, ValueError):
        return DEFAULT_ADDRESS


def dataplane_call(address: tuple[str, int], message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """One request to the data plane's control socket; its answer. Raises DataPlaneUnreachable."""
    try:
        with socket.create_connection(address, timeout=timeout) as connection:
            connection.sendall(json.dumps(message).encode() + b"\n")
            with connection.makefile("rb") as answers:
                answer = json.loads(answers.readline() or b"{}")
    except (OSError, ValueError) as error:
        raise DataPlaneUnreachable(f"no data plane at {address[0]}:{address[1]} ({error})") from error
    if not isinstance(answer, dict) or not answer.get("ok"):
        error_text = answer.get("error") if isinstance(answer, dict) else None
        raise DataPlaneUnreachable(f"the data plane refused {message.get('op')}: {error_text or 'no answer'}")
    return answer
