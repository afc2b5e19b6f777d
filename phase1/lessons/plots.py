"""Plots for the simulation: one helper per experiment frame and per run.

Owns: ``plot_recovery_vs_snapshot``, ``plot_commit_policy``, ``plot_loss``,
``plot_workers_vs_timeout``, ``plot_drain`` (the frames ``phase1.sim.experiments``
returns) and ``plot_run_throughput`` / ``plot_run_depth`` / ``plot_run_latency`` (one
``RunResult``).  Each returns the ``Figure`` (never ``plt.show()``); ``close(fig)`` frees it.

Must not know: how the numbers were produced.  Figures use the object API
(``matplotlib.figure.Figure``), so no global pyplot state leaks between cells or threads.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure

__all__ = [
    "plot_recovery_vs_snapshot",
    "plot_commit_policy",
    "plot_loss",
    "plot_workers_vs_timeout",
    "plot_drain",
    "plot_run_throughput",
    "plot_run_depth",
    "plot_run_latency",
    "close",
]


def _fig(ncols: int = 1, width: float = 6.0) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width * ncols, 3.6), layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, axes


def close(fig: Figure) -> None:
    """Release a figure's memory (object-API figures are not tracked by pyplot)."""
    fig.clear()


def _mean_by(df: pd.DataFrame, keys: list[str], cols: list[str]) -> pd.DataFrame:
    return df.groupby(keys, sort=True)[cols].mean().reset_index()


def plot_recovery_vs_snapshot(df: pd.DataFrame) -> Figure:
    """Left: virtual recovery time vs snapshot interval (one line per crash time).
    Right: recovery time vs WAL records replayed (every run)."""
    fig, (a, b) = _fig(2)
    m = _mean_by(df, ["crash_at_s", "snapshot_interval_s"], ["recovery_s", "records_read"])
    for crash_at, part in m.groupby("crash_at_s"):
        a.plot(
            part["snapshot_interval_s"],
            part["recovery_s"] * 1000,
            marker="o",
            label=f"crash at {crash_at:g} s",
        )
    a.set_xscale("log")
    a.set_xlabel("snapshot interval (s)")
    a.set_ylabel("recovery time (ms, cost model)")
    a.set_title("Recovery time vs snapshot interval")
    a.legend()
    b.scatter(df["records_read"], df["recovery_s"] * 1000, s=12, alpha=0.7)
    b.set_xlabel("WAL records replayed")
    b.set_ylabel("recovery time (ms)")
    b.set_title("Recovery time vs WAL length")
    return fig


def _policy_label(row: pd.Series) -> str:
    if row["commit_policy"] != "batch":
        return str(row["commit_policy"])
    interval = row.get("batch_interval_s", 0.0) or 0.0
    if interval == 0:
        return f"batch n={int(row['batch_size'])}, no wait"
    return f"batch n={int(row['batch_size'])}, wait {interval * 1000:g} ms"


def plot_commit_policy(df: pd.DataFrame) -> Figure:
    """Throughput and p95 latency for each commit policy / batch setting (bars)."""
    d = df.copy()
    d["setting"] = d.apply(_policy_label, axis=1)
    m = d.groupby("setting", sort=False)[["throughput_jobs_per_s", "p95_latency_s"]].mean()
    fig, (a, b) = _fig(2)
    a.barh(m.index, m["throughput_jobs_per_s"], color="tab:blue")
    a.set_xlabel("throughput (jobs / virtual s)")
    a.set_title("Throughput by commit policy")
    b.barh(m.index, m["p95_latency_s"] * 1000, color="tab:orange")
    b.set_xscale("log")
    b.set_xlabel("p95 submit -> complete (ms, log)")
    b.set_title("p95 latency by commit policy")
    b.set_yticklabels([])
    return fig


def plot_loss(df: pd.DataFrame) -> Figure:
    """Acknowledged jobs lost after power losses, per policy (mean and every seed)."""
    fig, a = _fig(1)
    policies = list(dict.fromkeys(df["commit_policy"]))
    means = [df[df["commit_policy"] == p]["lost"].mean() for p in policies]
    a.bar(policies, means, color=["tab:green" if m == 0 else "tab:red" for m in means])
    for i, p in enumerate(policies):
        ys = df[df["commit_policy"] == p]["lost"]
        a.scatter([i] * len(ys), ys, color="black", s=10, zorder=3)
    for i, m in enumerate(means):
        a.annotate(f"{m:.0f}", (i, m), ha="center", va="bottom")
    a.set_ylabel("acknowledged jobs lost")
    a.set_title("Acknowledged loss under power failure")
    return fig


def plot_workers_vs_timeout(df: pd.DataFrame) -> Figure:
    """Throughput and dead letters vs task_timeout, one line per worker fault."""
    fig, (a, b) = _fig(2)
    m = _mean_by(df, ["fault", "task_timeout_s"], ["throughput_jobs_per_s", "dead", "late_acks"])
    for fault, part in m.groupby("fault"):
        a.plot(
            part["task_timeout_s"] * 1000, part["throughput_jobs_per_s"], marker="o", label=fault
        )
        b.plot(part["task_timeout_s"] * 1000, part["dead"], marker="o", label=f"{fault}: dead")
        b.plot(
            part["task_timeout_s"] * 1000,
            part["late_acks"],
            marker="x",
            linestyle="--",
            label=f"{fault}: late ACKs",
        )
    for ax in (a, b):
        ax.set_xscale("log")
        ax.set_xlabel("task_timeout (ms)")
        ax.legend()
    a.set_ylabel("throughput (jobs / virtual s)")
    a.set_title("Throughput vs task_timeout")
    b.set_ylabel("jobs")
    b.set_title("Dead letters and late ACKs vs task_timeout")
    return fig


def plot_drain(df: pd.DataFrame) -> Figure:
    """Time to drain the backlog a crash leaves, vs utilisation (one line per downtime)."""
    fig, a = _fig(1)
    m = _mean_by(df, ["downtime_s", "utilization"], ["drain_after_up_s", "backlog_peak"])
    for downtime, part in m.groupby("downtime_s"):
        a.plot(
            part["utilization"], part["drain_after_up_s"], marker="o", label=f"down {downtime:g} s"
        )
        u = part["utilization"]
        a.plot(u, downtime * u / (1 - u), linestyle=":", color="gray")
    a.set_xlabel("utilisation (arrival rate / capacity)")
    a.set_ylabel("drain time after restart (s)")
    a.set_title("Backlog drain after a crash (dotted: downtime * u / (1 - u))")
    a.legend()
    return fig


def _crash_lines(ax: Any, result: Any) -> None:
    crashes = result.crashes()
    for i, row in enumerate(crashes.itertuples()):
        ax.axvline(
            row.t,
            color="red" if row.kind == "power" else "purple",
            alpha=0.5,
            linewidth=1,
            label=("power loss" if row.kind == "power" else "process crash") if i < 2 else None,
        )


def plot_run_throughput(result: Any, bucket_s: float | None = None) -> Figure:
    """Completions per virtual second over the run, crashes marked."""
    fig, a = _fig(1, 7.0)
    tp = result.throughput(bucket_s)
    a.step(tp["t"], tp["jobs_per_s"], where="post")
    _crash_lines(a, result)
    a.set_xlabel("virtual time (s)")
    a.set_ylabel("completed jobs / s")
    a.set_title(f"Throughput (seed {result.seed})")
    handles, labels = a.get_legend_handles_labels()
    if labels:
        a.legend()
    return fig


def plot_run_depth(result: Any) -> Figure:
    """Pending and in-flight jobs over the run, crashes marked."""
    fig, a = _fig(1, 7.0)
    d = result.depth()
    a.plot(d["t"], d["pending"], label="pending")
    a.plot(d["t"], d["in_flight"], label="in flight")
    _crash_lines(a, result)
    a.set_xlabel("virtual time (s)")
    a.set_ylabel("jobs")
    a.set_title(f"Queue depth (seed {result.seed})")
    a.legend()
    return fig


def plot_run_latency(result: Any) -> Figure:
    """Submit -> complete latency: histogram with p50/p95/p99 marked."""
    fig, a = _fig(1, 7.0)
    lat = result.latencies()["latency_s"] * 1000
    if len(lat):
        a.hist(lat, bins=60, color="tab:blue", alpha=0.8)
        a.set_yscale("log")
        for q, style in ((0.5, "-"), (0.95, "--"), (0.99, ":")):
            v = lat.quantile(q)
            a.axvline(v, color="black", linestyle=style, label=f"p{int(q * 100)} {v:.2f} ms")
        a.legend()
    a.set_xlabel("submit -> complete (ms)")
    a.set_ylabel("jobs")
    a.set_title(f"Latency (seed {result.seed})")
    return fig
