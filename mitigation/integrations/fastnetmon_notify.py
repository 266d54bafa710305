#!/usr/bin/env python3
"""FastNetMon notify script: forwards FastNetMon's ban / attack_details / unban to Sluice's signal API.

FastNetMon runs its `notify_script_path` as `<script> <ip> <direction> <pps> <action>` and writes the attack
details to its stdin: as text in the community edition up to 1.2.x (Debian's 1.2.4 has no other format: one
`Name: value unit` line per counter, a blank line, then the packet dump), as JSON in later versions. This script turns that into one
`POST /api/v1/signals/` with the token in SLUICE_TOKEN to the Sluice at SLUICE_URL.

It must never hold FastNetMon up: stdin is always drained (FastNetMon expects it to be read), reading and the HTTP
call have timeouts, and every outcome is an exit code with one line on stderr:

    0  signal accepted (or nothing to send: an outgoing attack, which Sluice does not mitigate)
    2  bad arguments or configuration (SLUICE_URL / SLUICE_TOKEN missing)
    3  Sluice refused the signal (HTTP 4xx: token, validation)
    4  Sluice unreachable or failing (connection, timeout, HTTP 5xx): FastNetMon's own action still happens

Stand-alone on purpose (standard library only, no Django import): FastNetMon hosts rarely carry Sluice's
environment, so the file can be copied there and run with any Python 3.9+.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import select
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_UNAVAILABLE = 4

STDIN_LIMIT = 4 * 1024 * 1024
STDIN_TIMEOUT_SECONDS = 5.0
HTTP_TIMEOUT_SECONDS = 5.0
VECTOR_SHARE = 0.3
TOP_SOURCES = 5

PHASES = {"ban": "start", "attack_details": "update", "unban": "end"}
# FastNetMon's own attack types (`attack_type`) and Sluice's names for them.
ATTACK_TYPES = {
    "syn_flood": "syn_flood",
    "udp_flood": "udp_flood",
    "icmp_flood": "icmp_flood",
    "ip_fragmentation_flood": "fragments",
}
PROTOCOL_VECTORS = {"tcp": "tcp_flood", "udp": "udp_flood", "icmp": "icmp_flood"}
# packet_dump lines look like "... 192.0.2.1:53 > 203.0.113.5:40000 protocol: udp ..."
DUMP_SOURCE = re.compile(r"(?P<src>[0-9a-fA-F:.]+?):(?P<port>\d+) > \S+ protocol: (?P<protocol>\w+)")
# Reflected UDP by its source port (the services Sluice names amplification vectors after; a copy of
# collector.signals.AMPLIFICATION_SOURCE_PORTS, as this script runs stand-alone on the FastNetMon host).
AMPLIFICATION_PORTS = {53: "dns_amplification", 123: "ntp_amplification", 11211: "memcached_amplification",
                       1900: "ssdp_amplification", 389: "cldap_amplification", 19: "chargen_amplification"}


class UsageError(Exception):
    """Arguments or environment FastNetMon (or the operator) got wrong."""


def read_details(stream: BinaryIO, timeout: float = STDIN_TIMEOUT_SECONDS, limit: int = STDIN_LIMIT) -> bytes:
    """Everything FastNetMon writes to stdin, until EOF or `timeout`; bytes past `limit` are read and dropped.

    Draining matters more than the content: a notify script that leaves stdin unread can stall FastNetMon.
    """
    if stream.isatty():
        return b""
    chunks: list[bytes] = []
    size = 0
    deadline = time.monotonic() + timeout
    try:
        fd = stream.fileno()
    except OSError:  # an in-memory stream (tests): nothing can block
        return stream.read(limit)
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        if size < limit:
            chunks.append(chunk[: limit - size])
            size += len(chunks[-1])
    return b"".join(chunks)


def parse_details(raw: bytes) -> dict[str, Any]:
    """The attack details from FastNetMon's stdin, JSON or text, as the JSON format names them; empty when absent."""
    text = raw.decode("utf-8", errors="replace").strip()
    if not text:
        return {}
    if not text.startswith("{"):
        return parse_text_details(text)
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# A counter line of the text format: "Incoming udp pps: 4268 packets per second", "Total incoming traffic: 47 mbps".
TEXT_LINE = re.compile(r"^(?P<name>[A-Za-z][A-Za-z ]*?):\s*(?P<value>\S+)(?:\s+(?P<unit>.*?))?\s*$")


def parse_text_details(text: str) -> dict[str, Any]:
    """FastNetMon 1.2.x's text details, named as its JSON format names them.

    Counters come as "Name: value unit" lines; "mbps" are megabits (bytes * 8 / 10^6, truncated), so the traffic
    in bits is taken from the packet rate and the average packet size when both are there, which is exact.
    The packet dump follows the first blank line after the counters.
    """
    details: dict[str, Any] = {}
    dump: list[str] = []
    for line in text.splitlines():
        if DUMP_SOURCE.search(line):
            dump.append(line)
            continue
        match = TEXT_LINE.match(line.strip())
        if match is None:
            continue
        name = match.group("name").strip().lower().replace(" ", "_")
        value, unit = match.group("value"), (match.group("unit") or "").strip().lower()
        if unit == "mbps":
            details[f"{name}_bits"] = _float(value) * 1_000_000
        elif unit.startswith(("packets per second", "flows per second")) or name.startswith("average_packet_size"):
            details[name] = _float(value)
        else:
            details[name] = value
    size = details.get("average_packet_size_for_incoming_traffic")
    pps = details.get("total_incoming_pps")
    if size and pps:
        details["total_incoming_traffic_bits"] = float(pps) * float(size) * 8
    return {"attack_details": details, "packet_dump": dump} if details else {}


def _float(value: str) -> float:
    try:
        return max(0.0, float(value))
    except ValueError:
        return 0.0


def _number(details: Mapping[str, Any], name: str) -> int:
    value = details.get(name)
    try:
        return max(0, int(float(value))) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def fastnetmon_vectors(details: Mapping[str, Any]) -> list[str]:
    """Sluice vectors for FastNetMon's details: its attack type, else the protocol mix, else its attack protocol.

    A protocol counts when it carries at least `VECTOR_SHARE` of the incoming packets (Sluice's own rule).
    """
    attack_type = str(details.get("attack_type", "")).lower()
    if attack_type in ATTACK_TYPES:
        return [ATTACK_TYPES[attack_type]]
    total = _number(details, "total_incoming_pps")
    vectors: list[str] = []
    if total:
        syn = _number(details, "incoming_syn_tcp_pps")
        shares = {
            "syn_flood": syn,
            "tcp_flood": _number(details, "incoming_tcp_pps") - syn,
            "udp_flood": _number(details, "incoming_udp_pps"),
            "icmp_flood": _number(details, "incoming_icmp_pps"),
            "fragments": _number(details, "incoming_ip_fragmented_pps"),
        }
        vectors = [vector for vector, pps in shares.items() if pps >= VECTOR_SHARE * total]
    if not vectors:
        protocol = str(details.get("attack_protocol", "")).lower()
        vectors = [PROTOCOL_VECTORS.get(protocol, "other")]
    return vectors


def amplification(packet_dump: object) -> str | None:
    """The amplification vector FastNetMon's own packet dump shows: most UDP packets from one service's port."""
    if not isinstance(packet_dump, list):
        return None
    ports: Counter[int] = Counter()
    udp = 0
    for line in packet_dump:
        match = DUMP_SOURCE.search(str(line))
        if match is None or match.group("protocol").lower() != "udp":
            continue
        udp += 1
        ports[int(match.group("port"))] += 1
    if not udp:
        return None
    port, count = ports.most_common(1)[0]
    return AMPLIFICATION_PORTS.get(port) if count >= VECTOR_SHARE * udp and count >= 5 else None


def top_sources(packet_dump: object, limit: int = TOP_SOURCES) -> list[str]:
    """The most frequent source addresses in FastNetMon's packet dump (valid addresses only)."""
    if not isinstance(packet_dump, list):
        return []
    counts: Counter[str] = Counter()
    for line in packet_dump:
        match = DUMP_SOURCE.search(str(line))
        if match is None:
            continue
        try:
            counts[str(ipaddress.ip_address(match.group("src")))] += 1
        except ValueError:
            continue
    return [address for address, _ in counts.most_common(limit)]


def build_signal(argv: Sequence[str], details_raw: bytes) -> dict[str, Any] | None:
    """The signal body for FastNetMon's arguments and stdin; None for an outgoing attack (nothing to mitigate)."""
    data = parse_details(details_raw)
    if not argv and "ip" in data and "action" in data:
        # JSON format without arguments (FastNetMon Advanced): everything comes on stdin.
        raw_details = data.get("attack_details")
        details = raw_details if isinstance(raw_details, dict) else {}
        argv = [str(data["ip"]), str(details.get("attack_direction", "incoming")), "0", str(data["action"])]
    if len(argv) != 4:
        raise UsageError("usage: fastnetmon_notify.py <ip> <direction> <pps> <ban|unban|attack_details>")
    ip, direction, pps_text, action = argv
    if action not in PHASES:
        raise UsageError(f"unknown action {action!r}: expected ban, unban or attack_details")
    try:
        target = str(ipaddress.ip_address(ip))
    except ValueError:
        raise UsageError(f"not an IP address: {ip!r}") from None
    if direction.lower() == "outgoing":
        return None
    details = data.get("attack_details", data)
    details = details if isinstance(details, dict) else {}
    pps = _number(details, "total_incoming_pps") or _number({"pps": pps_text}, "pps")
    bps = _number(details, "total_incoming_traffic_bits") or _number(details, "total_incoming_traffic") * 8
    vectors = fastnetmon_vectors(details)
    reflected = amplification(data.get("packet_dump"))
    if reflected and "udp_flood" in vectors:
        # FastNetMon says "UDP flood"; its own packet dump says from which service's port: the more exact name.
        vectors = [reflected if vector == "udp_flood" else vector for vector in vectors]
    return {
        "target": target,
        "vectors": vectors,
        "bps": bps,
        "pps": pps,
        "phase": PHASES[action],
        "detector": "fastnetmon",
        "top_sources": top_sources(data.get("packet_dump")),
    }


def post_signal(url: str, token: str, body: Mapping[str, Any], timeout: float = HTTP_TIMEOUT_SECONDS) -> int:
    """POST the signal; returns the HTTP status. Raises urllib errors for transport failures and HTTP errors."""
    request = urllib.request.Request(
        url.rstrip("/") + "/api/v1/signals/",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json", "Accept": "application/json",
                 "User-Agent": "sluice-fastnetmon-notify/1"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status)


def main(argv: Sequence[str], stdin: BinaryIO, environ: Mapping[str, str], stderr: Any = sys.stderr) -> int:
    """Run once for one FastNetMon notification; returns the exit code (see the module docstring)."""
    raw = read_details(stdin)
    try:
        body = build_signal(argv, raw)
        url, token = environ.get("SLUICE_URL", ""), environ.get("SLUICE_TOKEN", "")
        if body is not None and (not url or not token):
            raise UsageError("SLUICE_URL and SLUICE_TOKEN must be set in FastNetMon's environment")
    except UsageError as error:
        stderr.write(f"fastnetmon_notify: {error}\n")
        return EXIT_USAGE
    if body is None:
        stderr.write(f"fastnetmon_notify: outgoing attack from {argv[0]} ignored (Sluice mitigates incoming only)\n")
        return EXIT_OK
    try:
        status = post_signal(url, token, body)
    except urllib.error.HTTPError as error:
        reason = error.read(500).decode("utf-8", errors="replace").strip()
        stderr.write(f"fastnetmon_notify: Sluice answered {error.code} for {body['phase']} {body['target']}: {reason}\n")
        return EXIT_REFUSED if 400 <= error.code < 500 else EXIT_UNAVAILABLE
    except (urllib.error.URLError, OSError, ValueError) as error:
        stderr.write(f"fastnetmon_notify: Sluice at {url} unreachable: {error}\n")
        return EXIT_UNAVAILABLE
    stderr.write(f"fastnetmon_notify: {body['phase']} {body['target']} {','.join(body['vectors'])} -> {status}\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], sys.stdin.buffer, os.environ))
