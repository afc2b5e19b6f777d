"""The layering DESIGN.md describes, checked by parsing every module's imports.

The pure modules never read a clock, sleep, start threads, draw random numbers or touch
the file system: time arrives as ``now_s`` and bytes go through a ``Disk``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "phase1"
PURE = ["core", "jobs", "wal", "snapshot", "recovery", "protocol"]
FORBIDDEN_IN_PURE = {
    "os",
    "time",
    "threading",
    "random",
    "simpy",
    "matplotlib",
    "pandas",
    "subprocess",
    "socket",
    "pathlib",
    "shutil",
    "concurrent",
    "multiprocessing",
    "asyncio",
    "prometheus_client",
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    mods: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods.add(node.module)
    return mods


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("name", PURE)
def test_pure_module_imports_no_io_clock_threads_or_randomness(name: str) -> None:
    path = PACKAGE / f"{name}.py"
    assert path.exists(), f"{path} is missing"
    bad = imported_roots(path) & FORBIDDEN_IN_PURE
    assert not bad, f"phase1/{name}.py imports {sorted(bad)}; the pure core must not"


@pytest.mark.parametrize("name", PURE)
def test_pure_module_imports_only_pure_phase1_modules(name: str) -> None:
    allowed = {f"phase1.{m}" for m in PURE} | {
        "phase1.errors",
        "phase1.disk",
        "phase1.config",
        # C: parses a bytes object into Records, no I/O, clock, threads (see _walcheck.c)
        "phase1._walcheck",
        # C: applies rows to the core's own dicts, no I/O, clock, threads (see _replay.c)
        "phase1._replay",
    }
    mods = {m for m in imported_modules(PACKAGE / f"{name}.py") if m.startswith("phase1")}
    assert mods <= allowed, f"phase1/{name}.py imports {sorted(mods - allowed)}"


def test_simpy_only_in_sim() -> None:
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in modules()
        if "simpy" in imported_roots(p)
        and "sim" not in p.relative_to(PACKAGE).parts[:1]
        and p.parent.name != "lessons"
    ]
    assert not offenders, f"simpy imported outside phase1/sim/: {offenders}"


def test_threads_and_prometheus_only_in_runtime() -> None:
    offenders = []
    for p in modules():
        rel = p.relative_to(PACKAGE)
        roots = imported_roots(p)
        if rel.parts[0] in {"runtime", "lessons"} or rel.name in {"cli.py", "demo.py"}:
            continue
        if "prometheus_client" in roots:
            offenders.append(f"{rel}: prometheus_client")
        if "threading" in roots and rel.parts[0] not in {"sim"}:
            offenders.append(f"{rel}: threading")
    assert not offenders, f"threads/prometheus outside phase1/runtime/: {offenders}"


def test_pandas_and_matplotlib_only_in_lessons_and_sim() -> None:
    offenders = []
    for p in modules():
        rel = p.relative_to(PACKAGE)
        if rel.parts[0] in {"lessons", "sim"} or rel.name in {"cli.py", "demo.py"}:
            continue
        bad = imported_roots(p) & {"pandas", "matplotlib"}
        if bad:
            offenders.append(f"{rel}: {sorted(bad)}")
    assert not offenders, f"pandas/matplotlib outside lessons/ and sim/: {offenders}"
