"""Every benchmark in bench/ runs end to end at a tiny size, so a change that breaks one fails the suite.

The figures of a tiny run mean nothing and are not judged; what is checked is that the benchmark finishes and
prints its figures in the form the team's tools read: `METRIC <name> <number> <unit>`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = sorted(path for path in (ROOT / "bench").glob("*.py") if not path.name.startswith("_"))
METRIC_LINE = re.compile(r"^METRIC [a-z][a-z0-9_]* -?\d+(\.\d+)?(e[+-]?\d+)? \S+$")
# Each benchmark makes its own databases and daemons; the test process's own settings must not leak into them.
INHERITED = {"PATH", "HOME", "LANG", "TMPDIR", "SLUICE_NATIVE"}


def metric_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("METRIC")]


def test_every_benchmark_is_found() -> None:
    assert {path.stem for path in BENCHMARKS} >= {"time_to_mitigate", "engine_scale", "soc_page", "flow_ingest",
                                                  "detection_quality"}


@pytest.mark.parametrize("benchmark", BENCHMARKS, ids=lambda path: path.stem)
def test_benchmark_runs_tiny_and_prints_metrics(benchmark: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key in INHERITED}
    env["SLUICE_BENCH_TINY"] = "1"
    result = subprocess.run(
        [sys.executable, str(benchmark), "--tiny"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"{benchmark.name} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    lines = metric_lines(result.stdout)
    assert lines, f"{benchmark.name} printed no METRIC line:\n{result.stdout[-3000:]}"
    malformed = [line for line in lines if not METRIC_LINE.match(line)]
    assert not malformed, f"{benchmark.name} printed malformed METRIC lines: {malformed}"


def test_the_metric_form_is_enforced() -> None:
    assert METRIC_LINE.match("METRIC ttm_p99 412 ms")
    assert METRIC_LINE.match("METRIC engine_cost_gap_mean 0.25 %")
    assert not METRIC_LINE.match("METRIC ttm_p99 fast ms")
    assert not METRIC_LINE.match("METRIC ttm_p99 412")
