"""``python -m benchmarks --smoke`` runs every benchmark with tiny sizes and prints the table.

No timing assertions here (speed targets live in ``benchmarks/``): only that the harness
runs to the end, exits 0 and names every benchmark in its table.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.__main__ import row_names

REPO = Path(__file__).resolve().parent.parent


def test_smoke_run_prints_every_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = proc.stdout
    assert "command: .venv/bin/python -m benchmarks --smoke" in table
    header = next(line for line in table.splitlines() if line.startswith("benchmark "))
    for column in ("figure", "unit", "baseline", "ratio", "target", "met"):
        assert column in header
    rows = {
        line.split()[0]
        for line in table.splitlines()
        if line.startswith(("disk.", "durable.", "peer.", "sim.", "e2e."))
    }
    for name in row_names():
        assert name in rows, f"{name} missing from the table:\n{table}"
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["mode"] == "smoke"
    assert {r["name"] for r in data["results"]} >= set(row_names())
    assert not [r for r in data["results"] if r["error"]]
    assert (tmp_path / "recovery-profile.txt").exists()


def test_only_selects_a_group(tmp_path: Path) -> None:
    out = tmp_path / "disk.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--only", "disk", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = {r["name"] for r in json.loads(out.read_text(encoding="utf-8"))["results"]}
    assert names == {"disk.fsync", "disk.fsync_p50", "disk.fsync_p99", "disk.grouped_fsync"}
