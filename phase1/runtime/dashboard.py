"""The seed's PromQL and the Grafana dashboard built from it: one source for notebooks and tests.

``SEED_PROMQL`` holds the seed's queries ("Prometheus 查詢範例" and "Grafana Dashboard"):
throughput, P95 latency, the latency heatmap, queue depth by state and the retry ratio.
``ERROR_PROMQL`` holds the error panel's three rates.  ``configs/grafana/phase1-dashboard.json``
uses every one of them verbatim; ``tests/test_metrics.py`` checks that, and
``tests/test_prometheus_server.py`` runs them against a real Prometheus.

Every query is the seed's text, unchanged.  The retry ratio
``rate(queue_jobs_retried_total[1m]) / rate(queue_jobs_dispatched_total[1m])`` works as written
because both counters are unlabelled: a division matches series one-to-one by their label
sets, so a ``cause`` label on the left alone would match nothing and return no series.  The
breakdown by cause lives in ``queue_jobs_retried_by_cause_total{cause}``, which only the
error panel reads.

>>> sorted(SEED_PROMQL)
['latency_heatmap', 'latency_p95', 'queue_depth', 'retry_ratio', 'throughput']
>>> len(load_dashboard()["panels"]) >= 4
True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = [
    "DASHBOARD_PATH",
    "ERROR_PROMQL",
    "SEED_PROMQL",
    "dashboard_queries",
    "load_dashboard",
]

#: The repository's dashboard file (the package is installed editable from the repo).
DASHBOARD_PATH = (
    Path(__file__).resolve().parents[2] / "configs" / "grafana" / "phase1-dashboard.json"
)

#: name -> PromQL, the seed's five queries, verbatim.
SEED_PROMQL: dict[str, str] = {
    # 吞吐量（每秒完成任務數）: jobs completed per second.
    "throughput": "rate(queue_jobs_completed_total[1m])",
    # P95 延遲
    "latency_p95": "histogram_quantile(0.95, rate(queue_job_duration_seconds_bucket[5m]))",
    # 延遲分佈: the heatmap panel, one series per bucket.
    "latency_heatmap": "sum by (le) (rate(queue_job_duration_seconds_bucket[5m]))",
    # 佇列積壓: queue depth by state.
    "queue_depth": "queue_depth_gauge",
    # 重試率: retries per dispatch (both counters unlabelled; see the module docstring).
    "retry_ratio": "rate(queue_jobs_retried_total[1m]) / rate(queue_jobs_dispatched_total[1m])",
}

#: name -> PromQL, the error bars (retry by cause/timeout/dead).
ERROR_PROMQL: dict[str, str] = {
    "retries": "rate(queue_jobs_retried_by_cause_total[1m])",
    "timeouts": "rate(queue_jobs_timeouts_total[1m])",
    "dead": "rate(queue_jobs_dead_total[1m])",
}


def load_dashboard(path: str | Path | None = None) -> dict[str, Any]:
    """The Grafana dashboard JSON model, parsed."""
    p = Path(path) if path is not None else DASHBOARD_PATH
    data = json.loads(p.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{p}: a Grafana dashboard is a JSON object")
    return data


def dashboard_queries(dashboard: dict[str, Any] | None = None) -> list[str]:
    """Every target ``expr`` in the dashboard's panels (rows' nested panels included)."""
    d = dashboard if dashboard is not None else load_dashboard()
    exprs: list[str] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                if "expr" in target:
                    exprs.append(str(target["expr"]))
            walk(panel.get("panels", []))

    walk(d.get("panels", []))
    return exprs
