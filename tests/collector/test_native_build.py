"""The compiled helper's declared build: one header declares what Python calls, and nothing compiles at run time."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from collector import native
from collector.native import build

ROOT = Path(__file__).resolve().parents[2]
COLLECTOR = ROOT / "collector"


def called_by_python() -> set[str]:
    """Every helper function the collector's Python code asks for by name."""
    names: set[str] = set()
    for path in COLLECTOR.rglob("*.py"):
        names.update(re.findall(r"\"(sluice_[a-z0-9_]+)\"", path.read_text()))
    return names - {"sluice_source_hash"}


def test_every_function_python_calls_is_declared_in_the_header_and_built() -> None:
    declared = set(re.findall(r"\b(sluice_[a-z0-9_]+)\(", build.declarations()))
    wanted = called_by_python()
    assert wanted, "the collector asks the helper for no function at all?"
    assert wanted <= declared, f"called but not declared in sluice_native.h: {sorted(wanted - declared)}"
    module = native.extension()
    assert module is not None
    for name in sorted(wanted):
        assert callable(getattr(module.lib, name))
        assert native.compiled_function(name) is not None


def test_the_built_module_matches_the_sources() -> None:
    module = native.extension()
    assert module is not None
    assert module.ffi.string(module.lib.sluice_source_hash()).decode() == build.source_hash()


def test_a_wrong_argument_count_or_a_strided_array_is_refused() -> None:
    import numpy as np
    import pytest

    top = native.compiled_function("sluice_agg_top")
    assert top is not None
    with pytest.raises(TypeError):
        top(1, 2)
    keys = np.zeros(8, dtype=np.int64)
    with pytest.raises(ValueError, match="C-contiguous"):
        top(keys[::2], np.zeros(4, dtype=np.uint64), 0, 1, 1, 1, np.zeros(1, dtype=np.int64))


def test_without_a_built_module_the_collector_runs_numpy_and_compiles_nothing(tmp_path: Path) -> None:
    """A copy of the collector with no built module: it decodes with numpy and leaves no build behind."""
    copy = tmp_path / "collector"
    subprocess.run(["cp", "-r", str(COLLECTOR), str(copy)], check=True)
    for built in (copy / "native").glob("_sluice_native*"):
        built.unlink()
    subprocess.run(["rm", "-rf", str(copy / "native" / "_build")], check=True)
    script = (
        "import logging, sys; logging.basicConfig(level=logging.WARNING)\n"
        "from collector import native\n"
        "from collector.decode import netflow5\n"
        "assert native.extension() is None\n"
        "assert netflow5._compiled_records() is None\n"
        "print('numpy path')\n"
    )
    env = {**os.environ, "PATH": "/nonexistent", "SLUICE_NATIVE": "1", "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "numpy path" in result.stdout and "not built" in result.stderr
    assert not list((copy / "native").glob("_sluice_native*")) and not (copy / "native" / "_build").exists()

