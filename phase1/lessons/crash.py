"""Lesson 12 helpers: the crash explorer's results as a DataFrame and as timelines.

Owns: ``explore_frame`` (one row per protocol variant: crash states explored, violations
by kind, time taken), ``violations_frame`` (the smallest crash state of each kind found)
and ``plot_violation_timeline`` (the disk ops up to the crash, one lane per file, the
client's acknowledgements on their own lane, the crash as a red line).

Must not know: how crash states are enumerated or checked (``phase1.crashcheck`` does
it and returns plain dataclasses; this module only draws them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from phase1.crashcheck import KINDS, ExploreResult, VariantResult, Violation, describe_op

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["explore_frame", "violations_frame", "plot_violation_timeline"]

_OP_COLORS = {
    "append": "tab:blue",
    "write_at": "tab:blue",
    "write": "tab:blue",
    "truncate": "tab:purple",
    "fsync": "tab:green",
    "fsync_dir": "tab:olive",
    "rename": "tab:orange",
    "unlink": "tab:red",
    "makedirs": "tab:gray",
}


def explore_frame(result: ExploreResult, *, with_time: bool = True) -> pd.DataFrame:
    """One row per variant: ``crash_states`` explored (of ``possible``), a column per
    violation kind, ``expected_found`` and ``time_s`` (omit it for deterministic output)."""
    frame = pd.DataFrame(result.rows(with_time=with_time))
    return frame.set_index("variant")


def violations_frame(result: ExploreResult) -> pd.DataFrame:
    """The smallest crash state of each (variant, kind) found, and what it lost."""
    rows = []
    for v in result.variants:
        for kind in KINDS:
            found = v.smallest.get(kind)
            if found is None:
                continue
            rows.append(
                {
                    "variant": v.variant,
                    "kind": kind,
                    "count": v.violations[kind],
                    "crash": found.state.describe(),
                    "lost": ", ".join(map(str, found.lost)),
                    "detail": found.detail,
                }
            )
    columns = ["variant", "kind", "count", "crash", "lost", "detail"]
    return pd.DataFrame(rows, columns=columns)


def plot_violation_timeline(
    variant: VariantResult,
    violation: Violation | None = None,
    *,
    ax: Axes | None = None,
    last: int = 30,
) -> Figure:
    """Draw the ops up to ``violation``'s crash (default: the variant's smallest one).

    One lane per file or folder touched, markers coloured by op kind, a "client" lane with
    a tick per acknowledgement (red when that fact was lost), the crash as a red line.
    """
    import matplotlib.pyplot as plt

    found = violation if violation is not None else variant.first
    if found is None:
        raise ValueError(f"variant {variant.variant!r} has no violation to draw")
    trace = variant.trace
    n = found.state.after_ops
    start = max(0, n - last)
    ops = trace.ops[start:n]
    lanes: list[str] = ["client"]
    for op in ops:
        for path in (op.path, op.dst):
            if path is not None and path not in lanes:
                lanes.append(path)
    y = {name: i for i, name in enumerate(lanes)}
    if ax is None:
        fig, ax = plt.subplots(figsize=(10, 0.45 * len(lanes) + 1.6))
    else:
        fig = ax.get_figure()  # type: ignore[assignment]
    for op in ops:
        color = _OP_COLORS.get(op.kind, "black")
        ax.scatter([op.index], [y[op.path]], color=color, s=40, zorder=3)
        if op.dst is not None:
            ax.annotate(
                "",
                xy=(op.index, y[op.dst]),
                xytext=(op.index, y[op.path]),
                arrowprops={"arrowstyle": "->", "color": color},
            )
    lost = set(found.lost)
    for ack in trace.acks:
        if start <= ack.after_ops <= n:
            x = ack.after_ops - 0.5
            ax.scatter(
                [x], [y["client"]], marker="|", s=200, color="red" if ack.fact in lost else "k"
            )
    ax.axvline(n - 0.5, color="red", linewidth=2, label=found.state.kind + " here")
    ax.set_yticks(range(len(lanes)), lanes)
    ax.set_xlabel("disk op #")
    ax.set_xlim(start - 1, n + 0.5)
    ax.invert_yaxis()
    for kind, color in _OP_COLORS.items():
        if any(op.kind == kind for op in ops):
            ax.scatter([], [], color=color, label=kind)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    last_op = describe_op(trace.ops[n - 1]) if n else "start"
    ax.set_title(f"{variant.variant}: {found.kind} (crash after: {last_op})", fontsize="medium")
    fig.tight_layout()
    return fig
