"""Prometheus metrics in a notebook, no port needed (lesson 10).

Owns: reading a ``QueueMetrics`` registry into tables (``samples_frame``,
``exposition_excerpt``); a deterministic virtual-time run that feeds ``QueueMetrics`` from a
real ``DurableQueue`` and scrapes it every few seconds like Prometheus would
(``run_virtual``); a small evaluator for the five PromQL shapes the seed and the dashboard
use (``promql``: a selector, ``rate``, ``sum by/without``, ``histogram_quantile``, and
``/``), with ``rate``'s extrapolation and ``histogram_quantile``'s linear interpolation done
the way Prometheus does them; and pictures: the duration histogram and a 2x2 mock-up of the
Grafana dashboard drawn from ``configs/grafana/phase1-dashboard.json`` itself.

Must not know: how the queue decides anything.  The run drives ``DurableQueue`` and calls
the same ``QueueMetrics`` hooks the controller calls; it never changes queue state itself.

Invariants: every table and number is deterministic for a given seed (virtual time on a
``ManualClock``, an in-memory ``SimDisk``, one ``random.Random(seed)``; no wall-clock values),
so nbval can compare them.  Pictures are drawn only from those tables.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from phase1.clock import ManualClock
from phase1.config import Config
from phase1.core import Completed, DeadLettered, Effect, LateAck, Retried, SendToWorker, TimedOut
from phase1.jobs import Job
from phase1.runtime.dashboard import load_dashboard
from phase1.runtime.durable import DurableQueue
from phase1.runtime.metrics import QueueMetrics
from phase1.sim.disk import SimDisk

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "PROMQL_MEANING",
    "VirtualRun",
    "samples_frame",
    "exposition_excerpt",
    "feed_effects",
    "scrape",
    "run_virtual",
    "histogram_quantile",
    "duration_buckets",
    "promql",
    "promql_at",
    "explain_promql",
    "plot_duration_buckets",
    "dashboard_panels",
    "draw_dashboard",
]

#: What each of ``dashboard.SEED_PROMQL`` computes, in one sentence.
PROMQL_MEANING: dict[str, str] = {
    "throughput": "jobs completed per second, averaged over the last minute",
    "latency_p95": "the duration 95% of jobs finished within, over the last 5 minutes, "
    "interpolated inside the histogram bucket that holds the 95th percentile",
    "latency_heatmap": "completions per second in each duration bucket (cumulative 'le' "
    "buckets, summed over instances): the heatmap's columns",
    "queue_depth": "jobs in each state right now (a gauge: no rate needed)",
    "retry_ratio": "retries per dispatch over the last minute (two unlabelled counters, "
    "divided one-to-one)",
}

_LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_RANGE_RE = re.compile(r"(\w+)\[(\d+)([smh])\]")
_UNIT_S = {"s": 1, "m": 60, "h": 3600}


# == reading a registry ====================================================================
def _labels_text(labels: Mapping[str, str]) -> str:
    return ",".join(f'{k}="{labels[k]}"' for k in sorted(labels))


def samples_frame(metrics: QueueMetrics, names: Iterable[str] | None = None) -> pd.DataFrame:
    """Every sample as a row: ``sample``, ``labels``, ``value`` (no ``_created`` stamps).

    ``names`` keeps only those metric families (names as in the exposition, e.g.
    ``queue_jobs_completed_total`` or ``queue_depth_gauge``; a histogram's name keeps its
    ``_bucket``/``_count``/``_sum`` samples).  Rows are sorted, so the table is stable.
    """
    wanted = set(names) if names is not None else None
    rows = []
    for family in metrics.registry.collect():
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            if wanted is not None and s.name not in wanted and family.name not in wanted:
                continue
            rows.append((s.name, _labels_text(s.labels), float(s.value)))
    frame = pd.DataFrame(rows, columns=["sample", "labels", "value"])
    return frame.sort_values(["sample", "labels"], kind="stable").reset_index(drop=True)


def exposition_excerpt(metrics: QueueMetrics, family: str) -> str:
    """The ``/metrics`` text of one family (HELP, TYPE, samples), without ``_created`` lines."""
    base = family.removesuffix("_total")
    # a histogram's samples, but not another family that merely starts with the same name
    # (queue_jobs_retried_total is not queue_jobs_retried_by_cause_total)
    names = {family, base} | {base + suffix for suffix in ("_total", "_bucket", "_count", "_sum")}
    out = []
    for line in metrics.exposition().decode().splitlines():
        words = line.split()
        name = (
            words[2] if line.startswith("#") and len(words) > 2 else line.split("{")[0].split()[0]
        )
        if "_created" in name:
            continue
        if name in names:
            out.append(line)
    return "\n".join(out)


# == feeding and scraping ==================================================================
def feed_effects(
    metrics: QueueMetrics, effects: Iterable[Effect], durations: Mapping[str, float]
) -> None:
    """Call the ``QueueMetrics`` hooks for a durable step's effects, as the controller does."""
    for e in effects:
        if isinstance(e, SendToWorker):
            metrics.on_dispatch(1)
        elif isinstance(e, Completed):
            metrics.on_complete(e.job_id, durations.get(e.job_id, 0.0))
        elif isinstance(e, LateAck):
            metrics.on_late_ack()
        elif isinstance(e, TimedOut):
            metrics.on_timeout()
        elif isinstance(e, Retried):
            metrics.on_retry(e.cause)
        elif isinstance(e, DeadLettered):
            metrics.on_dead(e.reason)


def scrape(metrics: QueueMetrics, t_s: float) -> list[tuple[float, str, str, float]]:
    """One scrape: ``(t_s, sample, labels, value)`` for every sample of the registry."""
    return [(t_s, s, lab, v) for s, lab, v in samples_frame(metrics).itertuples(index=False)]


@dataclass(frozen=True)
class VirtualRun:
    """What ``run_virtual`` produced: the registry, its scrapes, and the raw facts."""

    metrics: QueueMetrics
    scrapes: pd.DataFrame  # t_s, sample, labels, value
    durations_s: list[float]  # every completed job's duration, in completion order
    jobs: int
    wal_records: int
    duration_s: float


def _arrival_rate(t_s: float, burst: tuple[float, float], base: float, peak: float) -> float:
    return peak if burst[0] <= t_s < burst[1] else base


def run_virtual(
    seed: int = 42,
    *,
    duration_s: float = 300.0,
    workers: int = 3,
    scrape_interval_s: float = 5.0,
    step_s: float = 0.05,
    base_per_s: float = 2.0,
    peak_per_s: float = 14.0,
    burst_s: tuple[float, float] = (100.0, 160.0),
    p_fail: float = 0.05,
    p_slow: float = 0.02,
    p_poison: float = 0.005,
) -> VirtualRun:
    """A few minutes of a busy queue in virtual time, scraped like Prometheus would.

    Jobs arrive as a Poisson process (``base_per_s``, ``peak_per_s`` during ``burst_s``) and
    go through a real ``DurableQueue`` (its WAL on an in-memory ``SimDisk``, time on a
    ``ManualClock``).  ``workers`` simulated workers take one job each; an attempt runs a
    lognormal time (median 0.25 s), fails with ``p_fail``, or runs 3.5-6 s (past the 3 s
    task timeout) with ``p_slow``; ``p_poison`` of jobs fail every attempt.  Every effect
    is fed to ``QueueMetrics`` through the controller's hooks, and the registry is scraped
    every ``scrape_interval_s``.  Same seed, same scrapes.
    """
    rng = random.Random(seed)
    t0_s = 1_704_103_200.0  # 2024-01-01T10:00:00Z
    clock = ManualClock(start_s=t0_s)
    disk = SimDisk()
    config = Config().replace(
        wal_path="data/wal.log",
        snapshot_path="data/snapshot.json",
        worker_count=workers,
        task_timeout_s=3.0,
        max_retry=3,
    )
    metrics = QueueMetrics()
    dq = DurableQueue(config, disk=disk, clock=clock)
    rows: list[tuple[float, str, str, float]] = []
    durations: list[float] = []
    busy: dict[
        int, tuple[float, str, int, str, float]
    ] = {}  # worker -> (done, id, attempt, outcome, run_s)
    poison: set[str] = set()
    next_arrival = rng.expovariate(base_per_s)
    n_jobs = 0
    steps = round(duration_s / step_s)
    every = round(scrape_interval_s / step_s)
    try:
        for k in range(steps + 1):
            t = k * step_s
            clock.advance(max(0.0, t0_s + t - clock.now_s()))
            arrived: list[Job] = []
            while next_arrival <= t:
                job_id = f"job-{n_jobs:05d}"
                if rng.random() < p_poison:
                    poison.add(job_id)
                arrived.append(Job(job_id, {"index": n_jobs}))
                n_jobs += 1
                rate = _arrival_rate(next_arrival, burst_s, base_per_s, peak_per_s)
                next_arrival += rng.expovariate(rate)
            if arrived:
                dq.submit(arrived)
            for w in sorted(busy):
                done_s, job_id, attempt, outcome, run_s = busy[w]
                if done_s > t:
                    continue
                del busy[w]
                if outcome == "fail":
                    step = dq.fail(job_id, attempt, f"attempt {attempt} failed")
                    feed_effects(metrics, step.effects, {})
                else:
                    step = dq.ack(job_id, attempt)
                    if any(isinstance(e, Completed) for e in step.effects):
                        durations.append(run_s)
                    feed_effects(metrics, step.effects, {job_id: run_s})
            feed_effects(metrics, dq.tick().effects, {})
            for w in range(workers):
                if w in busy:
                    continue
                step = dq.dispatch(worker_id=w)
                sends = [e for e in step.effects if isinstance(e, SendToWorker)]
                if not sends:
                    break
                feed_effects(metrics, sends, {})
                send = sends[0]
                draw = rng.random()
                if send.job.id in poison or draw < p_fail:
                    outcome, run_s = "fail", round(rng.uniform(0.01, 0.2), 3)
                elif draw < p_fail + p_slow:
                    outcome, run_s = "slow", round(rng.uniform(3.5, 6.0), 3)
                else:
                    outcome, run_s = (
                        "ok",
                        round(min(rng.lognormvariate(math.log(0.25), 0.7), 2.9), 3),
                    )
                busy[w] = (t + run_s, send.job.id, send.attempt, outcome, run_s)
            if k % every == 0:
                metrics.set_depth(dq.counts())
                rows += scrape(metrics, round(t, 6))
        wal_records = dq.core.last_seq
    finally:
        dq.close()
    scrapes = pd.DataFrame(rows, columns=["t_s", "sample", "labels", "value"])
    return VirtualRun(metrics, scrapes, durations, n_jobs, wal_records, duration_s)


# == PromQL, the five shapes we need =======================================================
def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """Prometheus's ``histogram_quantile`` for one histogram.

    ``buckets`` are ``(le, cumulative count)`` pairs, ``+Inf`` included.  As in Prometheus
    (``promql/quantile.go``): sort by ``le``; force the counts to be monotonic; the rank is
    ``q * count(+Inf)``; find the first bucket whose count reaches it; interpolate linearly
    between that bucket's lower bound (the previous ``le``, or 0 for the first bucket) and
    its ``le``.  A rank in the ``+Inf`` bucket returns the largest finite ``le``.  NaN when
    there are no observations, fewer than two buckets or no ``+Inf`` bucket.
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    bs = sorted((float(le), float(c)) for le, c in buckets)
    if len(bs) < 2 or not math.isinf(bs[-1][0]):
        return math.nan
    fixed: list[tuple[float, float]] = []
    top = -math.inf
    for le, c in bs:
        top = max(top, c)
        fixed.append((le, top))
    observations = fixed[-1][1]
    if not observations > 0:
        return math.nan
    rank = q * observations
    b = next(i for i, (_, c) in enumerate(fixed) if c >= rank)
    if b == len(fixed) - 1:
        return fixed[-2][0]
    if b == 0 and fixed[0][0] <= 0:
        return fixed[0][0]
    start, end, count = 0.0, fixed[b][0], fixed[b][1]
    if b > 0:
        start = fixed[b - 1][0]
        count -= fixed[b - 1][1]
        rank -= fixed[b - 1][1]
    return start + (end - start) * (rank / count)


def duration_buckets(source: QueueMetrics | pd.DataFrame) -> list[tuple[float, float]]:
    """``(le, cumulative count)`` of ``queue_job_duration_seconds`` from a registry, or
    from one scrape (the rows of a ``samples_frame``)."""
    frame = samples_frame(source) if isinstance(source, QueueMetrics) else source
    rows = frame[frame["sample"] == "queue_job_duration_seconds_bucket"]
    out = []
    for labels, value in zip(rows["labels"], rows["value"], strict=True):
        le = dict(_LABEL_RE.findall(labels))["le"]
        out.append((float(le), float(value)))
    return sorted(out)


def _extrapolated_rate(ts: Sequence[float], vs: Sequence[float], start: float, end: float) -> float:
    """Prometheus's ``extrapolatedRate`` for a counter (``rate()``), window ``(start, end]``."""
    n = len(ts)
    if n < 2:
        return math.nan
    increase = vs[-1] - vs[0]
    for a, b in zip(vs, vs[1:], strict=False):  # a counter reset: the counter restarted at 0
        if b < a:
            increase += a
    sampled = ts[-1] - ts[0]
    average = sampled / (n - 1)
    threshold = average * 1.1
    to_start = ts[0] - start
    to_end = end - ts[-1]
    if to_start >= threshold:
        to_start = average / 2
    if increase > 0 and vs[0] >= 0:
        to_zero = sampled * (vs[0] / increase)  # a counter does not extrapolate below 0
        to_start = min(to_start, to_zero)
    if to_end >= threshold:
        to_end = average / 2
    return increase * ((sampled + to_start + to_end) / sampled) / (end - start)


Vector = dict[str, pd.Series]  # labels text -> values indexed by scrape time


def _split_top(expr: str, op: str) -> list[str]:
    depth = 0
    for i, ch in enumerate(expr):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and expr.startswith(op, i):
            return [expr[:i].strip(), expr[i + len(op) :].strip()]
    return [expr]


def _drop(labels: str, names: set[str], keep: bool) -> str:
    pairs = dict(_LABEL_RE.findall(labels))
    kept = {k: v for k, v in pairs.items() if (k in names) == keep}
    return _labels_text(kept)


def _select(scrapes: pd.DataFrame, name: str) -> Vector:
    sub = scrapes[scrapes["sample"] == name]
    return {
        str(lab): g.set_index("t_s")["value"].sort_index()
        for lab, g in sub.groupby("labels", sort=True)
    }


def _rate(series: pd.Series, window_s: float) -> pd.Series:
    ts = list(series.index)
    vs = list(series.values)
    out = []
    for i, t in enumerate(ts):
        lo = t - window_s
        j = next(k for k in range(i + 1) if ts[k] > lo)  # left-open window, as Prometheus 3
        out.append(_extrapolated_rate(ts[j : i + 1], vs[j : i + 1], lo, t))
    return pd.Series(out, index=series.index)


def _eval(scrapes: pd.DataFrame, expr: str) -> Vector:
    expr = expr.strip()
    parts = _split_top(expr, " / ")
    if len(parts) == 2:
        left, right = _eval(scrapes, parts[0]), _eval(scrapes, parts[1])
        # one-to-one vector matching: only series with exactly the same labels divide
        return {lab: left[lab] / right[lab] for lab in left if lab in right}
    m = re.fullmatch(r"histogram_quantile\(\s*([0-9.]+)\s*,\s*(.+)\)", expr)
    if m:
        q, inner = float(m.group(1)), _eval(scrapes, m.group(2))
        groups: dict[str, list[tuple[float, pd.Series]]] = {}
        for lab, s in inner.items():
            le = dict(_LABEL_RE.findall(lab)).get("le")
            if le is not None:
                groups.setdefault(_drop(lab, {"le"}, keep=False), []).append((float(le), s))
        out: Vector = {}
        for lab, bs in groups.items():
            frame = pd.DataFrame({le: s for le, s in bs})
            out[lab] = frame.apply(lambda row: histogram_quantile(q, list(row.items())), axis=1)
        return out
    m = re.fullmatch(r"sum\s+(by|without)\s*\(([\w,\s]*)\)\s*\((.+)\)", expr)
    if m:
        names = {n.strip() for n in m.group(2).split(",") if n.strip()}
        summed: Vector = {}
        for lab, s in _eval(scrapes, m.group(3)).items():
            key = _drop(lab, names, keep=m.group(1) == "by")
            summed[key] = summed[key] + s if key in summed else s
        return dict(sorted(summed.items()))
    m = re.fullmatch(r"rate\((.+)\)", expr)
    if m:
        r = _RANGE_RE.fullmatch(m.group(1).strip())
        if not r:
            raise ValueError(
                f"promql: rate() needs a range selector like name[1m], got {m.group(1)!r}"
            )
        window_s = int(r.group(2)) * _UNIT_S[r.group(3)]
        return {lab: _rate(s, window_s) for lab, s in _select(scrapes, r.group(1)).items()}
    if re.fullmatch(r"[a-zA-Z_:][\w:]*", expr):
        return _select(scrapes, expr)
    raise ValueError(
        f"promql: {expr!r} is not one of the shapes this evaluator knows (a metric name, "
        "rate(name[1m]), sum by/without (...) (...), histogram_quantile(q, ...), a / b)"
    )


def promql(scrapes: pd.DataFrame, expr: str) -> pd.DataFrame:
    """Evaluate ``expr`` at every scrape time: one column per result series (its labels,
    ``{}`` when it has none), indexed by ``t_s``.  Empty when nothing matches."""
    vec = _eval(scrapes, expr)
    frame = pd.DataFrame({("{" + lab + "}"): s for lab, s in vec.items()})
    frame.index.name = "t_s"
    return frame


def promql_at(scrapes: pd.DataFrame, expr: str, t_s: float) -> dict[str, float]:
    """``expr`` at one scrape time, as ``{labels: value}`` (rounded to 4 places, NaN kept)."""
    frame = promql(scrapes, expr)
    if frame.empty:
        return {}
    row = frame.loc[t_s]
    return {str(k): round(float(v), 4) for k, v in row.items()}


def explain_promql(scrapes: pd.DataFrame, queries: Mapping[str, str], t_s: float) -> pd.DataFrame:
    """One row per query: name, PromQL, what it computes, and its value at ``t_s``.

    A query with many series shows its largest three (by value).
    """
    rows = []
    for name, expr in queries.items():
        values = promql_at(scrapes, expr, t_s)
        if not values:
            shown = "no series (nothing matched)"
        elif len(values) == 1:
            shown = f"{next(iter(values.values())):g}"
        else:
            k, v = max(sorted(values.items()), key=lambda kv: _sortable(kv[1]))  # first on ties
            shown = f"{len(values)} series; largest {k} = {v:g}"
        rows.append(
            {
                "name": name,
                "query": expr,
                "computes": PROMQL_MEANING.get(name, ""),
                f"at t={t_s:g}s": shown.strip(),
            }
        )
    return pd.DataFrame(rows)


def _sortable(v: float) -> float:
    return -math.inf if math.isnan(v) else v


# == pictures ==============================================================================
def _le_label(le: float) -> str:
    return "+Inf" if math.isinf(le) else f"{le:g}"


def plot_duration_buckets(
    buckets: Sequence[tuple[float, float]], q: float = 0.95, ax: Axes | None = None
) -> Figure:
    """Bars of ``queue_job_duration_seconds`` per bucket (not cumulative), with the
    ``q``-quantile from ``histogram_quantile`` marked inside its bucket."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(8.0, 3.2))
    else:
        fig = ax.figure  # type: ignore[assignment]
    les = [le for le, _ in buckets]
    cum = [c for _, c in buckets]
    per = [c - p for c, p in zip(cum, [0.0, *cum[:-1]], strict=True)]
    labels = [f"≤{_le_label(le)}" for le in les]
    ax.bar(range(len(per)), per, color="#5b8cc0")
    ax.set_xticks(range(len(per)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_xlabel("bucket: duration ≤ le (seconds)")
    ax.set_ylabel("jobs")
    value = histogram_quantile(q, buckets)
    if not math.isnan(value):
        b = next(i for i, le in enumerate(les) if le >= value)
        lower = les[b - 1] if b > 0 else 0.0
        frac = (value - lower) / (les[b] - lower) if les[b] > lower else 1.0
        x = b - 0.5 + frac
        ax.axvline(x, color="#e53935", linestyle="--")
        ax.annotate(
            f"P{round(q * 100)} ≈ {value:.3f} s",
            (x, max(per) * 0.9),
            xytext=(6, 0),
            textcoords="offset points",
            color="#e53935",
        )
    ax.set_title("queue_job_duration_seconds: jobs per bucket")
    fig.tight_layout()
    return fig


def dashboard_panels(
    dashboard: Mapping[str, Any] | None = None, rows: int = 2
) -> list[dict[str, Any]]:
    """The dashboard's panels in its first ``rows`` grid rows (8 units each), top-left first."""
    d = dashboard if dashboard is not None else load_dashboard()
    panels = [p for p in d.get("panels", []) if p.get("gridPos", {}).get("y", 0) < 8 * rows]
    return sorted(panels, key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))


def _legend(fmt: str, labels: str, fallback: str) -> str:
    pairs = dict(_LABEL_RE.findall(labels))
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: pairs.get(m.group(1), ""), fmt).strip()
    return text or fallback


_GRAFANA: dict[str, str] = {
    "figure": "#111217",
    "panel": "#181b1f",
    "text": "#ccccdc",
    "grid": "#2c3235",
}
_PALETTE = ("#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9")


def _style(ax: Axes, title: str, expr: str) -> None:
    ax.set_facecolor(_GRAFANA["panel"])
    ax.set_title(title, loc="left", color=_GRAFANA["text"], fontsize=10, pad=16, fontweight="bold")
    ax.text(
        0.0,
        1.02,
        expr if len(expr) <= 70 else expr[:67] + "...",
        transform=ax.transAxes,
        color="#8e8e8e",
        fontsize=6.5,
        family="monospace",
    )
    ax.tick_params(colors=_GRAFANA["text"], labelsize=7)
    for spine in ax.spines.values():
        spine.set_color(_GRAFANA["grid"])
    ax.grid(True, color=_GRAFANA["grid"], linewidth=0.6)
    ax.set_axisbelow(True)


def _series_for(panel: Mapping[str, Any], scrapes: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    out = []
    for target in panel.get("targets", []):
        frame = promql(scrapes, target["expr"])
        for col in frame.columns:
            metric = re.search(r"queue_\w+", target["expr"])
            fallback = metric.group(0) if metric else target["refId"]
            name = _legend(target.get("legendFormat", ""), col, fallback=fallback)
            out.append((name, frame[col]))
    return out


def _unstacked(panel: Mapping[str, Any]) -> set[str]:
    names = set()
    for o in panel.get("fieldConfig", {}).get("overrides", []):
        if o.get("matcher", {}).get("id") != "byName":
            continue
        for prop in o.get("properties", []):
            if prop.get("id") == "custom.stacking" and prop["value"].get("mode") == "none":
                names.add(o["matcher"]["options"])
    return names


def _draw_timeseries(
    ax: Axes, panel: Mapping[str, Any], scrapes: pd.DataFrame, step_s: float
) -> None:
    custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {})
    stacked = custom.get("stacking", {}).get("mode") == "normal"
    bars = custom.get("drawStyle") == "bars"
    alone = _unstacked(panel)
    series = _series_for(panel, scrapes)
    colors = _PALETTE
    bottom = None
    stack_names, stack_values = [], []
    for i, (name, s) in enumerate(series):
        color = colors[i % len(colors)]
        values = s.fillna(0.0)
        if name in alone:
            ax.plot(s.index, values, color=color, linestyle="--", linewidth=1.2, label=name)
        elif bars:
            base = bottom if (stacked and bottom is not None) else 0.0
            ax.bar(s.index, values, width=step_s * 0.8, bottom=base, color=color, label=name)
            bottom = values if bottom is None else bottom + values
        elif stacked:
            stack_names.append(name)
            stack_values.append(values)
        else:
            ax.plot(s.index, s, color=color, linewidth=1.4, label=name)
            ax.fill_between(s.index, 0, values, color=color, alpha=0.1)
    if stack_values:
        ax.stackplot(
            stack_values[0].index,
            *stack_values,
            labels=stack_names,
            colors=list(colors[: len(stack_values)]),
            alpha=0.6,
        )
    ax.set_ylim(bottom=0)
    legend = ax.legend(fontsize=6.5, loc="upper left", ncol=3, frameon=False)
    for text in legend.get_texts():
        text.set_color(_GRAFANA["text"])


def _draw_heatmap(ax: Axes, panel: Mapping[str, Any], scrapes: pd.DataFrame) -> None:
    frame = promql(scrapes, panel["targets"][0]["expr"])
    les = sorted((float(dict(_LABEL_RE.findall(c.strip("{}")))["le"]), c) for c in frame.columns)
    cum = frame[[c for _, c in les]].fillna(0.0).to_numpy()
    per = cum.copy()
    per[:, 1:] = cum[:, 1:] - cum[:, :-1]  # Grafana's "heatmap" format de-accumulates le
    ts = frame.index.to_numpy()
    step = float(ts[1] - ts[0]) if len(ts) > 1 else 1.0
    from matplotlib.colors import LinearSegmentedColormap

    cmap = LinearSegmentedColormap.from_list(
        "grafana_oranges", [_GRAFANA["panel"], "#8a3b12", "#ff780a", "#ffd7a8"]
    )
    ax.imshow(
        per.T**0.5,  # the panel's exponential colour scale, exponent 0.5
        aspect="auto",
        origin="lower",
        cmap=cmap,
        extent=(ts[0] - step / 2, ts[-1] + step / 2, -0.5, len(les) - 0.5),
        interpolation="nearest",
    )
    ticks = list(range(0, len(les), 2))
    ax.set_yticks(ticks, [_le_label(les[i][0]) for i in ticks])
    ax.set_ylabel("le (s)", color=_GRAFANA["text"], fontsize=7)
    ax.grid(False)


def draw_dashboard(
    scrapes: pd.DataFrame, dashboard: Mapping[str, Any] | None = None, rows: int = 2
) -> Figure:
    """The Grafana dashboard as a picture: its panels' titles, queries, draw styles and
    stacking read from the JSON model, their data evaluated from ``scrapes`` by ``promql``."""
    import matplotlib.pyplot as plt

    panels = dashboard_panels(dashboard, rows)
    d = dashboard if dashboard is not None else load_dashboard()
    ts = sorted(scrapes["t_s"].unique())
    step_s = float(ts[1] - ts[0]) if len(ts) > 1 else 1.0
    fig, axes = plt.subplots(rows, 2, figsize=(12, 3.6 * rows), squeeze=False)
    fig.patch.set_facecolor(_GRAFANA["figure"])
    used = set()
    for panel in panels:
        r, c = panel["gridPos"]["y"] // 8, 0 if panel["gridPos"]["x"] < 12 else 1
        ax = axes[r][c]
        used.add((r, c))
        _style(ax, panel.get("title", ""), panel["targets"][0]["expr"])
        if panel.get("type") == "heatmap":
            _draw_heatmap(ax, panel, scrapes)
        else:
            _draw_timeseries(ax, panel, scrapes, step_s)
        ax.set_xlabel("virtual time (s)", color=_GRAFANA["text"], fontsize=7)
    for r in range(rows):
        for c in range(2):
            if (r, c) not in used:
                axes[r][c].set_visible(False)
    fig.suptitle(
        f"Grafana: {d.get('title', '')} (mock-up)", color=_GRAFANA["text"], x=0.01, ha="left"
    )
    fig.tight_layout()
    return fig
