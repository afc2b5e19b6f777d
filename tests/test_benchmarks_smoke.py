"""``python -m benchmarks --smoke`` runs every benchmark with tiny sizes and prints the table.

No timing assertions here (speed targets live in ``benchmarks/``): only that the harness
runs to the end, exits 0 and names every benchmark in its table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import row_names
from benchmarks.redis_peer import job_body, redis_server, redis_server_path

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


def _smoke(tmp_path: Path, only: str, **env: str) -> dict[str, dict[str, object]]:
    """``python -m benchmarks --smoke --only ONLY``: its rows by name (none in error)."""
    out = tmp_path / f"{only}.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--only", only, "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text(encoding="utf-8"))["results"]
    assert not [r for r in results if r["error"]]
    return {r["name"]: r for r in results}


def test_only_selects_a_group(tmp_path: Path) -> None:
    names = set(_smoke(tmp_path, "disk"))
    assert names == {"disk.fsync", "disk.fsync_p50", "disk.fsync_p99", "disk.grouped_fsync"}


def test_peers_without_redis_are_skipped_with_a_note(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-redis-server")
    rows = _smoke(tmp_path, "peers", PHASE1_BENCH_REDIS_SERVER=missing)
    for name in ("peer.redis_lpush", "peer.redis_reliable_e2e", "peer.redis_lpush_threads16"):
        assert rows[name]["figure"] is None
        assert rows[name]["notes"] == f"skipped (not installed: no {missing})"
    assert rows["durable.e2e_submit_dispatch_ack"]["figure"]


needs_redis = pytest.mark.skipif(
    not os.path.exists(redis_server_path()), reason="redis-server is not installed"
)


@needs_redis
def test_peers_with_redis_measure_it(tmp_path: Path) -> None:
    rows = _smoke(tmp_path, "peers")
    for name, label in (
        ("peer.redis_lpush", "sqlite3 1 thread, commit/job"),
        ("peer.redis_reliable_e2e", "sqlite3 3 commits/job"),
        ("peer.redis_lpush_threads16", "sqlite3 16 threads, commit/job"),
    ):
        row = rows[name]
        assert isinstance(row["figure"], float) and row["figure"] > 0
        assert row["baseline_label"] == label and row["ratio"]
        assert "--appendfsync always" in str(row["notes"])


@needs_redis
def test_redis_server_is_stopped_and_its_folder_removed() -> None:
    with pytest.raises(KeyError):
        with redis_server("test-redis") as server:
            assert server.client.call("LPUSH", "q", job_body(1)) == 1
            assert server.client.call("CONFIG", "GET", "appendonly") == [b"appendonly", b"yes"]
            assert os.path.isdir(os.path.join(server.folder, "appendonlydir"))
            raise KeyError("a benchmark failing inside the block")
    assert not os.path.exists(server.folder)
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid, 0)  # stopped and reaped
