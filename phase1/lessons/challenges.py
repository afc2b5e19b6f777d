"""Lesson 11 helpers: the seed's three challenges (priorities, delayed jobs, dependencies) on
the real ``QueueCore``, and what they do to recovery.

Owns:

* ``priority_jobs`` / ``dispatch_table`` / ``plot_dispatch_order`` (challenge 1: who is
  dispatched first, priority vs FIFO);
* ``DELAYED_JOBS`` / ``delay_stepper`` / ``delay_table`` (challenge 2: jobs dispatched only
  once due, on a ``ManualClock``);
* ``PIPELINE`` / ``graph_layout`` / ``draw_graph`` / ``waves_table`` / ``cascade_table``
  (challenge 3: a dependency graph, run in waves; a dead dependency cascading);
* ``pending_breakdown`` / ``dispatch_order`` (queries on a copy of a core: nothing taken);
* ``crash_and_recover`` / ``recovery_table`` / ``settle_cascade`` (a ``DurableQueue`` on a
  ``SimDisk`` crashed with delayed, blocked and in-flight jobs, then the real ``recover``).

Must not know: how the core orders or unblocks jobs (it only asks: ``dispatch``,
``pending_jobs``, ``state_of``, ``export``/``restore``).  Everything is virtual time and
in-memory disks, so every output is deterministic.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from phase1.clock import ManualClock
from phase1.config import Config
from phase1.core import QueueCore, Record, SendToWorker
from phase1.jobs import Job, JobState
from phase1.lessons.stepper import Action, Scenario, Stepper
from phase1.recovery import recover
from phase1.runtime.durable import DurableQueue
from phase1.sim.disk import SimDisk

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "T0",
    "priority_jobs",
    "dispatch_table",
    "plot_dispatch_order",
    "DELAYED_JOBS",
    "delay_stepper",
    "delay_table",
    "PIPELINE",
    "graph_layout",
    "draw_graph",
    "waves_table",
    "cascade_table",
    "pending_breakdown",
    "dispatch_order",
    "WORKLOADS",
    "RecoveryCase",
    "crash_and_recover",
    "recovery_table",
    "settle_cascade",
]

T0 = 1000.0  # virtual seconds at which every scenario starts


def _clone(core: QueueCore) -> QueueCore:
    return QueueCore.restore(
        core.export(), max_retry=core.max_retry, task_timeout_s=core.task_timeout_s
    )


def dispatch_order(core: QueueCore, now_s: float) -> list[str]:
    """The ids ``dispatch`` would hand out at ``now_s``, in order, if workers took every ready
    job (asked of a copy: ``core`` is unchanged)."""
    twin = _clone(core)
    order: list[str] = []
    while True:
        step = twin.dispatch(now_s, worker_id=1)
        if not step.effects:
            return order
        order.extend(e.job.id for e in step.effects if isinstance(e, SendToWorker))


def pending_breakdown(core: QueueCore, now_s: float) -> dict[str, list[str]]:
    """Pending ids split into ``ready`` (dispatch order), ``delayed`` and ``blocked`` (both in
    the core's pending order)."""
    ready = dispatch_order(core, now_s)
    blocked: list[str] = []
    delayed: list[str] = []
    for job in core.pending_jobs():
        if any(core.state_of(d) is not JobState.COMPLETED for d in job.depends_on):
            blocked.append(job.id)
        elif job.id not in ready:
            delayed.append(job.id)
    return {"ready": ready, "delayed": delayed, "blocked": blocked}


# == challenge 1: priorities ===============================================================
def priority_jobs(n: int = 8, seed: int = 42) -> list[Job]:
    """``n`` jobs ``task-01``.. with priorities drawn from ``random.Random(seed)`` (0-10)."""
    rng = random.Random(seed)
    return [Job(f"task-{i:02d}", priority=rng.randint(0, 10)) for i in range(1, n + 1)]


def dispatch_table(jobs: Sequence[Job], *, fifo: bool = False) -> pd.DataFrame:
    """Enqueue ``jobs`` in order into a fresh core and dispatch all: one row per job with
    its enqueue position, priority and dispatch position (``fifo``: priorities set to 0)."""
    core = QueueCore()
    batch = [j._replace(priority=0) if fifo else j for j in jobs]
    core.enqueue(batch, now_s=T0)
    order = dispatch_order(core, T0)
    rows = [
        {
            "job_id": j.id,
            "priority": j.priority,
            "enqueued": i + 1,
            "dispatched": order.index(j.id) + 1,
        }
        for i, j in enumerate(batch)
    ]
    return pd.DataFrame(rows).sort_values("dispatched").reset_index(drop=True)


def plot_dispatch_order(
    tables: dict[str, pd.DataFrame], axes: Sequence[Axes] | None = None
) -> Figure:
    """One panel per table: enqueue position (x) against dispatch position (y), each point
    labelled with its priority; the diagonal is FIFO."""
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axs = plt.subplots(1, len(tables), figsize=(4.2 * len(tables), 3.6), sharey=True)
        axes = list(axs) if len(tables) > 1 else [axs]
    else:
        fig = axes[0].get_figure()  # type: ignore[assignment]
    for ax, (title, table) in zip(axes, tables.items(), strict=True):
        n = len(table)
        ax.plot([1, n], [1, n], color="#bbbbbb", lw=1, ls="--", zorder=1)
        ax.scatter(
            table["enqueued"],
            table["dispatched"],
            c=table["priority"],
            cmap="viridis",
            vmin=0,
            vmax=10,
            s=60,
            zorder=2,
        )
        for _, row in table.iterrows():
            ax.annotate(
                f"p{row['priority']}",
                (row["enqueued"], row["dispatched"]),
                textcoords="offset points",
                xytext=(6, -3),
                fontsize=8,
            )
        ax.set_xlabel("enqueue position")
        ax.set_title(title)
        ax.invert_yaxis()
    axes[0].set_ylabel("dispatch position (1 = first)")
    fig.tight_layout()
    return fig


# == challenge 2: delayed jobs ==============================================================
DELAYED_JOBS: tuple[Job, ...] = (
    Job("report", scheduled_at=T0 + 3.0),
    Job("now-a"),
    Job("urgent-later", priority=9, scheduled_at=T0 + 5.0),
    Job("reminder", scheduled_at=T0 + 1.0),
    Job("now-b"),
)
"""Two jobs due at once, three delayed by 1, 3 and 5 s (the last one with priority 9)."""


@dataclass
class _DelayWorld:
    clock: ManualClock
    core: QueueCore
    log: list[tuple[float, str]] = field(default_factory=list)

    def tick(self) -> str:
        """Dispatch (and at once complete) every job ready now; then move on 1 s."""
        now = self.clock.now_s()
        sent = []
        while True:
            step = self.core.dispatch(now, worker_id=1)
            if not step.effects:
                break
            for e in step.effects:
                assert isinstance(e, SendToWorker)
                self.core.ack(e.job.id, e.attempt, now)
                sent.append(e.job.id)
                self.log.append((now - T0, e.job.id))
        self.clock.advance(1.0)
        return "dispatched " + (", ".join(sent) if sent else "nothing")

    def render(self) -> str:
        now = self.clock.now_s()
        parts = pending_breakdown(self.core, now)
        wake = self.core.next_wakeup_s()
        return "\n".join(
            [
                f"clock: T0+{now - T0:g}s",
                "delayed:   " + (", ".join(parts["delayed"]) or "-"),
                "ready:     " + (", ".join(parts["ready"]) or "-"),
                "completed: " + (", ".join(self.core.completed_ids()) or "-"),
                "next_wakeup_s: " + ("-" if wake is None else f"T0+{wake - T0:g}s"),
            ]
        )


def _delay_world(jobs: Sequence[Job]) -> _DelayWorld:
    clock = ManualClock(T0)
    core = QueueCore()
    core.enqueue(list(jobs), now_s=clock.now_s())
    return _DelayWorld(clock, core)


def delay_stepper(jobs: Sequence[Job] = DELAYED_JOBS, seconds: int = 6) -> Stepper:
    """One step per virtual second: dispatch whatever is due, complete it, advance 1 s."""

    def setup() -> Scenario:
        world = _delay_world(jobs)
        actions = [Action(f"T0+{s}s: dispatch what is due", world.tick) for s in range(seconds)]
        return Scenario(actions, world.render, world=world)

    return Stepper(setup, title="delayed jobs on a ManualClock")


def delay_table(jobs: Sequence[Job] = DELAYED_JOBS, seconds: int = 6) -> pd.DataFrame:
    """Each job: priority, when it was due and when it was dispatched (seconds after T0)."""
    world = _delay_world(jobs)
    for _ in range(seconds):
        world.tick()
    when = {job_id: t for t, job_id in world.log}
    rows = [
        {
            "job_id": j.id,
            "priority": j.priority,
            "due_s": 0.0 if j.scheduled_at is None else j.scheduled_at - T0,
            "dispatched_s": when.get(j.id),
            "position": [job_id for _, job_id in world.log].index(j.id) + 1,
        }
        for j in jobs
    ]
    return pd.DataFrame(rows).sort_values("position").reset_index(drop=True)


# == challenge 3: dependencies ==============================================================
PIPELINE: tuple[Job, ...] = (
    Job("fetch"),
    Job("cleanup"),
    Job("parse", depends_on=("fetch",)),
    Job("index", depends_on=("parse",)),
    Job("thumbnail", depends_on=("parse",)),
    Job("publish", depends_on=("index", "thumbnail")),
    Job("report", depends_on=("publish",)),
)
"""A small pipeline: fetch -> parse -> {index, thumbnail} -> publish -> report, and an
independent cleanup."""


def graph_layout(jobs: Iterable[Job]) -> dict[str, tuple[float, float]]:
    """Deterministic positions: x = the job's depth (longest chain of dependencies before
    it), y = its rank within that depth (ids sorted), centred on 0."""
    by_id = {j.id: j for j in jobs}
    depth: dict[str, int] = {}

    def depth_of(job_id: str, seen: frozenset[str] = frozenset()) -> int:
        if job_id in depth:
            return depth[job_id]
        if job_id in seen:
            raise ValueError(f"dependency cycle through {job_id!r}")
        deps = [d for d in by_id[job_id].depends_on if d in by_id]
        d = 1 + max((depth_of(x, seen | {job_id}) for x in deps), default=-1)
        depth[job_id] = d
        return d

    for job_id in sorted(by_id):
        depth_of(job_id)
    layers: dict[int, list[str]] = {}
    for job_id in sorted(by_id):
        layers.setdefault(depth[job_id], []).append(job_id)
    pos: dict[str, tuple[float, float]] = {}
    for d, ids in layers.items():
        for rank, job_id in enumerate(ids):
            pos[job_id] = (float(d), (len(ids) - 1) / 2.0 - rank)
    return dict(sorted(pos.items()))


_STATE_COLORS = {
    "pending": "#dfe8f5",
    "blocked": "#eeeeee",
    "in_flight": "#ffe0a3",
    "completed": "#cde8b5",
    "dead": "#f4b4b4",
}


def draw_graph(
    jobs: Sequence[Job],
    states: dict[str, str] | None = None,
    ax: Axes | None = None,
    title: str = "",
) -> Figure:
    """The dependency graph (an arrow from each dependency to the job waiting on it), boxes
    coloured by ``states`` (job id -> pending / blocked / in_flight / completed / dead)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    pos = graph_layout(jobs)
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 3.2))
    else:
        fig = ax.get_figure()  # type: ignore[assignment]
    for job in jobs:
        for dep in job.depends_on:
            if dep in pos:
                ax.annotate(
                    "",
                    xy=pos[job.id],
                    xytext=pos[dep],
                    arrowprops={
                        "arrowstyle": "-|>",
                        "color": "#555555",
                        "shrinkA": 24,
                        "shrinkB": 24,
                    },
                    zorder=1,
                )
    for job_id, (x, y) in pos.items():
        state = (states or {}).get(job_id, "pending")
        ax.text(
            x,
            y,
            job_id,
            ha="center",
            va="center",
            fontsize=10,
            zorder=3,
            bbox={
                "boxstyle": "round,pad=0.4",
                "fc": _STATE_COLORS.get(state, "white"),
                "ec": "#333333",
            },
        )
    xs = [x for x, _ in pos.values()]
    ys = [y for _, y in pos.values()]
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.7)
    ax.axis("off")
    if states:
        used = sorted(set(states.values()), key=list(_STATE_COLORS).index)
        handles = [Rectangle((0, 0), 1, 1, fc=_STATE_COLORS[s], ec="#333333") for s in used]
        ax.legend(handles, used, loc="lower right", fontsize=8, frameon=False)
    if title:
        ax.set_title(title)
    return fig


def _states(core: QueueCore, jobs: Sequence[Job]) -> dict[str, str]:
    out = {}
    blocked = set(pending_breakdown(core, T0)["blocked"])
    for j in jobs:
        state = core.state_of(j.id)
        name = state.value if state is not None else "unknown"
        out[j.id] = "blocked" if j.id in blocked else name
    return out


def waves_table(
    jobs: Sequence[Job] = PIPELINE, fail: Iterable[str] = (), max_retry: int = 2
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Run ``jobs`` in waves: each wave dispatches every ready job (one worker each), then
    completes them, except those in ``fail``, which fail every attempt.  Returns one row
    per wave (dispatched, completed, dead after it) and the final states by job."""
    failing = set(fail)
    core = QueueCore(max_retry=max_retry)
    core.enqueue(list(jobs), now_s=T0)
    rows = []
    wave = 0
    while True:
        wave += 1
        sends: list[SendToWorker] = []
        worker = 0
        while True:
            worker += 1
            step = core.dispatch(T0 + wave, worker_id=worker)
            if not step.effects:
                break
            sends.extend(e for e in step.effects if isinstance(e, SendToWorker))
        if not sends:
            break
        dead_before = set(core.dead_reasons())
        for s in sends:
            if s.job.id in failing:
                core.fail(s.job.id, s.attempt, T0 + wave, reason="handler failed")
            else:
                core.ack(s.job.id, s.attempt, T0 + wave)
        rows.append(
            {
                "wave": wave,
                "dispatched": ", ".join(s.job.id for s in sends),
                "completed": ", ".join(
                    s.job.id for s in sends if core.state_of(s.job.id) is JobState.COMPLETED
                ),
                "dead": ", ".join(d for d in core.dead_reasons() if d not in dead_before),
            }
        )
    core.check()
    return pd.DataFrame(rows), _states(core, jobs)


def cascade_table(
    jobs: Sequence[Job] = PIPELINE, fail: str = "parse", max_retry: int = 2
) -> pd.DataFrame:
    """The dead-letter set after ``fail`` fails every attempt: id and reason, in the order
    the core wrote the DEAD records."""
    core = QueueCore(max_retry=max_retry)
    core.enqueue(list(jobs), now_s=T0)
    for k in range(1, 20):
        step = core.dispatch(T0 + k, worker_id=1)
        if not step.effects:
            break
        for e in step.effects:
            assert isinstance(e, SendToWorker)
            if e.job.id == fail:
                core.fail(e.job.id, e.attempt, T0 + k, reason="handler failed")
            else:
                core.ack(e.job.id, e.attempt, T0 + k)
    rows = [{"job_id": j, "reason": r} for j, r in core.dead_reasons().items()]
    return pd.DataFrame(rows, columns=["job_id", "reason"])


# == what they do to recovery ===============================================================
def _sim_config(**changes: Any) -> Config:
    return Config().replace(wal_path="data/wal.log", snapshot_path="data/snapshot.json", **changes)


@dataclass(frozen=True)
class RecoveryCase:
    """A crash and its recovery: what the live queue held, what recovery rebuilt."""

    name: str
    before: dict[str, list[str]]  # ready / delayed / blocked at the crash, plus in_flight
    at_crash: dict[str, list[str]]  # the recovered core, asked at the crash's time
    after: dict[str, list[str]]  # the recovered core at restart (after the downtime)
    records: int  # WAL records written before the crash
    replayed: int
    requeued: list[str]
    settle: tuple[Record, ...]
    next_dispatches: list[str]  # what the recovered queue dispatches first (at restart)

    def kept(self, part: str) -> bool:
        """``part`` (ready / delayed / blocked) survived in the same order, re-queued jobs
        aside (asked at the crash's time, so that jobs due during the downtime count)."""
        return [j for j in self.at_crash[part] if j not in self.requeued] == self.before[part]


def _workload(name: str) -> list[Job]:
    base = [Job(f"job-{i}") for i in range(1, 7)]
    if name == "FIFO only":
        return base
    if name == "priorities":
        return [j._replace(priority=p) for j, p in zip(base, (0, 5, 9, 5, 0, 9), strict=True)]
    if name == "delayed":
        return [
            j._replace(scheduled_at=T0 + d) if d else j
            for j, d in zip(base, (0, 0, 30, 10, 0, 60), strict=True)
        ]
    if name == "dependencies":
        return list(PIPELINE)
    if name == "all three":
        return [
            Job("fetch", priority=5),
            Job("mail"),
            Job("cleanup", scheduled_at=T0 + 30),
            Job("parse", priority=5, depends_on=("fetch",)),
            Job("index", priority=9, depends_on=("parse",)),
            Job("thumbnail", depends_on=("parse",)),
            Job("nightly", priority=9, scheduled_at=T0 + 60),
            Job("publish", depends_on=("index", "thumbnail")),
        ]
    raise ValueError(f"unknown workload {name!r}")


WORKLOADS = ("FIFO only", "priorities", "delayed", "dependencies", "all three")


def crash_and_recover(
    name: str = "all three",
    *,
    snapshot: bool = False,
    downtime_s: float = 5.0,
    jobs: Sequence[Job] | None = None,
) -> RecoveryCase:
    """Run workload ``name`` on a ``DurableQueue`` (``SimDisk``, ``ManualClock`` at T0):
    enqueue, dispatch two jobs and complete the first, (``snapshot``: take one), dispatch
    one more; then a power failure (every unsynced byte lost) and, ``downtime_s`` later,
    the real ``recover``.  The first job stays in flight across the crash."""
    disk = SimDisk()
    clock = ManualClock(T0)
    config = _sim_config(commit_policy="always", task_timeout_s=30.0)
    queue = DurableQueue(config, disk=disk, clock=clock)
    queue.submit(list(jobs) if jobs is not None else _workload(name))
    clock.advance(1.0)
    first = queue.dispatch(worker_id=1).effects
    second = queue.dispatch(worker_id=2).effects
    if second:
        s = second[0]
        assert isinstance(s, SendToWorker)
        queue.ack(s.job.id, s.attempt)
    if snapshot:
        queue.snapshot()
    clock.advance(1.0)
    queue.dispatch(worker_id=3)
    core = queue.core
    now = clock.now_s()
    before = pending_breakdown(core, now)
    before["in_flight"] = sorted(core.in_flight())
    records = core.last_seq
    del first
    disk.crash("power")  # the process and its memory are gone; synced bytes stay

    clock.advance(downtime_s)
    recovered, report = recover(disk, config, now_s=clock.now_s())
    return RecoveryCase(
        name=name,
        before=before,
        at_crash=pending_breakdown(recovered, now),
        after=pending_breakdown(recovered, clock.now_s()),
        records=records,
        replayed=report.records_replayed,
        requeued=[r.job_id for r in report.settle_records if r.type == "RETRY"],
        settle=report.settle_records,
        next_dispatches=dispatch_order(recovered, clock.now_s()),
    )


def recovery_table(workloads: Sequence[str] = WORKLOADS, *, snapshot: bool = False) -> pd.DataFrame:
    """One row per workload: records written, replayed, re-queued, and whether the ready
    order, the delayed set and the blocked set survived the crash."""
    rows = []
    for name in workloads:
        case = crash_and_recover(name, snapshot=snapshot)
        rows.append(
            {
                "workload": name,
                "wal_records": case.records,
                "replayed": case.replayed,
                "requeued": ", ".join(case.requeued),
                "ready_kept": case.kept("ready"),
                "delayed_kept": case.kept("delayed"),
                "blocked_kept": case.kept("blocked"),
                "first_after_restart": ", ".join(case.next_dispatches[:3]),
            }
        )
    return pd.DataFrame(rows)


def settle_cascade(max_retry: int = 2) -> RecoveryCase:
    """``parse`` is in flight on its last attempt when the process dies: recovery's
    ``settle`` dead-letters it (max_retry reached) and, by the cascade, everything that
    depends on it."""
    disk = SimDisk()
    clock = ManualClock(T0)
    config = _sim_config(commit_policy="always", task_timeout_s=30.0, max_retry=max_retry)
    queue = DurableQueue(config, disk=disk, clock=clock)
    queue.submit(list(PIPELINE))
    done: set[str] = set()
    while True:  # complete fetch and cleanup; parse fails until its last attempt flies
        clock.advance(1.0)
        step = queue.dispatch(worker_id=1)
        if not step.effects:
            break
        send = step.effects[0]
        assert isinstance(send, SendToWorker)
        if send.job.id != "parse":
            queue.ack(send.job.id, send.attempt)
            done.add(send.job.id)
        elif send.attempt < max_retry:
            queue.fail(send.job.id, send.attempt, reason="handler failed")
        else:
            break  # attempt max_retry of parse is in flight: crash now
    now = clock.now_s()
    before = pending_breakdown(queue.core, now)
    before["in_flight"] = sorted(queue.core.in_flight())
    records = queue.core.last_seq
    disk.crash("power")
    clock.advance(5.0)
    recovered, report = recover(disk, config, now_s=clock.now_s())
    return RecoveryCase(
        name="settle cascade",
        before=before,
        at_crash=pending_breakdown(recovered, now),
        after=pending_breakdown(recovered, clock.now_s()),
        records=records,
        replayed=report.records_replayed,
        requeued=[r.job_id for r in report.settle_records if r.type == "RETRY"],
        settle=report.settle_records,
        next_dispatches=dispatch_order(recovered, clock.now_s()),
    )
