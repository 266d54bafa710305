"""The import order of the layers: core < tenants < devices < mitigation < portal, collector and netsim apart.

A module may import its own layer and those below it, never one above, not even inside a function. The collector
is Django-free and runs in its own processes: it imports none of the apps. The network simulator may import the
collector only. Every public function and class has one name across the apps, so a name says one thing.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = {"core": 0, "tenants": 1, "devices": 2, "mitigation": 3, "portal": 4}
APART = ("collector", "netsim")
PACKAGES = (*LAYERS, *APART)
# What each package set apart may import of the project; the apps may all import the collector.
APART_MAY_IMPORT = {"collector": {"collector"}, "netsim": {"collector", "netsim"}}
# Names every Django app or script repeats by convention.
CONVENTIONAL_NAMES = {"Migration", "Command", "Meta", "main"}


def python_files() -> Iterator[Path]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.relative_to(ROOT).parts:
                yield path


def imported_modules(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str]]:
    """Every module `path` imports, anywhere in it (function-local imports too), relative ones resolved."""
    package_parts = list(path.relative_to(root).with_suffix("").parts)[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                yield node.lineno, ".".join([*base, node.module] if node.module else base)
            elif node.module:
                yield node.lineno, node.module


def layer_violations(path: Path, root: Path = ROOT) -> list[str]:
    package = path.relative_to(root).parts[0]
    found = []
    for lineno, module in imported_modules(path, root):
        top = module.split(".")[0]
        if top not in PACKAGES or top == package:
            continue
        where = f"{path.relative_to(root)}:{lineno} imports {module}"
        if package in APART_MAY_IMPORT:
            if top not in APART_MAY_IMPORT[package]:
                found.append(f"{where} ({package} may import only {sorted(APART_MAY_IMPORT[package])})")
        elif top in LAYERS and LAYERS[top] > LAYERS[package]:
            found.append(f"{where} (a higher layer than {package})")
        elif top == "netsim":
            found.append(f"{where} (the simulator is for tests and the demo)")
    return found


def test_no_module_imports_a_higher_layer() -> None:
    violations = [violation for path in python_files() for violation in layer_violations(path)]
    assert violations == []


def test_the_collector_imports_no_django() -> None:
    violations = [
        f"{path.relative_to(ROOT)}:{lineno} imports {module}"
        for path in python_files() if path.relative_to(ROOT).parts[0] == "collector"
        for lineno, module in imported_modules(path) if module.split(".")[0] in {"django", "rest_framework", "channels"}
    ]
    assert violations == []


def test_the_check_sees_function_local_and_relative_imports(tmp_path: Path) -> None:
    """The check itself: an upward import hidden in a function, or written relative, is still found."""
    module = tmp_path / "tenants" / "probe.py"
    module.parent.mkdir()
    module.write_text("def f():\n    from mitigation.models import Attack\n    from ..portal import views\n")
    assert [v.split(" (")[0] for v in layer_violations(module, tmp_path)] == [
        "tenants/probe.py:2 imports mitigation.models", "tenants/probe.py:3 imports portal"]
    collector = tmp_path / "collector" / "probe.py"
    collector.parent.mkdir()
    collector.write_text("import core.events\nfrom collector import signals\n")
    assert [v.split(" (")[0] for v in layer_violations(collector, tmp_path)] == ["collector/probe.py:1 imports core.events"]


def public_names() -> dict[str, set[str]]:
    """Public top-level function and class name -> the modules of different packages that define it."""
    where: dict[str, set[str]] = defaultdict(set)
    for path in python_files():
        for node in ast.parse(path.read_text(), str(path)).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and not node.name.startswith("_"):
                where[node.name].add(str(path.relative_to(ROOT)))
    return where


def test_no_public_name_is_defined_in_two_apps() -> None:
    duplicated = {
        name: sorted(paths) for name, paths in public_names().items()
        if name not in CONVENTIONAL_NAMES and not name.endswith("Config")
        and len({Path(p).parts[0] for p in paths}) > 1
    }
    assert duplicated == {}
