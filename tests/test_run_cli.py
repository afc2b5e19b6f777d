"""``python -m phase1 run`` as a real child process on real files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import orjson

from phase1.config import load_config
from phase1.disk import OsDisk
from phase1.recovery import recover

REPO = Path(__file__).resolve().parent.parent
TEST_JOBS = REPO / "data" / "test-jobs.json"
TIMEOUT_S = 120.0


def write_config(tmp_path: Path, **extra: object) -> Path:
    data = tmp_path / "data"
    values: dict[str, object] = {
        "wal_path": str(data / "wal.log"),
        "snapshot_path": str(data / "snapshot.json"),
        "workspace": str(data / "workspace"),
        "worker_count": 2,
        "max_retry": 2,
        "snapshot_interval": "200ms",
    }
    values.update(extra)
    path = tmp_path / "phase1.yaml"
    path.write_text(orjson.dumps(values).decode(), encoding="utf-8")
    return path


def phase1_run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phase1", "run", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def last_json(stdout: str) -> dict[str, int]:
    doc: dict[str, int] = orjson.loads(stdout.strip().splitlines()[-1])
    return doc


def test_seed_test_jobs_end_with_one_completed_two_dead_and_both_reasons(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    done = phase1_run("--config", config, "--jobs", TEST_JOBS, "--until-idle")
    assert done.returncode == 0, done.stderr
    status = last_json(done.stdout)
    assert (status["completed"], status["dead"], status["pending"]) == (1, 2, 0), done.stderr
    assert "phase1 run: recovered in" in done.stderr, done.stderr
    assert "submitted 3 new job(s)" in done.stderr
    assert "dead: task-002: sandbox: io/write_file" in done.stderr
    assert "outside the workspace" in done.stderr
    assert "dead: task-003: sandbox: network/http_get" in done.stderr
    assert "http_allow_hosts" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_rerun_submits_nothing_twice(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    first = phase1_run("--config", config, "--jobs", TEST_JOBS, "--until-idle", "--quiet")
    again = phase1_run("--config", config, "--jobs", TEST_JOBS, "--until-idle")
    assert first.returncode == again.returncode == 0, again.stderr
    assert "submitted 0 new job(s)" in again.stderr and "(3 already known)" in again.stderr
    status = last_json(again.stdout)
    assert (status["completed"], status["dead"], status["dispatched"]) == (1, 2, 0)
    disk = OsDisk()
    try:
        core, _ = recover(disk, load_config(config), truncate=False)
    finally:
        disk.close()
    assert sorted(core.completed_ids()) == ["task-001"]
    assert sorted(core.dead_reasons()) == ["task-002", "task-003"]


def test_bad_jobs_file_is_one_line_exit_2_and_touches_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": "a", "payload": {}}, {"id": 7}]', encoding="utf-8")
    done = phase1_run("--config", config, "--jobs", bad, "--until-idle")
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("phase1: error: "), done.stderr
    assert "bad.json" in lines[0] and "item 1" in lines[0]
    assert done.stdout == ""
    assert not (tmp_path / "data").exists()


def test_missing_jobs_file_is_one_line_exit_2(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    done = phase1_run("--config", config, "--jobs", tmp_path / "nope.json")
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and "nope.json" in done.stderr


def test_serves_until_sigterm_then_stops_cleanly_with_metrics(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "phase1", "run", "--config", str(config)]
        + ["--jobs", str(TEST_JOBS), "--metrics-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        lines = []
        while not any("serving" in line for line in lines):
            line = proc.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        url = next(line.split(" on ", 1)[1].strip() for line in lines if "metrics on" in line)
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            assert b"queue_jobs_dispatched_total" in resp.read()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    status = last_json(out)
    assert status["pending"] + status["in_flight"] + status["completed"] + status["dead"] == 3


def test_cpu_affinity_pins_the_run_and_a_bad_cpu_is_one_line(tmp_path: Path) -> None:
    cpu = min(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    config = write_config(tmp_path, cpu_affinity=[cpu])
    done = phase1_run("--config", config, "--jobs", TEST_JOBS, "--until-idle")
    assert done.returncode == 0, done.stderr
    assert f"every thread pinned to CPU(s) [{cpu}]" in done.stderr
    assert last_json(done.stdout)["completed"] == 1

    other = tmp_path / "other"
    other.mkdir()
    bad = write_config(other, cpu_affinity=[4096])
    refused = phase1_run("--config", bad, "--jobs", TEST_JOBS, "--until-idle")
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0 and "[4096]" in refused.stderr
    assert "cpu_affinity" in refused.stderr and str(bad) in refused.stderr
    assert not (other / "data").exists()  # refused before anything was created
