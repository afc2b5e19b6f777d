"""Crash tests on real processes (the seed's TestCrashRecovery): ``kill -9`` and restart.

``phase1 run --until-idle`` runs as a subprocess on real files.  One seeded
``random.Random`` picks when each run is killed; a kill is a *moment*, not a
synchronisation point, so a timed wait before it is the point of the test.  Between kills
the WAL is read with ``read_wal``: every job with an ACK record in the file when the
process died was acknowledged, and must be completed at the end.  A failure message
ends with the seed.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from phase1.config import Config, load_config
from phase1.disk import OsDisk
from phase1.jobs import generate_mixed_jobs
from phase1.recovery import recover
from phase1.wal import read_wal

SEED = 20250101
TOTAL_JOBS = 400
KILLS_MIN = 20
KILL_DELAY_S = (0.01, 0.25)  # how long a run works after recovery before SIGKILL (seeded)
STARTUP_KILL_P = 0.25  # share of kills aimed at start-up / recovery instead
STARTUP_KILL_S = (0.0, 0.15)  # seconds after spawn for those (the interpreter starts in ~0.2 s)
RUNS_MAX = 100
RECOVERY_BAR_S = 3.0  # the seed's bar (a correctness bar, asserted with a huge margin)
RUN_TIMEOUT_S = 60.0
RECOVERED = re.compile(r"phase1 run: recovered in ([0-9.]+) ms")


def write_config(tmp_path: Path, **extra: object) -> Path:
    data = tmp_path / "data"
    values: dict[str, object] = {
        "wal_path": str(data / "wal.log"),
        "snapshot_path": str(data / "snapshot.json"),
        "workspace": str(data / "workspace"),
        "worker_count": 1,
        "task_timeout": "2s",
        "snapshot_interval": "100ms",
        "timeout_check_interval": "100ms",
        "max_retry": 6,
        "commit_policy": "batch",
    }
    values.update(extra)
    path = tmp_path / "phase1.yaml"
    path.write_text(orjson.dumps(values).decode(), encoding="utf-8")  # JSON is YAML
    return path


def start_run(
    config: Path, jobs: Path, log_dir: Path, n: int, *extra: str
) -> subprocess.Popen[bytes]:
    """``phase1 run`` as a child; its stdout goes to ``runNN.out``, stderr to a pipe."""
    cmd = [sys.executable, "-m", "phase1", "run", "--config", str(config), "--jobs", str(jobs)]
    cmd += ["--until-idle", "--quiet", *extra]
    with open(log_dir / f"run{n:02d}.out", "wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, cwd=config.parent)


def finish(proc: subprocess.Popen[bytes], log_dir: Path, n: int, first: bytes = b"") -> int:
    """Wait for the child, save its stderr to ``runNN.err``; returns its exit code."""
    assert proc.stderr is not None
    rest = proc.stderr.read()
    proc.stderr.close()
    code = proc.wait(RUN_TIMEOUT_S)
    (log_dir / f"run{n:02d}.err").write_bytes(first + rest)
    return code


def acked_in_wal(config: Config) -> set[str]:
    disk = OsDisk()
    try:
        return {r.job_id for r in read_wal(disk, config.wal_path).records if r.type == "ACK"}
    finally:
        disk.close()


def recovery_ms(err_file: Path) -> float | None:
    match = RECOVERED.search(err_file.read_text(encoding="utf-8", errors="replace"))
    return float(match.group(1)) if match else None


def final_state(config: Config) -> tuple[set[str], dict[str, str], dict[str, int]]:
    disk = OsDisk()
    try:
        core, report = recover(disk, config, truncate=False)
    finally:
        disk.close()
    return set(core.completed_ids()), core.dead_reasons(), report.counts


def test_kill_9_at_seeded_moments_loses_no_acknowledged_job(
    tmp_path: Path, record_property: Any
) -> None:
    rng = random.Random(SEED)
    config_path = write_config(tmp_path)
    config = load_config(config_path)
    jobs_path = tmp_path / "jobs.json"
    jobs_path.write_bytes(
        orjson.dumps(generate_mixed_jobs(TOTAL_JOBS, random.Random(rng.random())))
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    acked: set[str] = set()
    kills = exits = 0
    runs = 0
    where = f"(seed {SEED}; logs in {logs})"
    while kills < KILLS_MIN and runs < RUNS_MAX:
        n = runs
        proc = start_run(config_path, jobs_path, logs, n)
        runs += 1
        first = b""
        if rng.random() < STARTUP_KILL_P or exits:
            delay_s = rng.uniform(*STARTUP_KILL_S)  # during start-up or recovery
        else:
            assert proc.stderr is not None
            first = proc.stderr.readline()  # blocks until recovery is done (or the child died)
            delay_s = rng.uniform(*KILL_DELAY_S)
        try:
            proc.wait(timeout=delay_s)
            exits += 1  # it finished before its kill moment: the queue is idle
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        code = finish(proc, logs, n, first)
        assert code in (0, -signal.SIGKILL), f"run {n} exited {code} {where}"
        acked |= acked_in_wal(config)
    assert kills >= KILLS_MIN, f"only {kills} kills in {runs} runs {where}"
    proc = start_run(config_path, jobs_path, logs, runs)
    assert finish(proc, logs, runs) == 0, f"final run failed {where}"
    final = orjson.loads((logs / f"run{runs:02d}.out").read_bytes().splitlines()[-1])
    runs += 1

    completed, dead, counts = final_state(config)
    missing = acked - completed
    assert not missing, f"acknowledged jobs lost: {sorted(missing)[:10]} {where}"
    assert len(completed) + len(dead) == TOTAL_JOBS, f"{counts} {where}"
    assert (final["completed"], final["dead"]) == (len(completed), len(dead))
    assert counts["pending"] == counts["in_flight"] == counts["failed"] == 0
    always_failing = {f"task-{i:04d}" for i in range(TOTAL_JOBS) if i % 80 == 7}
    assert always_failing <= set(dead), where

    times = [t for n in range(runs) if (t := recovery_ms(logs / f"run{n:02d}.err")) is not None]
    assert times, f"no run printed its recovery time {where}"
    record_property("kills", kills)
    record_property("recovery_ms_max", max(times))
    print(
        f"\ncrash test: {kills} kill -9, {exits} early exits, {runs} runs, "
        f"{len(acked)} acked before kills, completed {len(completed)}, dead {len(dead)}; "
        f"recovery ms: mean {sum(times) / len(times):.1f}, max {max(times):.1f} "
        f"over {len(times)} recoveries {where}"
    )
    assert max(times) < RECOVERY_BAR_S * 1000, where


def test_poison_job_that_kills_the_process_is_dead_lettered_after_max_retry(
    tmp_path: Path,
) -> None:
    max_retry = 3
    config_path = write_config(tmp_path, max_retry=max_retry, snapshot_interval="1s")
    config = load_config(config_path)
    jobs = [{"id": f"ok-{i}", "payload": {"kind": "noop"}} for i in range(10)]
    jobs.insert(5, {"id": "poison", "payload": {"kind": "crash"}})
    jobs_path = tmp_path / "jobs.json"
    jobs_path.write_bytes(orjson.dumps(jobs))
    logs = tmp_path / "logs"
    logs.mkdir()
    crashes = 0
    for n in range(max_retry + 2):
        code = finish(start_run(config_path, jobs_path, logs, n, "--allow-crash-jobs"), logs, n)
        if code == 0:
            break
        assert code == -signal.SIGKILL, (logs / f"run{n:02d}.err").read_text()
        crashes += 1
    else:
        pytest.fail(f"still crashing after {max_retry + 2} runs")
    assert crashes == max_retry
    completed, dead, _ = final_state(config)
    assert set(dead) == {"poison"} and len(completed) == 10
    assert f"process stopped during attempt {max_retry}" in dead["poison"]
    assert f"max_retry {max_retry} reached" in dead["poison"]
    err = (logs / f"run{crashes:02d}.err").read_text()
    assert "dead: poison: process stopped during attempt" in err


def test_crash_kind_is_refused_without_the_flag(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, max_retry=1)
    jobs_path = tmp_path / "jobs.json"
    jobs_path.write_bytes(orjson.dumps([{"id": "poison", "payload": {"kind": "crash"}}]))
    logs = tmp_path / "logs"
    logs.mkdir()
    assert finish(start_run(config_path, jobs_path, logs, 0), logs, 0) == 0
    _, dead, _ = final_state(load_config(config_path))
    assert "allow_crash" in dead["poison"] or "crash" in dead["poison"]
