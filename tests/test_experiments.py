"""Experiments and sweeps: DataFrames per experiment, plots, executors, the `sim` command."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os

import pytest
from matplotlib.figure import Figure

from phase1.cli import main
from phase1.lessons import plots
from phase1.sim import experiments as ex
from phase1.sim.scenarios import SCENARIOS, scenario


def test_sweep_gives_the_same_frame_on_a_process_pool_and_serially() -> None:
    grid = {"commit_policy": ["batch", "never"], "jobs": [300], "power_losses": [1]}
    pooled = ex.sweep(ex.loss_point, grid, [0, 1], progress=False)
    serial = ex.sweep(ex.loss_point, grid, [0, 1], executor=ex.SerialExecutor(), progress=False)
    assert list(pooled["seed"]) == [0, 1, 0, 1]
    assert list(pooled["commit_policy"]) == ["batch", "batch", "never", "never"]
    assert ex.deterministic(pooled).equals(ex.deterministic(serial))


def test_sweep_on_a_dask_local_cluster() -> None:
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        executor = client.get_executor()
        assert isinstance(executor, cf.Executor)
        df = ex.sweep(
            ex.loss_point,
            {"commit_policy": ["batch"], "jobs": [300], "power_losses": [1]},
            [3, 4],
            executor=executor,
            progress=False,
        )
    serial = ex.sweep(
        ex.loss_point,
        {"commit_policy": ["batch"], "jobs": [300], "power_losses": [1]},
        [3, 4],
        executor=ex.SerialExecutor(),
        progress=False,
    )
    assert ex.deterministic(df).equals(ex.deterministic(serial))


def test_recovery_grows_with_the_snapshot_interval() -> None:
    df = ex.recovery_vs_snapshot(
        intervals_s=(0.1, 2.0),
        crash_at_s=(1.0,),
        seeds=(0,),
        executor=ex.SerialExecutor(),
        progress=False,
    )
    short, long_ = df.iloc[0], df.iloc[1]
    assert short["records_read"] < long_["records_read"]
    assert short["recovery_s"] < long_["recovery_s"]
    assert isinstance(plots.plot_recovery_vs_snapshot(df), Figure)


def test_commit_policies_rank_as_expected() -> None:
    df = ex.commit_policy_throughput(
        batch_sizes=(10,), seeds=(0,), executor=ex.SerialExecutor(), progress=False, jobs=1000
    )
    tp = df.groupby("commit_policy")["throughput_jobs_per_s"].max()
    assert tp["always"] < tp["batch"] <= tp["never"] * 1.05
    assert isinstance(plots.plot_commit_policy(df), Figure)


def test_power_loss_costs_acknowledged_jobs_only_under_never() -> None:
    df = ex.sweep(
        ex.loss_point,
        {"commit_policy": ["always", "batch", "never"], "jobs": [800]},
        [0, 1],
        executor=ex.SerialExecutor(),
        progress=False,
    )
    lost = df.groupby("commit_policy")["lost"].sum()
    assert lost["always"] == 0 and lost["batch"] == 0 and lost["never"] > 0
    assert isinstance(plots.plot_loss(df), Figure)


def test_workers_vs_timeout_and_drain_frames_plot() -> None:
    w = ex.sweep(
        ex.workers_point,
        {"fault": ["stuck", "slow"], "task_timeout_s": [0.01, 0.1], "jobs": [400]},
        [0],
        executor=ex.SerialExecutor(),
        progress=False,
    )
    assert (w["completed"] + w["dead"] >= 400).all()
    assert isinstance(plots.plot_workers_vs_timeout(w), Figure)
    d = ex.sweep(
        ex.drain_point,
        {"downtime_s": [0.2], "utilization": [0.3, 0.8]},
        [0],
        executor=ex.SerialExecutor(),
        progress=False,
    )
    assert d.iloc[0]["drain_after_up_s"] < d.iloc[1]["drain_after_up_s"]
    assert isinstance(plots.plot_drain(d), Figure)


def test_every_scenario_builds() -> None:
    for name in SCENARIOS:
        config, plan, workload = scenario(name, 1)
        assert workload.jobs > 0 and config.worker_count > 0


def test_cli_sim_list_and_a_short_crash_storm(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sim", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SCENARIOS)
    dest = os.path.join(str(tmp_path), "cs")
    assert (
        main(["sim", "--scenario", "crash-storm", "--seed", "3", "--out", dest, "--until", "0.6"])
        == 0
    )
    out = capsys.readouterr().out
    assert "lost=0" in out and dest in out
    for name in (
        "ledger.json",
        "events.csv",
        "throughput.csv",
        "throughput.png",
        "depth.png",
        "latency.png",
    ):
        assert os.path.getsize(os.path.join(dest, name)) > 0
    with open(os.path.join(dest, "ledger.json"), encoding="utf-8") as f:
        assert json.load(f)["seed"] == 3
    assert main(["sim", "--scenario", "nope"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
