"""Lesson 04 helpers: the seed's Q3 timeline made real on a ``SimDisk``.

Owns: ``write_in_place`` (the naive protocol, kept here only as the contrast: overwrite
``snapshot.json`` and fsync it), ``DyingDisk`` (a ``SimDisk`` whose process dies part way
through a write), ``q3_table`` (the same crash, half-way through writing the new snapshot,
under both protocols), ``protocol_trace`` / ``crash_outcomes`` / ``protocol_stepper``
(every disk operation of a protocol, and what ``load_snapshot`` finds if the process dies
or the power fails right after it) and ``plot_crash_outcomes``.

Must not know: how ``write_snapshot`` orders its steps: it is run as is and its operations
are observed through ``SimDisk.on_op``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from phase1.core import CoreState, QueueCore, SendToWorker
from phase1.errors import SnapshotError
from phase1.jobs import Job
from phase1.lessons.stepper import Action, Scenario, Stepper
from phase1.sim.disk import DiskOp, SimDisk, SimDiskState
from phase1.snapshot import encode_snapshot, load_snapshot, write_snapshot

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "PATH",
    "ProcessDied",
    "DyingDisk",
    "old_and_new_states",
    "write_in_place",
    "PROTOCOLS",
    "q3_table",
    "what_loads",
    "protocol_trace",
    "crash_outcomes",
    "protocol_stepper",
    "plot_crash_outcomes",
]

PATH = "data/snapshot.json"


class ProcessDied(Exception):
    """Raised by ``DyingDisk`` when its byte budget runs out: the process is gone."""


class DyingDisk(SimDisk):
    """A ``SimDisk`` whose process dies after ``budget`` more bytes of ``write``/``append``
    (``arm(budget)``): the bytes before that point land, then ``ProcessDied`` is raised and
    the disk is left as a process crash leaves it."""

    budget: int | None = None

    def arm(self, budget: int) -> None:
        self.budget = budget

    def _spend(self, data: bytes) -> bytes | None:
        if self.budget is None or len(data) <= self.budget:
            if self.budget is not None:
                self.budget -= len(data)
            return None
        cut = data[: self.budget]
        self.budget = None
        return cut

    def _land(self, path: str, data: bytes, put: Callable[[bytes], None]) -> None:
        cut = self._spend(data)
        put(data if cut is None else cut)
        if cut is not None:
            self.crash("process")
            raise ProcessDied(f"died after {len(cut)} of {len(data)} bytes of {path}")

    def write(self, path: str, data: bytes) -> None:
        self._land(path, data, lambda d: SimDisk.write(self, path, d))

    def append(self, path: str, data: bytes) -> None:
        self._land(path, data, lambda d: SimDisk.append(self, path, d))

    def write_at(self, path: str, offset: int, data: bytes) -> None:
        self._land(path, data, lambda d: SimDisk.write_at(self, path, offset, d))


def old_and_new_states(n_jobs: int = 6) -> tuple[CoreState, CoreState]:
    """Two snapshots of one real core: after enqueueing ``n_jobs`` (old), and after the first
    half of them completed (new)."""
    core = QueueCore()
    core.enqueue([Job(f"task-{i:03d}", payload={"n": i}) for i in range(1, n_jobs + 1)], 0.0)
    old = core.export()
    for _ in range(n_jobs // 2):
        send = core.dispatch(1.0, worker_id=1).effects[0]
        assert isinstance(send, SendToWorker)
        core.ack(send.job.id, send.attempt, 2.0)
    return old, core.export()


def write_in_place(disk: SimDisk, path: str, state: CoreState) -> None:
    """The naive protocol (the contrast, not phase1): overwrite ``path``, then fsync it."""
    disk.write(path, encode_snapshot(state))
    disk.fsync(path)


def _write_then_rename(disk: SimDisk, path: str, state: CoreState) -> None:
    write_snapshot(disk, path, state, keep=2)


PROTOCOLS: dict[str, Callable[[SimDisk, str, CoreState], None]] = {
    "in place": write_in_place,
    "write-then-rename": _write_then_rename,
}


def what_loads(disk: SimDisk, path: str = PATH) -> str:
    """What recovery would find: ``"seq 9 (snapshot.json)"``, ``"nothing"`` or
    ``"SnapshotError: ..."`` (the first clause of the message)."""
    try:
        loaded = load_snapshot(disk, path, keep=2)
    except SnapshotError as exc:
        found = re.search(r"snapshot (\S+): ([^:]+)", str(exc))
        if found is None:  # pragma: no cover - every SnapshotError names its file
            return "SnapshotError"
        return f"SnapshotError: {found.group(1).rpartition('/')[2]} {found.group(2)}"
    if loaded.state is None:
        return "nothing (fresh start)"
    name = (loaded.used_path or "").rpartition("/")[2]
    return f"seq {loaded.state.last_seq} ({name})"


def _base_disk(old: CoreState, cls: type[SimDisk] = SimDisk) -> SimDisk:
    disk = cls()
    disk.makedirs("data")
    write_snapshot(disk, PATH, old, keep=2)
    disk.op_log.clear()
    return disk


def q3_table(fraction: float = 0.5) -> pd.DataFrame:
    """The seed's Q3: the process dies after ``fraction`` of the new snapshot's bytes are
    written.  One row per protocol: what is on disk, and what ``load_snapshot`` finds."""
    old, new = old_and_new_states()
    budget = int(len(encode_snapshot(new)) * fraction)
    rows = []
    for name, protocol in PROTOCOLS.items():
        disk = _base_disk(old, DyingDisk)
        assert isinstance(disk, DyingDisk)
        disk.arm(budget)
        try:
            protocol(disk, PATH, new)
            died = "finished"
        except ProcessDied as exc:
            died = str(exc).replace("data/", "")
        files = ", ".join(
            f"{p.rpartition('/')[2]} {len(b)} B" for p, b in disk.snapshot_files().items()
        )
        rows.append(
            {
                "protocol": name,
                "crash": died,
                "files after the crash": files,
                "load_snapshot finds": what_loads(disk),
            }
        )
    return pd.DataFrame(rows)


# == every operation of a protocol =======================================================
@dataclass(frozen=True)
class TracePoint:
    """The disk right after one operation of a protocol (``op`` is None: before any)."""

    op: DiskOp | None
    state: SimDiskState


def protocol_trace(name: str) -> list[TracePoint]:
    """Run protocol ``name`` (a key of ``PROTOCOLS``) on a disk holding the old snapshot and
    record the disk after each of its operations (through ``SimDisk.on_op``)."""
    old, new = old_and_new_states()
    disk = _base_disk(old)
    points = [TracePoint(None, disk.state())]
    disk.on_op = lambda op: points.append(TracePoint(op, disk.state()))
    PROTOCOLS[name](disk, PATH, new)
    disk.on_op = None
    return points


def op_text(op: DiskOp | None) -> str:
    """``rename snapshot.json.tmp -> snapshot.json`` (basenames)."""
    if op is None:
        return "(before the first operation)"
    base = op.path.rpartition("/")[2] or op.path
    if op.kind == "rename" and op.dst is not None:
        return f"rename {base} -> {op.dst.rpartition('/')[2]}"
    if op.kind in ("write", "append", "write_at"):
        return f"{op.kind} {base} ({op.size} B)"
    return f"{op.kind} {base}"


def _crashes(state: SimDiskState) -> dict[str, str]:
    """What loads after each kind of crash right now."""
    out: dict[str, str] = {}
    disk = SimDisk.from_state(state)
    disk.crash("process")
    out["process dies"] = what_loads(disk)
    out["power fails"] = what_loads(SimDisk.from_state(state).apply_power_loss())
    # Power fails while the last unsynced write is half on the platter (a torn write).
    disk = SimDisk.from_state(state)
    keep: dict[str, int] = {}
    cuts: dict[str, int] = {}
    for name, ops in disk.pending_at_power_loss(unique=True).items():
        if ops and ops[-1].tearable:
            keep[name] = len(ops)
            cuts[name] = len(ops[-1].data) // 2
    out["power fails mid-write"] = what_loads(disk.apply_power_loss(keep, cuts))
    return out


def crash_outcomes(name: str) -> pd.DataFrame:
    """For each operation of protocol ``name``: what ``load_snapshot`` finds if the process
    dies, the power fails (unsynced bytes lost) or the power fails with the last unsynced
    write half done, right after it."""
    rows = []
    for i, point in enumerate(protocol_trace(name)):
        rows.append({"step": i, "after": op_text(point.op), **_crashes(point.state)})
    return pd.DataFrame(rows)


def _files(state: SimDiskState) -> list[str]:
    disk = SimDisk.from_state(state)
    out = []
    for path, data in disk.snapshot_files().items():
        base = path.rpartition("/")[2]
        try:
            seq = f"seq {load_snapshot(disk, path, keep=1).state.last_seq}"  # type: ignore[union-attr]
        except SnapshotError:
            seq = "not a valid snapshot"
        out.append(f"{base} ({len(data)} B, {seq})")
    return out


def protocol_stepper(name: str) -> Stepper:
    """Step through protocol ``name`` one disk operation at a time; the state shows the
    files and what each crash right now would leave."""

    def setup() -> Scenario:
        points = protocol_trace(name)
        where = {"i": 0}

        def render() -> str:
            point = points[where["i"]]
            lines = [f"after: {op_text(point.op)}", "files: " + "; ".join(_files(point.state))]
            for kind, found in _crashes(point.state).items():
                lines.append(f"if the {kind.replace(' ', ' ', 1)} now -> loads {found}")
            return "\n".join(lines)

        def goto(i: int) -> Callable[[], Any]:
            def run() -> str:
                where["i"] = i
                return ""

            return run

        actions = [Action(op_text(p.op), goto(i)) for i, p in enumerate(points) if i > 0]
        return Scenario(actions, render, world=points)

    return Stepper(setup, title=f"snapshot {name}")


def plot_crash_outcomes(tables: dict[str, pd.DataFrame]) -> Figure:
    """One panel per protocol: operations down, crash kinds across; green where the old or
    new snapshot loads, red where recovery finds a broken file."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    kinds = ["process dies", "power fails", "power fails mid-write"]
    heights = [len(t) for t in tables.values()]
    fig, axes = plt.subplots(
        len(tables),
        1,
        figsize=(8.0, 0.42 * sum(heights) + 1.6),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    cmap = ListedColormap(["#c8e6c9", "#ef9a9a"])
    for ax, (name, table) in zip(axes[:, 0], tables.items(), strict=True):
        bad = [
            [1 if str(table[k][i]).startswith("SnapshotError") else 0 for k in kinds]
            for i in range(len(table))
        ]
        ax.imshow(bad, cmap=cmap, vmin=0, vmax=1, aspect="auto")
        for i in range(len(table)):
            for j, k in enumerate(kinds):
                text = str(table[k][i])
                ax.text(
                    j,
                    i,
                    "BROKEN" if text.startswith("SnapshotError") else text.split(" (")[0],
                    ha="center",
                    va="center",
                    fontsize=8,
                )
        ax.set_yticks(range(len(table)))
        ax.set_yticklabels(table["after"], fontsize=8)
        ax.set_xticks(range(len(kinds)))
        ax.set_xticklabels(kinds, fontsize=9)
        ax.xaxis.tick_top()
        ax.set_title(f"{name}: crash right after each operation", fontsize=10, pad=22)
    fig.tight_layout()
    return fig
