"""`phase1 bench calibrate`: measures the cost model on the real code and stores it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from phase1.calibrate import Calibration, calibrate, write_calibration
from phase1.cli import main
from phase1.config import Config, load_config

REPO = Path(__file__).resolve().parent.parent


def test_calibrate_measures_positive_costs_on_real_files(tmp_path: Path) -> None:
    result = calibrate(
        Config(), jobs=300, wal_jobs=200, fsyncs=5, repeats=1, folder=str(tmp_path), startup=False
    )
    values = result.as_dict()
    assert set(values) == {
        "recovery_cost_fixed_s",
        "recovery_cost_per_snapshot_job_s",
        "recovery_cost_per_finished_job_s",
        "recovery_cost_per_wal_record_s",
        "fsync_latency_s_mean",
    }
    assert all(v >= 0 for v in values.values())
    assert result.recovery_cost_fixed_s > 0 and result.fsync_latency_s_mean > 0
    assert list(tmp_path.iterdir()) == []  # its temporary folder is gone


def test_write_calibration_replaces_the_keys_and_keeps_comments(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    shutil.copy(REPO / "configs" / "test.yaml", path)
    before = path.read_text().splitlines()
    write_calibration(path, Calibration(1e-3, 2e-6, 5e-7, 3e-6, 4e-4))
    after = path.read_text().splitlines()
    assert len(after) == len(before)
    assert [a for a in after if a.startswith("#")] == [b for b in before if b.startswith("#")]
    cfg = load_config(path)
    assert (cfg.recovery_cost_fixed_s, cfg.recovery_cost_per_wal_record_s) == (1e-3, 3e-6)
    assert (cfg.recovery_cost_per_snapshot_job_s, cfg.fsync_latency_s_mean) == (2e-6, 4e-4)
    assert cfg.recovery_cost_per_finished_job_s == 5e-7
    assert cfg.worker_count == load_config(REPO / "configs" / "test.yaml").worker_count


def test_write_calibration_appends_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("worker_count: 3\n")
    write_calibration(path, Calibration(1e-3, 2e-6, 5e-7, 3e-6, 4e-4))
    cfg = load_config(path)
    assert cfg.worker_count == 3 and cfg.recovery_cost_fixed_s == 1e-3


def test_cli_bench_calibrate_writes_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    shutil.copy(REPO / "configs" / "test.yaml", path)
    code = main(
        ["bench", "calibrate", "--config", str(path), "--quick", "--write", "--dir", str(tmp_path)]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert (
        "recovery_cost_per_wal_record_s" in out
        and "wrote the 5 values" in out
        and "startup_s (not written)" in out
    )
    assert load_config(path).recovery_cost_fixed_s != Config().recovery_cost_fixed_s


def test_cli_bench_calibrate_missing_config_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["bench", "calibrate", "--config", str(tmp_path / "nope.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_calibration_never_writes_the_startup_figure(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    shutil.copy(REPO / "configs" / "test.yaml", path)
    write_calibration(path, Calibration(1e-3, 2e-6, 5e-7, 3e-6, 4e-4, startup_s=0.2))
    assert "startup" not in path.read_text()
    load_config(path)  # still a valid config: no unknown key was added


def test_the_harness_charges_waiting_and_finished_snapshot_jobs_at_their_own_rates() -> None:
    """The downtime of a crash is the cost model's sum, term by term, from the report."""
    from phase1.sim import FaultPlan, JobKind, Simulation, Workload

    cfg = load_config(REPO / "configs" / "test.yaml").replace(
        snapshot_interval_s=0.05,
        recovery_cost_fixed_s=1e-3,
        recovery_cost_per_snapshot_job_s=1e-4,
        recovery_cost_per_finished_job_s=1e-5,
        recovery_cost_per_wal_record_s=1e-6,
    )
    workload = Workload(jobs=400, rate_per_s=2_000, mix=(JobKind(service_s_mean=0.002),))
    res = Simulation(cfg, FaultPlan(crash_at_s=((0.15, "process"),)), workload, 3).run()
    rec = res.recoveries().iloc[0]
    finished, jobs = int(rec["snapshot_finished"]), int(rec["snapshot_jobs"])
    assert 0 < finished < jobs  # both terms are exercised
    expected = 1e-3 + 1e-4 * (jobs - finished) + 1e-5 * finished + 1e-6 * rec["records_read"]
    assert rec["downtime_s"] == pytest.approx(expected)
