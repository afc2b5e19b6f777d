"""Lessons 08 and 09 helpers: the SimPy harness's results as tables, figures and a stepper.

Owns: ``summary_text`` (a run's one-line summary without its wall-clock part),
``ledger_table`` (runs side by side in Jepsen's terms), ``trace_hash`` (a short digest of a
run's trace), ``crash_kind_table`` (one crash, process vs power loss, under two commit
policies), ``recoveries_table`` (what each recovery read, wall time dropped),
``plot_timeline`` (throughput and queue depth over a run, crashes and recoveries marked),
``event_text`` and ``trace_stepper`` (a short run advanced one SimPy event at a time with
``phase1.lessons.stepper``, redrawing the real core, the WAL tail and ``durable_seq``).

Must not know: how the harness decides anything.  Everything here calls the public
``Simulation`` / ``RunResult`` API and formats what it returns.

Invariant: every value returned or printed is a pure function of the inputs and the seed
(virtual time only; the harness's ``wall_*`` measurements are dropped), so nbval can
compare it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from phase1.config import Config
from phase1.lessons.stepper import Action, Scenario, Stepper
from phase1.lessons.views import state_text
from phase1.sim.harness import FaultPlan, JobKind, RunResult, Simulation, Workload
from phase1.wal import read_wal

__all__ = [
    "LEDGER_COLUMNS",
    "summary_text",
    "ledger_table",
    "trace_hash",
    "crash_kind_table",
    "recoveries_table",
    "plot_timeline",
    "event_text",
    "short_run_inputs",
    "TraceWorld",
    "trace_stepper",
]

#: The ledger's columns shown by ``ledger_table`` (Jepsen's terms first).
LEDGER_COLUMNS = (
    "acknowledged",
    "ok",
    "lost",
    "duplicated",
    "unexpected",
    "recovered",
    "unfinished",
    "dead",
    "crashes",
    "power_losses",
    "timeouts",
    "late_acks",
)


# == text and tables ========================================================================
def summary_text(result: RunResult) -> str:
    """``RunResult.summary()`` without ``jobs/wall-s=...`` (measured, so never the same)."""
    return result.summary().split(" jobs/wall-s=")[0]


def ledger_table(
    results: Mapping[str, RunResult], columns: Sequence[str] = LEDGER_COLUMNS
) -> pd.DataFrame:
    """One row per named run, the ledger's counts as columns (``policy`` first)."""
    rows = {}
    for name, result in results.items():
        rows[name] = {"policy": result.ledger["policy"], **{c: result.ledger[c] for c in columns}}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "run"
    return frame


def trace_hash(result: RunResult) -> str:
    """The first 16 hex digits of the SHA-256 of the run's trace (one line per event)."""
    digest = hashlib.sha256("\n".join(result.trace).encode("utf-8")).hexdigest()
    return digest[:16]


def recoveries_table(result: RunResult) -> pd.DataFrame:
    """Per crash: its kind, virtual downtime and what recovery read (no wall time)."""
    df = result.recoveries()
    cols = [
        *("crash", "t", "kind", "downtime_s", "snapshot_jobs", "records_read"),
        *("torn_bytes", "requeued", "lost_enqueued", "lost_completions"),
    ]
    if not len(df):
        return pd.DataFrame(columns=cols)
    return df[cols].set_index("crash")


def crash_kind_table(
    base: tuple[Config, FaultPlan, Workload],
    seed: int,
    crash_at_s: float = 1.0,
    policies: Sequence[str] = ("batch", "never"),
) -> pd.DataFrame:
    """One crash at ``crash_at_s``, a process crash vs a power loss, under each policy.

    ``base`` is a scenario's ``(config, plan, workload)``; only its config and workload are
    used (the plan is replaced by the one crash).  One row per (policy, kind).
    """
    config, _plan, workload = base
    rows = []
    for policy in policies:
        for kind in ("process", "power"):
            plan = FaultPlan(crash_at_s=((crash_at_s, kind),))
            res = Simulation(config.replace(commit_policy=policy), plan, workload, seed).run()
            crash = res.crashes().iloc[0]
            led = res.ledger
            rows.append(
                {
                    "policy": policy,
                    "crash": kind,
                    "unsynced_at_crash": int(crash["unsynced_records"]),
                    "acknowledged": led["acknowledged"],
                    "lost": led["lost"],
                    "duplicated": led["duplicated"],
                    "recovered": led["recovered"],
                }
            )
    return pd.DataFrame(rows)


# == the timeline figure ======================================================================
_KIND_COLOR = {"process": "tab:purple", "power": "tab:red"}
_KIND_LABEL = {"process": "process crash", "power": "power loss"}


def plot_timeline(result: RunResult, bucket_s: float | None = None) -> Figure:
    """Two panels over virtual time: completed jobs per second, and pending jobs; every
    crash a vertical line (purple: process, red: power loss) and every recovery's downtime
    shaded until the queue is up again."""
    fig = Figure(figsize=(8.0, 4.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    tp = result.throughput(bucket_s)
    top.step(tp["t"], tp["jobs_per_s"], where="post", color="tab:blue")
    depth = result.depth()
    bottom.plot(depth["t"], depth["pending"], color="tab:green", label="pending")
    bottom.plot(depth["t"], depth["in_flight"], color="tab:orange", label="in flight")
    seen: set[str] = set()
    for rec in result.recoveries().itertuples():
        label = None if rec.kind in seen else _KIND_LABEL[rec.kind]
        seen.add(rec.kind)
        for ax in (top, bottom):
            color = _KIND_COLOR[rec.kind]
            ax.axvline(rec.t, color=color, alpha=0.6, linewidth=1, label=label)
            label = None  # the legend (top panel) names each kind once
            ax.axvspan(rec.t, rec.t + rec.downtime_s, color="gray", alpha=0.3)
    top.set_ylabel("completed / s")
    top.set_title(
        f"seed {result.seed}: {result.ledger['crashes']} crashes "
        f"({result.ledger['power_losses']} power losses), lost {result.ledger['lost']}"
    )
    if seen:
        top.legend(loc="lower right", fontsize=8)
    bottom.set_ylabel("jobs")
    bottom.set_xlabel("virtual time (s)")
    bottom.legend(loc="upper right", fontsize=8)
    return fig


# == stepping through a run's trace =============================================================
def event_text(event: Sequence[Any]) -> str:
    """One trace event as text: ``t=1.234ms deliver j000001 worker=0 attempt=1``."""
    t, name, *rest = event
    names = _EVENT_FIELDS.get(name, ())
    parts = [f"{n}={v}" if n else str(v) for n, v in zip(names, rest, strict=False)]
    parts.extend(str(v) for v in rest[len(names) :])
    return " ".join([f"t={t * 1000:.3f}ms", name, *parts])


_EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "submit": ("",),
    "acked": ("", "seq"),
    "fsync": ("durable_upto",),
    "deliver": ("", "worker", "attempt"),
    "done": ("", "worker", "attempt", "ok"),
    "completed": ("", "attempt"),
    "crash": ("#", "kind", "appended_seq", "durable_seq"),
    "recover": ("#", "records_read", "snapshot_jobs", "last_seq"),
    "up": ("epoch",),
    "hang": ("", "worker"),
    "cancelled": ("", "worker", "attempt"),
    "timeout": ("", "attempt"),
    "retry": ("", "attempt", "cause"),
    "late": ("", "attempt", "kind"),
    "dead": ("", "reason"),
    "snapshot_start": ("last_seq", "jobs"),
    "snapshot": ("last_seq", "jobs"),
    "worker_died": ("worker",),
    "worker_restarted": ("worker",),
}


def short_run_inputs(
    jobs: int = 5, crash_at_s: float | None = 0.0045, crash_kind: str = "process"
) -> tuple[Config, FaultPlan, Workload]:
    """A run short enough to read event by event: 2 workers, ``jobs`` jobs at 500/s (2 ms of
    work each), batch commit, no snapshot during the run, one crash at ``crash_at_s``."""
    config = Config().replace(
        worker_count=2,
        task_timeout_s=0.05,
        timeout_check_interval_s=0.01,
        snapshot_interval_s=60.0,
        commit_policy="batch",
        wal_path="sim/wal.log",
        snapshot_path="sim/snapshot.json",
    )
    crashes = () if crash_at_s is None else ((crash_at_s, crash_kind),)
    workload = Workload(
        jobs=jobs, rate_per_s=500.0, mix=(JobKind(service_s_mean=0.002, service_dist="fixed"),)
    )
    return config, FaultPlan(crash_at_s=crashes, fsync_latency_dist="fixed"), workload


class TraceWorld:
    """One live ``Simulation`` advanced by hand: ``advance()`` processes SimPy events until
    the run's trace grows (one callback of the harness, which may log several events).

    It starts the run with ``run(until_s=0.0)`` (which schedules producers, crashes and
    loops, then stops at t=0) and then calls ``env.step()``; the harness's ``run`` checks
    nothing else, so the events and the trace are those of an uninterrupted run.
    """

    def __init__(self, inputs: tuple[Config, FaultPlan, Workload], seed: int) -> None:
        config, plan, workload = inputs
        self.sim = Simulation(config, plan, workload, seed)
        self.sim.run(until_s=0.0)
        self.shown = 0  # trace events already shown by a step

    @property
    def finished(self) -> bool:
        trace = self.sim.trace_events
        return bool(trace) and trace[-1][1] == "drained"

    def advance(self, max_events: int = 100_000) -> list[tuple[Any, ...]]:
        """Run SimPy events until new trace events appear; return them."""
        sim = self.sim
        trace = sim.trace_events
        for _ in range(max_events):
            if len(trace) > self.shown or self.finished:
                break
            sim.env.step()
        new = trace[self.shown :]
        self.shown = len(trace)
        return list(new)

    def state(self) -> str:
        """The state a step redraws: time, up or down, the real core, WAL tail, durable_seq."""
        sim = self.sim
        core, writer = sim.core, sim.writer
        now = sim.env.now
        note = f"t={now * 1000:.3f}ms  " + ("DOWN (recovering)" if self.down else "up")
        wal = read_wal(sim.disk, sim.config.wal_path).records if core is not None else []
        return state_text(
            core,
            wal=wal,
            durable_seq=writer.durable_seq if writer is not None else None,
            now_s=now,
            note=note,
        )

    @property
    def down(self) -> bool:
        """Crashed and not yet ``up`` again (recovery's virtual downtime is running)."""
        trace = self.sim.trace_events
        crashes = [i for i, e in enumerate(trace) if e[1] == "crash"]
        return bool(crashes) and not any(e[1] == "up" for e in trace[crashes[-1] :])


def _groups(inputs: tuple[Config, FaultPlan, Workload], seed: int) -> list[list[str]]:
    """The trace of the run, grouped as ``TraceWorld.advance`` returns it (a dry run)."""
    world = TraceWorld(inputs, seed)
    groups = []
    while not world.finished:
        new = world.advance()
        if not new:
            break
        groups.append([event_text(e) for e in new])
    return groups


def trace_stepper(
    inputs: tuple[Config, FaultPlan, Workload] | None = None, seed: int = 42
) -> Stepper:
    """A ``Stepper`` over a short run (``short_run_inputs()`` by default): each step runs
    the harness until its trace grows and shows the real core, WAL tail and durable_seq.

    The labels come from a dry run of the same inputs and seed (the same seed gives the
    same trace), so the widget can say what happens next.
    """
    inputs = inputs if inputs is not None else short_run_inputs()
    labels = [" | ".join(g) for g in _groups(inputs, seed)]

    def setup() -> Scenario:
        world = TraceWorld(inputs, seed)

        def act() -> str:
            world.advance()
            return ""

        return Scenario([Action(label, act) for label in labels], world.state, world)

    return Stepper(setup, title=f"short run, seed {seed}")
