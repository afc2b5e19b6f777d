"""Lesson 12 helpers beyond ``phase1.lessons.crash``: the workload, one crash at a time.

Owns: ``op_log_frame`` (the standard workload's disk ops, the workload step each belongs
to and what the client was told after it), ``states_per_op_frame`` /
``plot_states_per_op`` (how many crash states each crash point has, by kind),
``smallest_text`` (a variant's smallest violation in three lines), ``same_crash_frame``
with ``q3_crash`` / ``q4_crash`` (one named crash replayed under several protocols and
checked with the explorer's own ``check_disk``), ``violation_stepper`` (a ``Stepper``
over the ops up to a violation's crash, then the crash, then recovery) and
``plot_violation_kinds`` (variants x violation kinds as an annotated grid).

Must not know: how crash states are enumerated or checked: ``phase1.crashcheck`` does
that; this module only picks states, runs its checks and draws the answers.
Deterministic: no clock, no randomness (the rng handed to ``crash_states`` is unused when
nothing is sampled), no paths other than the simulated disk's own names.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from phase1.crashcheck import (
    KINDS,
    CrashState,
    ExploreResult,
    Fact,
    Trace,
    VariantResult,
    Violation,
    check_disk,
    crash_states,
    describe_op,
    run_workload,
)
from phase1.errors import QueueKitError
from phase1.lessons.stepper import Action, Scenario, Stepper
from phase1.protocol import protocol_named
from phase1.recovery import recover
from phase1.sim.disk import SimDisk

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "op_log_frame",
    "states_per_op_frame",
    "plot_states_per_op",
    "smallest_text",
    "q3_crash",
    "q4_crash",
    "same_crash_frame",
    "violation_stepper",
    "plot_violation_kinds",
]

STATE_KINDS = ("process", "power: whole ops", "power: torn", "power: zero-filled")


# == the workload =========================================================================
def _steps_by_op(trace: Trace) -> tuple[list[str], list[list[str]]]:
    """Per op: the workload step running when it was issued, and the facts the client was
    told once it had run (acks recorded with ``after_ops == i + 1``)."""
    step = ""
    steps: list[str] = []
    events = sorted(trace.events, key=lambda e: e.after_ops)
    ei = 0
    for i in range(len(trace.ops)):
        while ei < len(events) and events[ei].after_ops <= i:
            if not events[ei].text.startswith("client told"):
                step = events[ei].text
            ei += 1
        steps.append(step)
    told: list[list[str]] = [[] for _ in trace.ops]
    for ack in trace.acks:
        if ack.after_ops:
            told[ack.after_ops - 1].append(f"{ack.fact.kind} {ack.fact.job_id}")
    return steps, told


def op_log_frame(trace: Trace) -> pd.DataFrame:
    """One row per disk op of ``trace``: ``step`` (the workload step that issued it),
    ``disk op`` and ``client told`` (the facts acknowledged once it had run)."""
    steps, told = _steps_by_op(trace)
    rows = [
        {"step": _short(steps[i]), "disk op": describe_op(op), "client told": ", ".join(told[i])}
        for i, op in enumerate(trace.ops)
    ]
    frame = pd.DataFrame(rows, columns=["step", "disk op", "client told"])
    frame.index.name = "op"
    return frame


def _short(step: str, limit: int = 48) -> str:
    """A workload step without its parenthetical when too long for a table cell."""
    return step.split(" (")[0] if len(step) > limit else step


def _kind_of(cs: CrashState) -> str:
    if cs.kind == "process":
        return "process"
    if cs.zero_fill:
        return "power: zero-filled"
    return "power: torn" if cs.cuts else "power: whole ops"


def states_per_op_frame(trace: Trace) -> pd.DataFrame:
    """Per crash point (after op ``n - 1``): how many crash states of each kind the
    explorer enumerates there, and ``total``.  Enumerates every state (no sampling), so
    use it on traces whose power losses have few unsynced ops (the correct protocol's)."""
    rng = random.Random(0)  # unused: nothing is sampled with max_states=None
    rows = []
    for n in range(len(trace.states)):
        states, total = crash_states(trace, n, max_states=None, rng=rng)
        counts = dict.fromkeys(STATE_KINDS, 0)
        for cs in states:
            counts[_kind_of(cs)] += 1
        after = describe_op(trace.ops[n - 1]) if n else "(start)"
        rows.append({"crash after": after, **counts, "total": total})
    frame = pd.DataFrame(rows, columns=["crash after", *STATE_KINDS, "total"])
    frame.index.name = "crash point"
    return frame


def plot_states_per_op(frame: pd.DataFrame) -> Figure:
    """Stacked bars: crash states per crash point, coloured by kind (``states_per_op_frame``)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.4))
    bottom = [0] * len(frame)
    colors = ["tab:gray", "tab:blue", "tab:orange", "tab:red"]
    for kind, color in zip(STATE_KINDS, colors, strict=True):
        values = frame[kind].tolist()
        ax.bar(frame.index, values, bottom=bottom, color=color, label=kind, width=0.8)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    top = int(frame["total"].idxmax())
    ax.annotate(
        f"{frame['total'][top]} states after\n{frame['crash after'][top]}",
        xy=(top, frame["total"][top]),
        xytext=(top - 18, frame["total"][top] * 0.8),
        arrowprops={"arrowstyle": "->"},
        fontsize="small",
    )
    ax.set_xlabel("crash point (after op n - 1)")
    ax.set_ylabel("crash states")
    ax.set_title(f"{int(frame['total'].sum()):,} crash states over {len(frame)} crash points")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    return fig


# == one violation ========================================================================
def _first_sentence(text: str, limit: int = 150) -> str:
    head = text.split(". ")[0].split("; ")[0]
    return head if len(head) <= limit else head[: limit - 3] + "..."


def _facts(facts: Sequence[Fact]) -> str:
    return ", ".join(f"{f.kind} {f.job_id}" for f in facts) or "-"


def smallest_text(variant: VariantResult, violation: Violation | None = None) -> str:
    """``violation`` (default: the variant's smallest) in three lines: where it crashed,
    what the check found, what was lost."""
    found = violation if violation is not None else variant.first
    if found is None:
        return f"{variant.variant}: no violation in {variant.states_explored:,} crash states"
    return "\n".join(
        [
            f"{variant.variant}: {found.kind} ({variant.violations[found.kind]:,} states)",
            f"  smallest: {found.state.describe()}",
            f"  lost: {_facts(found.lost)}"
            if found.lost
            else f"  found: {_first_sentence(found.detail)}",
        ]
    )


# == one crash, several protocols ==========================================================
Picker = Callable[[Trace], CrashState]


def q3_crash(fraction: float = 0.5) -> Picker:
    """The seed's Q3: power fails while the *second* snapshot's bytes are being written,
    ``fraction`` of them on the platter.  In place that write overwrites the live
    ``snapshot.json``; with write-then-rename it goes to ``snapshot.json.tmp``, whose name
    is not durable yet, so the model has nothing of it to keep."""

    def pick(trace: Trace) -> CrashState:
        snap = trace.config.snapshot_path
        writes = [op for op in trace.ops if op.kind == "write" and op.path.startswith(snap)]
        op = writes[-1]
        n = op.index + 1
        survivors = SimDisk.from_state(trace.states[n]).pending_at_power_loss(unique=True)
        if survivors.get(op.path):
            cut = int(op.size * fraction)
            return CrashState(n, "power", ((op.path, 1),), ((op.path, cut),))
        return CrashState(n, "power")

    return pick


def q4_crash() -> Picker:
    """The seed's Q4: power fails right after the client first heard "ok", before anything
    else runs; every unsynced op is lost."""

    def pick(trace: Trace) -> CrashState:
        return CrashState(trace.acks[0].after_ops, "power")

    return pick


def _files(disk: SimDisk) -> str:
    files = disk.snapshot_files()
    listing = "; ".join(f"{name.rsplit('/', 1)[-1]} {len(data)} B" for name, data in files.items())
    return listing or "(no files)"


def _recovered(disk: SimDisk, trace: Trace) -> str:
    try:
        _, report = recover(disk.copy(), trace.config)
    except QueueKitError as exc:
        return f"{type(exc).__name__}: {_first_sentence(str(exc), 110)}"
    snap = f"snapshot seq {report.snapshot_last_seq}" if report.snapshot_used else "no snapshot"
    return f"{snap} + {report.records_replayed} WAL records"


def same_crash_frame(pick: Picker, protocols: Sequence[str]) -> pd.DataFrame:
    """The crash ``pick`` chooses, under each protocol: the files it leaves, what recovery
    makes of them, and the explorer's verdict (``check_disk``): problems and lost facts."""
    rows = []
    for name in protocols:
        trace = run_workload(protocol_named(name))
        cs = pick(trace)
        disk = cs.disk(trace)
        files, recovered = _files(disk), _recovered(disk, trace)
        verdict = check_disk(disk, trace.config)
        acked = trace.acked_by(cs.after_ops)
        lost = sorted(acked - verdict.facts) if verdict.facts is not None else []
        problems = sorted({kind for kind, _ in verdict.problems})
        rows.append(
            {
                "protocol": name,
                "crash": cs.describe(),
                "files after the crash": files,
                "recovery": recovered,
                "told ok": len(acked),
                "lost": _facts(lost),
                "verdict": ", ".join(problems) or ("lost-ack" if lost else "safe"),
            }
        )
    return pd.DataFrame(rows).set_index("protocol")


# == stepping through a violation ===========================================================
def _disk_lines(disk: SimDisk) -> list[str]:
    now = disk.snapshot_files()
    durable = disk.durable_files()
    lines = [f"  {'file':<34} {'OS shows':>9} {'survives power loss':>20}"]
    for name in sorted(set(now) | set(durable)):
        shown = f"{len(now[name])} B" if name in now else "-"
        kept = f"{len(durable[name])} B" if name in durable else "name lost"
        flag = "" if shown == kept else "  <- at risk"
        lines.append(f"  {name:<34} {shown:>9} {kept:>20}{flag}")
    return lines


def violation_stepper(variant: VariantResult, violation: Violation | None = None) -> Stepper:
    """Step through the ops up to ``violation``'s crash (default: the variant's smallest),
    then the crash, then recovery.  Each state shows every file as the OS shows it and as a
    power loss would leave it, and what the client has been told so far."""
    found = violation if violation is not None else variant.first
    if found is None:
        raise ValueError(f"variant {variant.variant!r} has no violation to step through")
    trace = variant.trace
    n = found.state.after_ops
    steps, told = _steps_by_op(trace)

    def setup() -> Scenario:
        where = {"i": 0, "phase": "ops"}

        def render() -> str:
            i = where["i"]
            assert isinstance(i, int)
            acked = sorted(trace.acked_by(i))
            lines = [f"workload: {steps[i - 1] if i else '(start)'}"]
            if where["phase"] == "ops":
                lines += _disk_lines(SimDisk.from_state(trace.states[i]))
            else:
                disk = found.state.disk(trace)
                lines.append(f"CRASH: {found.state.describe()}")
                files = disk.snapshot_files()
                lines += [f"  {name:<34} {len(data)} B" for name, data in files.items()]
                lines += [] if files else ["  (no files survive)"]
                if where["phase"] == "recovered":
                    lines.append(f"recovery: {_recovered(disk, trace)}")
                    lines.append(f"=> {found.kind}: {_first_sentence(found.detail, 200)}")
            lines.append(f"client told ok ({len(acked)}): {_facts(acked)}")
            return "\n".join(lines)

        def goto(i: int, phase: str = "ops") -> Callable[[], Any]:
            def run() -> str:
                where["i"], where["phase"] = i, phase
                return ", ".join(f"told {t}" for t in told[i - 1]) if phase == "ops" else ""

            return run

        actions = [
            Action(f"#{i - 1} {describe_op(trace.ops[i - 1])}", goto(i)) for i in range(1, n + 1)
        ]
        actions.append(Action(found.state.describe(), goto(n, "crashed")))
        actions.append(Action("recover() and check", goto(n, "recovered")))
        return Scenario(actions, render, world=trace)

    return Stepper(setup, title=f"{variant.variant}: {found.kind}")


# == the summary ===========================================================================
def plot_violation_kinds(result: ExploreResult) -> Figure:
    """Variants down, violation kinds across, each cell the number of crash states that
    showed that kind (red when any), with the states explored per variant on the right."""
    import matplotlib.pyplot as plt

    kinds = [k for k in KINDS if any(v.violations[k] for v in result.variants)] or list(KINDS)
    grid = [[v.violations[k] for k in kinds] for v in result.variants]
    fig, ax = plt.subplots(figsize=(4.5 + 1.1 * len(kinds), 0.5 * len(grid) + 1.4))
    cells = [[1 if c else 0 for c in row] for row in grid]
    ax.imshow(cells, cmap="Reds", vmin=0, vmax=2.5, aspect="auto")
    for i, row in enumerate(grid):
        for j, count in enumerate(row):
            ax.text(j, i, f"{count:,}", ha="center", va="center", fontsize=9)
    names = [
        f"{v.variant} ({v.states_explored:,} states{', sampled' if v.sampled else ''})"
        for v in result.variants
    ]
    ax.set_yticks(range(len(grid)), names)
    ax.set_xticks(range(len(kinds)), kinds)
    ax.xaxis.tick_top()
    ax.set_title("crash states with a violation, by kind", fontsize="medium", pad=24)
    fig.tight_layout()
    return fig
