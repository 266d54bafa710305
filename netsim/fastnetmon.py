"""Debian's FastNetMon (community edition), run by tests and benchmarks on loopback ports in a folder of its own.

NetFlow/IPFIX and sFlow listeners and the Prometheus endpoint on 127.0.0.1; no BGP, no API, no usage report. Its
notify script is given by the caller: by default it only appends each ban to a log in that folder.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

CONFIG = """\
logging_level = info
logging_local_syslog_logging = off
logging_remote_syslog_logging = off
disable_usage_report = on
enable_ban = on
enable_ban_ipv6 = on
process_incoming_traffic = on
process_outgoing_traffic = off
ban_time = {ban_time}
unban_only_if_attack_finished = on
networks_list_path = {dir}/networks
white_list_path = {dir}/whitelist
check_period = 1
enable_connection_tracking = off
ban_for_pps = on
ban_for_bandwidth = off
ban_for_flows = off
threshold_pps = {threshold}
threshold_mbps = 1000000
threshold_flows = 100000000
mirror_afpacket = off
mirror_afxdp = off
mirror_netmap = off
pcap = off
netflow = on
sflow = on
interfaces = lo
average_calculation_time = 1
speed_calculation_delay = 1
netflow_port = {netflow_port}
netflow_host = 127.0.0.1
netflow_sampling_ratio = 1
sflow_port = {sflow_port}
sflow_host = 127.0.0.1
notify_script_path = {dir}/notify.sh
notify_script_pass_details = on
collect_attack_pcap_dumps = off
redis_enabled = off
mongodb_enabled = off
exabgp = off
gobgp = off
influxdb = off
graphite = off
monitor_local_ip_addresses = off
monitor_openvz_vps_ip_addresses = off
pid_path = {dir}/fastnetmon.pid
cli_stats_file_path = {dir}/fastnetmon.dat
cli_stats_ipv6_file_path = {dir}/fastnetmon_ipv6.dat
enable_api = off
kafka_traffic_export = off
prometheus = on
prometheus_port = {prometheus_port}
prometheus_host = 127.0.0.1
"""

NOTIFY = """#!/bin/sh
echo "$(date +%s.%N) $1 $2 $3 $4" >> {dir}/bans.log
cat > /dev/null
"""


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port nobody uses on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_installed() -> str | None:
    """Path of the fastnetmon binary, installing Debian's package if needed; None when impossible."""
    found = shutil.which("fastnetmon") or ("/usr/sbin/fastnetmon" if os.path.exists("/usr/sbin/fastnetmon") else None)
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "install", "-y", "fastnetmon"], ["apt-get", "update"], ["apt-get", "install", "-y", "fastnetmon"]):
        subprocess.run(command, env=env, capture_output=True, timeout=240, check=False)
        found = shutil.which("fastnetmon") or ("/usr/sbin/fastnetmon" if os.path.exists("/usr/sbin/fastnetmon") else None)
        if found:
            return found
    return None


class FastNetMon:
    """A FastNetMon process confined to loopback ports and a temporary folder."""

    def __init__(self, binary: str, *, threshold_pps: int = 2_000, notify: str = NOTIFY, ban_time: int = 3600,
                 networks: str = "203.0.113.0/24") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sluice-fnm-"))
        self.netflow_port, self.sflow_port = free_port(), free_port()
        self.prometheus_port = free_port(socket.SOCK_STREAM)
        (self.dir / "networks").write_text(networks + "\n")
        (self.dir / "whitelist").write_text("")
        script = self.dir / "notify.sh"
        script.write_text(notify.replace("{dir}", str(self.dir)))
        script.chmod(0o755)
        config = self.dir / "fastnetmon.conf"
        config.write_text(CONFIG.format(dir=self.dir, threshold=threshold_pps, netflow_port=self.netflow_port,
                                        sflow_port=self.sflow_port, prometheus_port=self.prometheus_port,
                                        ban_time=ban_time))
        self.process = subprocess.Popen(
            [binary, "--configuration_file", str(config), "--log_file", str(self.dir / "fastnetmon.log"),
             "--disable_pid_logic"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.metrics() is None:
            time.sleep(0.2)
        if self.metrics() is None:
            self.stop()
            raise RuntimeError(f"FastNetMon did not start; see {self.dir / 'fastnetmon.log'}")

    def address(self, fmt: str) -> tuple[str, int]:
        """Where FastNetMon listens for a format."""
        return ("127.0.0.1", self.sflow_port if fmt == "sflow" else self.netflow_port)

    def metrics(self) -> dict[str, float] | None:
        """Prometheus metrics as name -> value, None when unreachable."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.prometheus_port}/metrics", timeout=2) as reply:
                text = reply.read().decode()
        except OSError:
            return None
        out = {}
        for line in text.splitlines():
            match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{[^}]*\})?\s+([-+\deE.]+)$", line)
            if match:
                out[match.group(1)] = float(match.group(2))
        return out

    def processed(self) -> float:
        """Flow records FastNetMon has processed so far."""
        return (self.metrics() or {}).get("fastnetmon_total_simple_packets_processed", 0.0)

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the FastNetMon process (all threads)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def pin(self, core: int) -> None:
        """Pin every FastNetMon thread to one core, like the Sluice collector."""
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            try:
                os.sched_setaffinity(int(task.name), {core})
            except OSError:
                continue

    def bans(self) -> list[tuple[float, str]]:
        """(time, address) of each ban notification."""
        log = self.dir / "bans.log"
        if not log.exists():
            return []
        out = []
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[-1] == "ban":
                out.append((float(parts[0]), parts[1]))
        return out

    def stop(self) -> None:
        """Stop the process and remove its folder."""
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)
