"""The FastNetMon notify adapter: FastNetMon's arguments and attack details in, one Sluice signal request out."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mitigation.integrations.fastnetmon_notify import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    UsageError,
    build_signal,
    fastnetmon_vectors,
    main,
    top_sources,
)

SCRIPT = Path(__file__).resolve().parents[2] / "mitigation" / "integrations" / "fastnetmon_notify.py"

# Shaped like FastNetMon 1.2's attack details on stdin (values in bytes and packets per second).
UDP_ATTACK = {
    "ip": "203.0.113.5",
    "attack_details": {
        "attack_uuid": "4b1e4b6c-0000-4000-8000-000000000001",
        "attack_severity": "middle",
        "attack_type": "unknown",
        "attack_direction": "incoming",
        "attack_protocol": "udp",
        "attack_detection_source": "automatic",
        "total_incoming_traffic": 250_000_000,
        "total_incoming_traffic_bits": 2_000_000_000,
        "total_incoming_pps": 180_000,
        "incoming_udp_pps": 175_000,
        "incoming_tcp_pps": 4_000,
        "incoming_syn_tcp_pps": 100,
        "incoming_icmp_pps": 1_000,
        "incoming_ip_fragmented_pps": 0,
    },
    "packet_dump": [
        "2024-05-01 10:00:00.000 192.0.2.53:53 > 203.0.113.5:40000 protocol: udp frag: 0 packets: 1 size: 1400",
        "2024-05-01 10:00:00.001 192.0.2.53:53 > 203.0.113.5:40001 protocol: udp frag: 0 packets: 1 size: 1400",
        "2024-05-01 10:00:00.002 198.51.100.7:53 > 203.0.113.5:40002 protocol: udp frag: 0 packets: 1 size: 1400",
    ],
}


def test_ban_with_json_details_is_a_start_signal() -> None:
    body = build_signal(["203.0.113.5", "incoming", "180000", "ban"], json.dumps(UDP_ATTACK).encode())
    assert body == {
        "target": "203.0.113.5", "vectors": ["udp_flood"], "bps": 2_000_000_000, "pps": 180_000, "phase": "start",
        "detector": "fastnetmon", "top_sources": ["192.0.2.53", "198.51.100.7"],
    }  # fmt: skip


def test_attack_details_update_and_unban_ends_without_stdin() -> None:
    update = build_signal(["203.0.113.5", "incoming", "180000", "attack_details"], json.dumps(UDP_ATTACK).encode())
    assert update is not None and update["phase"] == "update"
    end = build_signal(["2001:db8:100::5", "incoming", "0", "unban"], b"")
    assert end == {"target": "2001:db8:100::5", "vectors": ["other"], "bps": 0, "pps": 0, "phase": "end",
                   "detector": "fastnetmon", "top_sources": []}  # fmt: skip


def test_json_without_arguments_carries_ip_and_action() -> None:
    body = build_signal([], json.dumps({**UDP_ATTACK, "action": "ban"}).encode())
    assert body is not None and (body["target"], body["phase"], body["pps"]) == ("203.0.113.5", "start", 180_000)


def test_short_text_details_fall_back_to_the_arguments_for_what_they_lack() -> None:
    body = build_signal(["203.0.113.5", "incoming", "52000", "ban"], b"IP: 203.0.113.5\nAttack type: syn_flood\n")
    assert body is not None and (body["pps"], body["bps"], body["vectors"]) == (52000, 0, ["syn_flood"])


# Captured from Debian's fastnetmon 1.2.4 (notify_script_pass_details = on, its only details format: text),
# fed by netsim.flowgen: an IPFIX TCP SYN stream (IPFIX as sent carries no TCP flags FastNetMon reads, so it saw
# "tcp", attack type "unknown") and an sFlow DNS reflection (it saw "udp_flood"; its packet dump shows port 53).
CAPTURED = Path(__file__).resolve().parent / "fixtures" / "fastnetmon-1.2.4"


@pytest.mark.parametrize(
    ("capture", "expected"),
    [
        ("ipfix-syn-flood-ban", ("203.0.113.50", "start", ["tcp_flood"], 2_568_000, 5_350)),
        ("ipfix-syn-flood-attack_details", ("203.0.113.50", "update", ["tcp_flood"], 2_568_000, 5_350)),
        ("ipfix-syn-flood-unban", ("203.0.113.50", "end", ["other"], 0, 5_350)),
        ("sflow-dns-amplification-ban", ("203.0.113.51", "start", ["udp_flood"], 47_801_600, 4_268)),
        ("sflow-dns-amplification-attack_details", ("203.0.113.51", "update", ["dns_amplification"], 47_801_600,
                                                    4_268)),
    ],
)
def test_what_fastnetmon_1_2_4_really_sends_is_read_as_it_saw_it(capture: str, expected: tuple) -> None:
    argv = (CAPTURED / f"{capture}.argv").read_text().split()
    body = build_signal(argv, (CAPTURED / f"{capture}.stdin").read_bytes())
    assert body is not None
    assert (body["target"], body["phase"], body["vectors"], body["bps"], body["pps"]) == expected
    if capture.endswith("attack_details"):
        assert len(body["top_sources"]) == 5 and all(s.startswith("100.64.") for s in body["top_sources"])


def test_the_text_traffic_is_exact_from_the_packet_size_not_the_truncated_megabits() -> None:
    text = (CAPTURED / "sflow-dns-amplification-ban.stdin").read_text()
    assert "Total incoming traffic: 47 mbps" in text and "Average packet size for incoming traffic: 1400.0" in text
    body = build_signal(["203.0.113.51", "incoming", "4268", "ban"], text.encode())
    assert body is not None and body["bps"] == 4268 * 1400 * 8


@pytest.mark.parametrize(
    ("details", "vectors"),
    [
        ({"attack_type": "syn_flood"}, ["syn_flood"]),
        ({"attack_type": "ip_fragmentation_flood"}, ["fragments"]),
        ({"total_incoming_pps": 100, "incoming_tcp_pps": 95, "incoming_syn_tcp_pps": 90}, ["syn_flood"]),
        ({"total_incoming_pps": 100, "incoming_tcp_pps": 50, "incoming_udp_pps": 50}, ["tcp_flood", "udp_flood"]),
        ({"total_incoming_pps": 100, "incoming_icmp_pps": 10, "attack_protocol": "icmp"}, ["icmp_flood"]),
        ({"attack_protocol": "tcp"}, ["tcp_flood"]),
        ({}, ["other"]),
    ],
)
def test_vectors_from_attack_type_then_protocol_mix_then_protocol(details: dict, vectors: list[str]) -> None:
    assert fastnetmon_vectors(details) == vectors


def test_outgoing_attacks_are_not_sent_and_bad_arguments_are_usage_errors() -> None:
    assert build_signal(["203.0.113.5", "outgoing", "1000", "ban"], b"") is None
    for argv in (["203.0.113.5", "incoming", "1"], ["not-an-ip", "incoming", "1", "ban"],
                 ["203.0.113.5", "incoming", "1", "block"]):  # fmt: skip
        with pytest.raises(UsageError):
            build_signal(argv, b"")


def test_top_sources_ignore_lines_without_addresses() -> None:
    assert top_sources(["garbage", "2001:db8::1:123 > 2001:db8:100::5:9 protocol: udp"]) == ["2001:db8::1"]
    assert top_sources("not a list") == []


def test_missing_configuration_and_unreachable_sluice_have_their_own_exit_codes() -> None:
    stderr = io.StringIO()
    argv = ["203.0.113.5", "incoming", "1000", "ban"]
    assert main(argv, io.BytesIO(b""), {}, stderr) == EXIT_USAGE
    assert "SLUICE_URL" in stderr.getvalue()
    environ = {"SLUICE_URL": "http://127.0.0.1:9", "SLUICE_TOKEN": "slc_x_y"}
    assert main(argv, io.BytesIO(b""), environ, stderr) == EXIT_UNAVAILABLE
    assert main(["203.0.113.5", "outgoing", "1", "ban"], io.BytesIO(b""), {}, stderr) == EXIT_OK


class _Recorder(BaseHTTPRequestHandler):
    """Records each request and answers with the status the test chose."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.server.requests.append((self.path, dict(self.headers), json.loads(self.rfile.read(length))))  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"detail": "recorded"}')

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def sluice_stub() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.requests = []  # type: ignore[attr-defined]
    server.status = 202  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def run_script(server: ThreadingHTTPServer, args: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    environ = {"PATH": os.environ.get("PATH", ""), "SLUICE_URL": f"http://127.0.0.1:{server.server_address[1]}/",
               "SLUICE_TOKEN": "slc_abc_secret"}  # fmt: skip
    return subprocess.run([sys.executable, str(SCRIPT), *args], input=stdin, env=environ, capture_output=True,
                          timeout=60, check=False)  # fmt: skip


def test_script_posts_the_signal_as_fastnetmon_would_run_it(sluice_stub: ThreadingHTTPServer) -> None:
    result = run_script(sluice_stub, ["203.0.113.5", "incoming", "180000", "ban"], json.dumps(UDP_ATTACK).encode())
    assert result.returncode == EXIT_OK, result.stderr
    [(path, headers, body)] = sluice_stub.requests  # type: ignore[attr-defined]
    assert path == "/api/v1/signals/"
    assert headers["Authorization"] == "Token slc_abc_secret"
    assert body["target"] == "203.0.113.5" and body["phase"] == "start" and body["vectors"] == ["udp_flood"]
    assert b"start 203.0.113.5" in result.stderr


def test_script_reports_a_refused_signal(sluice_stub: ThreadingHTTPServer) -> None:
    sluice_stub.status = 400  # type: ignore[attr-defined]
    result = run_script(sluice_stub, ["203.0.113.5", "incoming", "10", "unban"], b"")
    assert result.returncode == EXIT_REFUSED
    assert b"400" in result.stderr
