"""Views of the real core for the lessons: tables, text, HTML and matplotlib figures.

Owns: rendering ``QueueCore`` state (queues, in flight with deadlines, counts), WAL records
and the transition table, plus small file helpers the notebooks need (a temporary
``Config``, ``jq`` over a WAL file, paths shown as basenames).

Must not know: how the core decides anything.  Every function here reads public state
(``counts``, ``pending_jobs``, ``in_flight``, ``TRANSITIONS``, ``read_wal``) and formats it.

Invariant: every output is deterministic for a deterministic core (sorted, no memory
addresses, no absolute paths, no wall-clock values), so nbval can compare it.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from phase1.config import Config
from phase1.core import TRANSITIONS, QueueCore, Record
from phase1.jobs import JobState

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from phase1.recovery import RecoveryReport

__all__ = [
    "STATE_ORDER",
    "temp_config",
    "hide_paths",
    "report_text",
    "jobs_table",
    "in_flight_table",
    "counts_text",
    "when",
    "records_table",
    "record_line",
    "state_text",
    "state_html",
    "transition_table",
    "draw_state_diagram",
    "plot_counts",
    "run_jq",
]

STATE_ORDER = ("pending", "in_flight", "failed", "completed", "dead")
_MAIN_COUNTS = ("pending", "in_flight", "completed", "dead")


# == files ================================================================================
def temp_config(prefix: str = "phase1-lesson-", **changes: Any) -> Config:
    """The default ``Config`` with its WAL, snapshot and workspace in a fresh temp folder.

    ``changes`` are ``Config.replace`` attribute names (``commit_policy="never"``).
    """
    folder = tempfile.mkdtemp(prefix=prefix)
    return Config().replace(
        wal_path=os.path.join(folder, "wal.log"),
        snapshot_path=os.path.join(folder, "snapshot.json"),
        workspace=os.path.join(folder, "workspace"),
        **changes,
    )


_TMP_RE = re.compile(r"(?:/[^\s'\":;,()]+)+/(?=[^\s/'\":;,()]+)")


def hide_paths(text: str) -> str:
    """``text`` with every absolute path cut to its basename (temp folders differ per run)."""
    return _TMP_RE.sub("", text)


def report_text(report: RecoveryReport) -> str:
    """``RecoveryReport.summary()`` with basenames instead of paths."""
    return hide_paths(report.summary())


# == tables ===============================================================================
_EPOCH_LIKE_MS = 10**11  # after 1973: a wall-clock time, shown as UTC; smaller: virtual seconds


def when(ms: int) -> str:
    """A time on the queue's clock: ``10:00:03.000Z`` for epoch times, ``3s`` for virtual."""
    if ms >= _EPOCH_LIKE_MS:
        sec, milli = divmod(ms, 1000)
        return datetime.fromtimestamp(sec, UTC).strftime("%H:%M:%S") + f".{milli:03d}Z"
    return f"{ms / 1000.0:g}s"


def jobs_table(core: QueueCore) -> pd.DataFrame:
    """One row per known job: pending (dispatch order), in flight, failed, completed, dead."""
    rows: list[dict[str, Any]] = []
    for job in core.pending_jobs():
        rows.append({"job_id": job.id, "state": "pending", "attempt": job.attempt})
    for job_id, flight in core.in_flight().items():
        rows.append(
            {
                "job_id": job_id,
                "state": "in_flight",
                "attempt": flight.attempt,
                "worker_id": flight.worker_id,
                "deadline": when(flight.deadline_ms),
            }
        )
    for job_id in core.completed_ids():
        rows.append({"job_id": job_id, "state": "completed"})
    for job_id, reason in core.dead_reasons().items():
        rows.append({"job_id": job_id, "state": "dead", "reason": reason})
    columns = ["job_id", "state", "attempt", "worker_id", "deadline", "reason"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["attempt"] = frame["attempt"].astype("Int64")
    frame["worker_id"] = frame["worker_id"].astype("Int64")
    for col in ("deadline", "reason"):
        frame[col] = frame[col].astype(object).where(frame[col].notna(), "")
    return frame


def in_flight_table(core: QueueCore, now_s: float | None = None) -> pd.DataFrame:
    """In-flight jobs with worker, attempt, deadline and (given ``now_s``) seconds left."""
    rows = []
    for job_id, f in sorted(core.in_flight().items()):
        row: dict[str, Any] = {
            "job_id": job_id,
            "worker_id": f.worker_id,
            "attempt": f.attempt,
            "deadline": when(f.deadline_ms),
        }
        if now_s is not None:
            row["left_s"] = round(f.deadline_ms / 1000.0 - now_s, 3)
        rows.append(row)
    columns = ["job_id", "worker_id", "attempt", "deadline"]
    return pd.DataFrame(rows, columns=columns + (["left_s"] if now_s is not None else []))


def counts_text(core: QueueCore) -> str:
    """``pending=3 in_flight=1 completed=0 dead=0 last_seq=5`` (failed shown when not 0)."""
    counts = core.counts()
    parts = [f"{k}={counts[k]}" for k in _MAIN_COUNTS]
    if counts["failed"]:
        parts.append(f"failed={counts['failed']}")
    return " ".join(parts) + f" last_seq={core.last_seq}"


def records_table(records: Iterable[Record]) -> pd.DataFrame:
    """WAL records as a table (the seed's field names; ``job`` shown as its payload)."""
    rows = []
    for r in records:
        rows.append(
            {
                "seq": r.seq,
                "type": r.type,
                "job_id": r.job_id,
                "timestamp_ms": r.timestamp_ms,
                "attempt": r.attempt,
                "worker_id": r.worker_id,
                "deadline_ms": r.deadline_ms,
                "reason": r.reason or "",
            }
        )
    columns = [
        "seq",
        "type",
        "job_id",
        "timestamp_ms",
        "attempt",
        "worker_id",
        "deadline_ms",
        "reason",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    for col in ("worker_id", "deadline_ms"):
        frame[col] = frame[col].astype("Int64")
    return frame


def record_line(r: Record) -> str:
    """One record in one short line: ``#4 DISPATCH task-101 attempt=1 worker=1``."""
    extra = []
    if r.attempt:
        extra.append(f"attempt={r.attempt}")
    if r.worker_id is not None:
        extra.append(f"worker={r.worker_id}")
    if r.deadline_ms is not None:
        extra.append(f"deadline={when(r.deadline_ms)}")
    if r.reason:
        extra.append(f"reason={r.reason!r}")
    return " ".join([f"#{r.seq}", r.type, r.job_id, *extra])


# == the state, as text and HTML ==========================================================
def _ids(ids: Sequence[str], limit: int = 6) -> str:
    if not ids:
        return "-"
    if len(ids) <= limit:
        return ", ".join(ids)
    hidden = len(ids) - (limit - 2) - 1
    return ", ".join(ids[: limit - 2]) + f", ... ({hidden} more), " + ids[-1]


def state_text(
    core: QueueCore | None,
    *,
    wal: Sequence[Record] = (),
    durable_seq: int | None = None,
    now_s: float | None = None,
    tail: int = 4,
    note: str = "",
) -> str:
    """The state a stepper redraws: queues, in flight with deadlines, WAL tail, durable_seq.

    ``core=None`` means the process is down (after a crash, before recovery).
    """
    lines: list[str] = []
    if note:
        lines.append(note)
    if core is None:
        lines.append("core: (process down: nothing in memory)")
    else:
        lines.append("counts:    " + counts_text(core))
        lines.append("pending:   " + _ids([j.id for j in core.pending_jobs()]))
        flights = sorted(core.in_flight().items())
        if flights:
            for job_id, f in flights:
                left = (
                    f"  ({f.deadline_ms / 1000.0 - now_s:+.3f}s left)" if now_s is not None else ""
                )
                lines.append(
                    f"in_flight: {job_id} worker={f.worker_id} attempt={f.attempt} "
                    f"deadline={when(f.deadline_ms)}{left}"
                )
        else:
            lines.append("in_flight: -")
        lines.append("completed: " + _ids(core.completed_ids()))
        dead = core.dead_reasons()
        lines.append("dead:      " + (_ids(sorted(dead)) if dead else "-"))
    if wal:
        shown = list(wal)[-tail:]
        lines.append(f"WAL tail ({len(shown)} of {len(wal)} records):")
        lines.extend("  " + record_line(r) for r in shown)
    if durable_seq is not None:
        lines.append(f"durable_seq: {durable_seq}")
    return "\n".join(lines)


def state_html(text: str, *, title: str = "") -> str:
    """A state text (``state_text``) as a small HTML block for a widget."""
    head = f"<b>{html.escape(title)}</b><br>" if title else ""
    return (
        f"{head}<pre style='font-size:12px;line-height:1.3;margin:4px 0'>{html.escape(text)}</pre>"
    )


# == the transition table =================================================================
def transition_table() -> pd.DataFrame:
    """``core.TRANSITIONS`` as a table: record type, states it may leave, state it enters."""
    rows = []
    for rtype, (sources, target) in TRANSITIONS.items():
        names = sorted("(new)" if s is None else s.value for s in sources)
        rows.append({"record": rtype, "from": ", ".join(names), "to": target.value})
    return pd.DataFrame(rows, columns=["record", "from", "to"])


_POS = {
    "(new)": (0.0, 1.0),
    JobState.PENDING.value: (1.4, 1.0),
    JobState.IN_FLIGHT.value: (3.0, 1.0),
    JobState.COMPLETED.value: (4.6, 1.0),
    JobState.FAILED.value: (3.0, -0.2),
    JobState.DEAD.value: (1.4, -0.8),
}


def draw_state_diagram(ax: Axes | None = None) -> Figure:
    """The state machine drawn from ``core.TRANSITIONS`` (one arrow per legal move)."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(8.5, 4.2))
    else:
        fig = ax.get_figure()  # type: ignore[assignment]
    for name, (x, y) in _POS.items():
        final = name in ("completed", "dead")
        ax.text(
            x,
            y,
            name,
            ha="center",
            va="center",
            fontsize=11,
            bbox={
                "boxstyle": "round,pad=0.4",
                "fc": "#dfe8f5" if not final else "#e3f2d9",
                "ec": "#333333",
                "lw": 2 if final else 1,
            },
            zorder=3,
        )
    seen: dict[tuple[str, str], list[str]] = {}
    for rtype, (sources, target) in TRANSITIONS.items():
        for s in sources:
            src = "(new)" if s is None else s.value
            seen.setdefault((src, target.value), []).append(rtype)
    for (src, dst), labels in sorted(seen.items()):
        (x0, y0), (x1, y1) = _POS[src], _POS[dst]
        bend = 0.25 if (dst, src) in seen else 0.0
        if src == "pending" and dst == "dead":
            bend = 0.0
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops={
                "arrowstyle": "-|>",
                "color": "#555555",
                "shrinkA": 22,
                "shrinkB": 22,
                "connectionstyle": f"arc3,rad={bend}",
            },
            zorder=1,
        )
        mx, my = (x0 + x1) / 2, (y0 + y1) / 2
        if bend:
            mx += bend * (y1 - y0) * 0.6
            my -= bend * (x1 - x0) * 0.6
        ax.text(
            mx,
            my,
            "/".join(labels),
            ha="center",
            va="center",
            fontsize=8,
            color="#7a2e00",
            bbox={"fc": "white", "ec": "none", "pad": 0.5},
            zorder=2,
        )
    ax.set_xlim(-0.6, 5.3)
    ax.set_ylim(-1.3, 1.6)
    ax.axis("off")
    ax.set_title(f"Job states: {len(TRANSITIONS)} record types from core.TRANSITIONS")
    return fig


def plot_counts(
    counts_by_label: dict[str, dict[str, int]], ax: Axes | None = None, title: str = ""
) -> Figure:
    """Grouped bars of pending / in_flight / completed / dead for each label (e.g. before and
    after a crash)."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6.5, 3.2))
    else:
        fig = ax.get_figure()  # type: ignore[assignment]
    labels = list(counts_by_label)
    width = 0.8 / max(len(labels), 1)
    for i, label in enumerate(labels):
        xs = [k + i * width for k in range(len(_MAIN_COUNTS))]
        values = [counts_by_label[label].get(name, 0) for name in _MAIN_COUNTS]
        bars = ax.bar(xs, values, width=width, label=label)
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks([k + width * (len(labels) - 1) / 2 for k in range(len(_MAIN_COUNTS))])
    ax.set_xticklabels(_MAIN_COUNTS)
    ax.set_ylabel("jobs")
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


# == jq ===================================================================================
def run_jq(args: Sequence[str], path: str) -> str:
    """Run ``jq *args path`` and return its output (or why it could not run).

    The seed debugs the WAL with jq; it is installed in CI.  Paths in jq's messages are cut
    to basenames.
    """
    exe = shutil.which("jq")
    if exe is None:
        return "jq is not installed here (apt-get install jq); skipping"
    done = subprocess.run(
        [exe, *args, path], capture_output=True, text=True, timeout=30, check=False
    )
    return hide_paths((done.stdout + done.stderr).rstrip("\n"))
