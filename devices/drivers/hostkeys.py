"""SSH host keys of routers: read the key an element presents, and make PyEZ, ncclient and NAPALM verify it.

Keys are written `<type> <base64>` (a known_hosts line without the host). A driver given a recorded key first
reads the key the element presents (an SSH handshake without login, like ssh-keyscan) and refuses a different one
before any password is sent; then its NETCONF session verifies the same key itself through the libraries' own
options (ncclient `hostkey_verify` with a known_hosts file named by an `ssh_config` file), so a key swapped between
the two connections is refused too.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

import paramiko

from devices.drivers.base import ConnectError, HostKeyError, PortClosedError


def format_key(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


def key_type(key: str) -> str:
    return key.split(" ", 1)[0]


def fingerprint(key: str) -> str:
    """OpenSSH's fingerprint of a `<type> <base64>` key: `SHA256:` and unpadded base64 of the blob's digest."""
    blob = base64.b64decode(key.split(" ", 1)[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def scan_host_key(host: str, port: int, *, timeout: float, expected_type: str | None = None) -> str:
    """The host key `host:port` presents (no authentication); asks for `expected_type` when one is recorded.

    Raises PortClosedError when the element's port refuses or does not answer, ConnectError when the handshake
    fails.
    """
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as error:
        raise PortClosedError(f"{host}: cannot connect: {error}") from error
    transport = paramiko.Transport(sock)
    try:
        if expected_type:
            options = transport.get_security_options()
            if expected_type in options.key_types:
                options.key_types = (expected_type,)
        transport.start_client(timeout=timeout)
        return format_key(transport.get_remote_server_key())
    except (paramiko.SSHException, EOFError, OSError) as error:
        raise ConnectError(f"{host}: SSH handshake failed: {error}") from error
    finally:
        transport.close()
        sock.close()


HostKeyTrust = Callable[[str], str]


def check_host_key(host: str, port: int, expected: str | None, *, timeout: float,
                   trust: HostKeyTrust | None = None) -> str:
    """Read the key `host:port` presents and return the key to verify the session against.

    `expected` is the recorded key; `trust` (given by the inventory, which records first contact and changes)
    receives the presented key and returns the key to accept or raises HostKeyError. Raises HostKeyError when
    the presented key is not that key.
    """
    presented = scan_host_key(host, port, timeout=timeout, expected_type=key_type(expected) if expected else None)
    accepted = trust(presented) if trust is not None else expected
    if presented != accepted:
        raise HostKeyError(f"{host}: SSH host key {fingerprint(presented)} is not the recorded "
                           f"{fingerprint(accepted) if accepted else 'one'}; refusing to connect", presented=presented)
    return accepted


class KnownHostsFiles:
    """A known_hosts file for `host:port` (written by `write()`), and an ssh_config file that points ncclient at it.

    The files live in a private temporary directory removed when this object is collected (with its driver), so
    a driver can open again.
    """

    def __init__(self, host: str, port: int) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="sluice-hostkey-")
        root = Path(self._directory.name)
        self._names = [host] if port == 22 else [f"[{host}]:{port}", host]
        self.known_hosts = root / "known_hosts"
        self.ssh_config = root / "ssh_config"
        self.known_hosts.write_text("")
        self.ssh_config.write_text(f"Host *\n    UserKnownHostsFile {self.known_hosts}\n"
                                   "    StrictHostKeyChecking yes\n")

    def write(self, key: str) -> None:
        """Make `key` the only key known for the host."""
        self.known_hosts.write_text("".join(f"{name} {key}\n" for name in self._names))
