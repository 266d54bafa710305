"""Rules the test suite keeps: one wait_for, no fixed daemon port, no wall-clock assertion (timings are bench/'s)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEST_FILES = sorted((ROOT / "tests").rglob("*.py"))
CLOCKS = {"perf_counter", "monotonic", "time", "process_time"}
PORT_NAMES = {"port", "bgp_port", "mgmt_port", "PORT", "SPEAKER_PORT"}


def _is_clock(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CLOCKS
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "time")


def _calls_clock(node: ast.AST) -> bool:
    """A comparison of an elapsed time (`time.x() - start`), the shape of a wall-clock assertion."""
    return any(isinstance(c, ast.Compare) and any(
        isinstance(n, ast.BinOp) and isinstance(n.op, ast.Sub) and _is_clock(n.left) for n in ast.walk(c))
        for c in ast.walk(node))


def _fixed_port(value: ast.AST) -> bool:
    return isinstance(value, ast.Constant) and isinstance(value.value, int) and 1024 <= value.value <= 65535


def violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.FunctionDef) and node.name == "wait_for":
            found.append(f"{where}: a wait_for of its own (use netsim.polling.wait_for)")
        if isinstance(node, ast.Assert) and _calls_clock(node.test):
            found.append(f"{where}: a wall-clock assertion (timings belong in bench/)")
        if isinstance(node, ast.keyword) and node.arg in PORT_NAMES and _fixed_port(node.value):
            found.append(f"{where}: a fixed port (use tests.support.processes.free_port)")
        if isinstance(node, ast.Assign) and _fixed_port(node.value) and any(
                isinstance(t, ast.Name) and t.id in PORT_NAMES for t in node.targets):
            found.append(f"{where}: a fixed port (use tests.support.processes.free_port)")
    return found


def test_the_suite_keeps_its_rules() -> None:
    problems = [problem for path in TEST_FILES if path.name != "test_test_rules.py" for problem in violations(path)]
    assert problems == []


def test_the_rules_catch_what_they_name() -> None:
    sample = ROOT / "tests" / "_rules_sample.py"
    sample.write_text(
        "import time\n"
        "PORT = 11861\n"
        "def wait_for(p):\n    return p()\n"
        "def test_x():\n    start = time.perf_counter()\n    lab(bgp_port=1931)\n"
        "    assert time.perf_counter() - start < 2.0\n"
    )
    try:
        found = violations(sample)
    finally:
        sample.unlink()
    assert len(found) == 4, found
