"""Experiments: seeded simulation runs turned into pandas DataFrames, and ``sweep``.

Owns: one *point* function per experiment (top-level, so a process pool or Dask can pickle
it; keyword parameters plus ``seed``; returns a dict of plain numbers), the experiment
functions that sweep them (``recovery_vs_snapshot``, ``commit_policy_throughput``,
``loss_under_power_failure``, ``workers_vs_timeout``, ``drain_after_crash``), ``sweep``
(any ``concurrent.futures.Executor``) and ``SerialExecutor``.

Must not know: plotting (``phase1.lessons.plots`` draws these frames) or queue rules.

Determinism: every column is a pure function of (parameters, seed) except those named
``wall_*`` (measured with ``time.perf_counter``), so a sweep gives the same DataFrame on a
process pool, on Dask and serially once ``wall_*`` columns are dropped.  Rows come back in
grid order (the first grid key varies slowest), then seed order.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from phase1.config import Config
from phase1.sim.harness import FaultPlan, JobKind, RunResult, Simulation, Workload

__all__ = [
    "SerialExecutor",
    "sweep",
    "recovery_point",
    "commit_point",
    "loss_point",
    "workers_point",
    "drain_point",
    "recovery_vs_snapshot",
    "commit_policy_throughput",
    "loss_under_power_failure",
    "workers_vs_timeout",
    "drain_after_crash",
    "deterministic",
]


# == sweeping =====================================================================================
class SerialExecutor(cf.Executor):
    """An ``Executor`` that runs each call at once in this process (for debugging and for
    checking that a pool gives the same frame)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        fut: cf.Future[Any] = cf.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller via the future
            fut.set_exception(exc)
        return fut


def _run_point(fn: Callable[..., Any], params: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    out = fn(**params, seed=seed)
    rows = out if isinstance(out, list) else [out]
    return [{**params, "seed": seed, **row} for row in rows]


def sweep(
    fn: Callable[..., Any],
    grid: dict[str, Sequence[Any]],
    seeds: Sequence[int],
    executor: cf.Executor | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run ``fn(**point, seed=s)`` for every point of ``grid`` and every seed.

    ``fn`` is a top-level function returning a dict (one row) or a list of dicts.
    ``executor``: any ``concurrent.futures.Executor`` (a Dask ``Client.get_executor()``
    works); ``None`` uses a ``ProcessPoolExecutor(max_workers=2)`` made and shut down here.
    Progress is a ``tqdm.auto`` bar.  Rows: grid order, then seed order.
    """
    from tqdm.auto import tqdm

    keys = list(grid)
    points = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]
    tasks = [(p, s) for p in points for s in seeds]
    own = executor is None
    pool: cf.Executor = cf.ProcessPoolExecutor(max_workers=2) if own else executor  # type: ignore[assignment]
    results: list[list[dict[str, Any]] | None] = [None] * len(tasks)
    try:
        futures = {pool.submit(_run_point, fn, p, s): i for i, (p, s) in enumerate(tasks)}
        bar = tqdm(
            cf.as_completed(futures),
            total=len(futures),
            desc=getattr(fn, "__name__", "sweep"),
            disable=not progress,
        )
        for fut in bar:
            results[futures[fut]] = fut.result()
    finally:
        if own:
            pool.shutdown()
    rows = [row for chunk in results if chunk is not None for row in chunk]
    return pd.DataFrame(rows)


def deterministic(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` without its measured ``wall_*`` columns (what must be equal across runs)."""
    return df[[c for c in df.columns if not str(c).startswith("wall_")]]


# == shared pieces ===================================================================================
def _base_config(**changes: Any) -> Config:
    return (
        Config()
        .replace(
            worker_count=4,
            task_timeout_s=0.25,
            timeout_check_interval_s=0.05,
            snapshot_interval_s=0.5,
            max_retry=5,
            wal_path="sim/wal.log",
            snapshot_path="sim/snapshot.json",
        )
        .replace(**changes)
    )


def _throughput(result: RunResult) -> float:
    """Completions per virtual second between the first submission and the last completion."""
    comps = result._completions
    if not comps:
        return 0.0
    span = comps[-1][0]
    return len(comps) / span if span > 0 else float("nan")


def _p(result: RunResult, q: float) -> float:
    lat = sorted(x[2] for x in result._completions)
    if not lat:
        return float("nan")
    k = max(0, min(len(lat) - 1, int(math.ceil(q / 100.0 * len(lat))) - 1))
    return lat[k]


# == 1. recovery time vs snapshot interval and WAL length =====================================
def recovery_point(
    snapshot_interval_s: float,
    crash_at_s: float = 2.0,
    seed: int = 0,
    rate_per_s: float = 2_000.0,
) -> dict[str, Any]:
    """One process crash at ``crash_at_s``; what recovery read and how long it took."""
    config = _base_config(snapshot_interval_s=snapshot_interval_s, worker_count=8)
    jobs = int(rate_per_s * (crash_at_s + 0.5))
    workload = Workload(jobs=jobs, rate_per_s=rate_per_s, mix=(JobKind(service_s_mean=0.002),))
    plan = FaultPlan(crash_at_s=((crash_at_s, "process"),))
    res = Simulation(config, plan, workload, seed).run()
    rec = res.recoveries().iloc[0]
    return {
        "records_read": int(rec["records_read"]),
        "snapshot_jobs": int(rec["snapshot_jobs"]),
        "snapshot_finished": int(rec["snapshot_finished"]),
        "recovery_s": float(rec["downtime_s"]),
        "lost": res.ledger["lost"],
        "wall_recovery_s": float(rec["wall_s"]),
    }


def recovery_vs_snapshot(
    intervals_s: Sequence[float] = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0),
    crash_at_s: Sequence[float] = (1.5, 3.0),
    seeds: Sequence[int] = (0, 1, 2),
    executor: cf.Executor | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Recovery time (virtual, cost model) and WAL records read vs the snapshot interval."""
    return sweep(
        recovery_point,
        {"snapshot_interval_s": list(intervals_s), "crash_at_s": list(crash_at_s)},
        seeds,
        executor,
        progress,
    )


# == 2. throughput and p95 latency vs commit policy and batch size ================================
def commit_point(
    commit_policy: str,
    batch_size: int = 100,
    batch_interval_s: float = 0.0,
    seed: int = 0,
    jobs: int = 4_000,
    rate_per_s: float = 20_000.0,
) -> dict[str, Any]:
    """A saturating load (16 fast workers) so the commit path is the bottleneck."""
    config = _base_config(
        commit_policy=commit_policy,
        batch_size=batch_size,
        batch_interval_s=batch_interval_s,
        worker_count=16,
        task_timeout_s=5.0,
    )
    workload = Workload(jobs=jobs, rate_per_s=rate_per_s, mix=(JobKind(service_s_mean=0.0005),))
    res = Simulation(config, FaultPlan(), workload, seed).run()
    led = res.ledger
    return {
        "throughput_jobs_per_s": _throughput(res),
        "p50_latency_s": _p(res, 50),
        "p95_latency_s": _p(res, 95),
        "fsyncs": led["fsyncs"],
        "records_per_fsync": led["records"] / led["fsyncs"] if led["fsyncs"] else float("nan"),
        "completed": led["completed"],
    }


def commit_policy_throughput(
    batch_sizes: Sequence[int] = (1, 10, 100),
    batch_interval_s: float = 0.001,
    seeds: Sequence[int] = (0, 1),
    executor: cf.Executor | None = None,
    progress: bool = True,
    jobs: int = 4_000,
) -> pd.DataFrame:
    """``always`` and ``never`` once each, ``batch`` with the leader/follower default
    (``batch_interval_s = 0``) and with a wait of ``batch_interval_s`` for each batch size."""
    frames = [
        sweep(
            commit_point,
            {"commit_policy": ["always", "never"], "jobs": [jobs]},
            seeds,
            executor,
            progress,
        ),
        sweep(
            commit_point,
            {
                "commit_policy": ["batch"],
                "batch_size": list(batch_sizes),
                "batch_interval_s": [0.0, batch_interval_s],
                "jobs": [jobs],
            },
            seeds,
            executor,
            progress,
        ),
    ]
    df = pd.concat(frames, ignore_index=True)
    df["batch_size"] = df["batch_size"].fillna(0).astype(int)
    df["batch_interval_s"] = df["batch_interval_s"].fillna(0.0)
    return df


# == 3. acknowledged loss vs commit policy under power loss ==========================================
def loss_point(
    commit_policy: str,
    seed: int = 0,
    power_losses: int = 3,
    jobs: int = 3_000,
    rate_per_s: float = 1_500.0,
) -> dict[str, Any]:
    """``power_losses`` power failures spread over the run; what acknowledged work is gone."""
    config = _base_config(commit_policy=commit_policy, snapshot_interval_s=0.5)
    span = jobs / rate_per_s
    times = tuple(((i + 1) * span / (power_losses + 1), "power") for i in range(power_losses))
    workload = Workload(jobs=jobs, rate_per_s=rate_per_s, mix=(JobKind(service_s_mean=0.002),))
    res = Simulation(config, FaultPlan(crash_at_s=times), workload, seed).run()
    led = res.ledger
    return {
        "acknowledged": led["acknowledged"],
        "lost": led["lost"],
        "lost_enqueued": led["lost_enqueued"],
        "lost_completions": led["lost_completions"],
        "duplicated": led["duplicated"],
        "loss_window_s_max": led["loss_window_s_max"],
        "unsynced_at_crash_max": max((c["unsynced_records"] for c in res._crashes), default=0),
    }


def loss_under_power_failure(
    policies: Sequence[str] = ("always", "batch", "never"),
    seeds: Sequence[int] = (0, 1, 2, 3),
    executor: cf.Executor | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Acknowledged jobs lost per policy: zero for ``always``/``batch``, measured for ``never``."""
    return sweep(loss_point, {"commit_policy": list(policies)}, seeds, executor, progress)


# == 4. slow and stuck workers vs task_timeout ==========================================================
def workers_point(
    task_timeout_s: float,
    fault: str = "stuck",
    seed: int = 0,
    jobs: int = 3_000,
    rate_per_s: float = 1_800.0,
) -> dict[str, Any]:
    """A quarter of the workers slow (20x) or stuck; how the timeout trades retries for
    rescued jobs."""
    if fault == "slow":
        plan = FaultPlan(slow_worker_fraction=0.25, slow_factor=20.0)
    elif fault == "stuck":
        plan = FaultPlan(stuck_worker_fraction=0.25)
    elif fault == "none":
        plan = FaultPlan()
    else:
        raise ValueError(f"fault={fault!r} is not 'slow', 'stuck' or 'none'")
    config = _base_config(task_timeout_s=task_timeout_s, timeout_check_interval_s=0.01)
    workload = Workload(jobs=jobs, rate_per_s=rate_per_s, mix=(JobKind(service_s_mean=0.002),))
    res = Simulation(config, plan, workload, seed).run()
    led = res.ledger
    return {
        "throughput_jobs_per_s": _throughput(res),
        "p95_latency_s": _p(res, 95),
        "completed": led["completed"],
        "dead": led["dead"],
        "timeouts": led["timeouts"],
        "late_acks": led["late_acks"],
        "duplicated": led["duplicated"],
    }


def workers_vs_timeout(
    timeouts_s: Sequence[float] = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2),
    faults: Sequence[str] = ("slow", "stuck"),
    seeds: Sequence[int] = (0, 1),
    executor: cf.Executor | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Throughput, dead letters and late ACKs under slow or stuck workers vs task_timeout."""
    return sweep(
        workers_point,
        {"fault": list(faults), "task_timeout_s": list(timeouts_s)},
        seeds,
        executor,
        progress,
    )


# == 5. time to drain a backlog after a crash ============================================================
def drain_point(
    utilization: float,
    downtime_s: float = 0.5,
    seed: int = 0,
    crash_at_s: float = 1.0,
) -> dict[str, Any]:
    """A crash at ``crash_at_s`` that keeps the queue down ``downtime_s`` (the fixed recovery
    cost); arrivals pile up.  Drain time: from the crash until the backlog is gone (pending
    back to its level just before the crash)."""
    workers, service_s = 4, 0.002
    rate = utilization * workers / service_s
    config = _base_config(worker_count=workers, recovery_cost_fixed_s=downtime_s)
    jobs = int(rate * (crash_at_s + downtime_s + 3.0))
    workload = Workload(
        jobs=jobs,
        rate_per_s=rate,
        mix=(JobKind(service_s_mean=service_s),),
        sample_interval_s=0.01,
    )
    res = Simulation(config, FaultPlan(crash_at_s=((crash_at_s, "process"),)), workload, seed).run()
    depth = res.depth()
    before = depth[depth["t"] < crash_at_s]
    baseline = float(before["pending"].tail(20).mean()) if len(before) else 0.0
    after = depth[(depth["t"] > crash_at_s + downtime_s) & (depth["up"])]
    peak = int(after["pending"].max()) if len(after) else 0
    drained = after[after["pending"] <= max(baseline * 1.5, 5)]
    t_drained = float(drained["t"].iloc[0]) if len(drained) else float("nan")
    return {
        "rate_per_s": rate,
        "backlog_peak": peak,
        "baseline_pending": baseline,
        "drain_s": t_drained - crash_at_s,
        "drain_after_up_s": t_drained - crash_at_s - downtime_s,
        "lost": res.ledger["lost"],
    }


def drain_after_crash(
    utilizations: Sequence[float] = (0.3, 0.5, 0.7, 0.8, 0.9),
    downtimes_s: Sequence[float] = (0.25, 0.5),
    seeds: Sequence[int] = (0, 1),
    executor: cf.Executor | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Time to drain the backlog a crash leaves vs utilisation: ~downtime * u / (1 - u)."""
    return sweep(
        drain_point,
        {"downtime_s": list(downtimes_s), "utilization": list(utilizations)},
        seeds,
        executor,
        progress,
    )
