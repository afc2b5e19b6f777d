"""Named scenarios: a seed in, ``SimConfig(config, plan, workload)`` out, and ``save_run``.

Owns: ``SCENARIOS`` (name -> (description, builder)), ``scenario(name, seed)``,
``run_scenario`` and ``save_run`` (what ``phase1 sim`` writes: ``ledger.json``,
``events.csv``, ``throughput.csv``, ``depth.csv``, ``recoveries.csv`` and PNG plots).

Must not know: how the harness runs (it only builds inputs and writes results).  Every
number is a constant here, with its unit last; the seed only reaches the harness, so a
scenario is the same for every seed except for what the seed draws.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace

from phase1.config import Config
from phase1.sim.harness import FaultPlan, JobKind, RunResult, SimConfig, Simulation, Workload

__all__ = ["SCENARIOS", "scenario", "scenario_names", "run_scenario", "save_run"]

WORKERS = 4
SERVICE_S_MEAN = 0.002  # 4 workers at 2 ms: capacity ~2,000 jobs/s
RATE_PER_S = 1_200.0  # ~75 % of the mix's capacity (~1,630 jobs/s)
JOBS = 5_000
MIX = (
    JobKind("email", weight=0.6, service_s_mean=SERVICE_S_MEAN, priority_min=0, priority_max=3),
    JobKind(
        "report",
        weight=0.3,
        service_s_mean=2 * SERVICE_S_MEAN,
        service_dist="lognormal",
        priority_min=0,
        priority_max=10,
    ),
    JobKind("ping", weight=0.1, service_s_mean=SERVICE_S_MEAN / 4, service_dist="fixed"),
)


def _config(**changes: object) -> Config:
    base = Config().replace(
        worker_count=WORKERS,
        task_timeout_s=0.25,
        snapshot_interval_s=0.5,
        timeout_check_interval_s=0.05,
        max_retry=5,
        wal_path="sim/wal.log",
        snapshot_path="sim/snapshot.json",
    )
    return base.replace(**changes)


def _workload(**changes: object) -> Workload:
    base = Workload(
        jobs=JOBS,
        rate_per_s=RATE_PER_S,
        mix=MIX,
        delayed_probability=0.05,
        delay_s_mean=0.05,
        depends_probability=0.05,
        burst_rate_per_s=0.5,
        burst_size=50,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def steady(seed: int) -> SimConfig:
    """No faults: the baseline every other scenario is read against."""
    return SimConfig(_config(), FaultPlan(), _workload())


def crash_storm(seed: int) -> SimConfig:
    """A crash every ~0.5 s, a third of them power losses (torn writes), batch commit."""
    plan = FaultPlan(
        crash_rate_per_s=2.0,
        power_loss_probability=0.33,
        crash_window_s=(0.0, JOBS / RATE_PER_S),
        torn_write_probability=0.5,
        zero_fill_probability=0.25,
    )
    return SimConfig(_config(snapshot_interval_s=0.25), plan, _workload())


def slow_workers(seed: int) -> SimConfig:
    """A quarter of the workers take 20x longer: late ACKs are fenced, timeouts retry."""
    plan = FaultPlan(slow_worker_fraction=0.25, slow_factor=20.0)
    return SimConfig(_config(task_timeout_s=0.02), plan, _workload(rate_per_s=1_000.0))


def stuck_workers(seed: int) -> SimConfig:
    """A quarter of the workers hang on every job: only timeouts rescue those jobs."""
    plan = FaultPlan(stuck_worker_fraction=0.25, stuck_probability=1.0)
    return SimConfig(_config(task_timeout_s=0.05), plan, _workload(rate_per_s=1_000.0))


def power_loss(seed: int) -> SimConfig:
    """Three power losses under batch commit: nothing acknowledged may be lost."""
    plan = FaultPlan(crash_at_s=((0.7, "power"), (1.6, "power"), (2.5, "power")))
    return SimConfig(_config(commit_policy="batch"), plan, _workload())


def power_loss_never(seed: int) -> SimConfig:
    """The same power losses under commit_policy=never: what the page cache held is lost."""
    plan = FaultPlan(crash_at_s=((0.7, "power"), (1.6, "power"), (2.5, "power")))
    return SimConfig(_config(commit_policy="never"), plan, _workload(depends_probability=0.0))


SCENARIOS: dict[str, tuple[str, Callable[[int], SimConfig]]] = {
    "steady": ((steady.__doc__ or "").strip(), steady),
    "crash-storm": ((crash_storm.__doc__ or "").strip(), crash_storm),
    "slow-workers": ((slow_workers.__doc__ or "").strip(), slow_workers),
    "stuck-workers": ((stuck_workers.__doc__ or "").strip(), stuck_workers),
    "power-loss": ((power_loss.__doc__ or "").strip(), power_loss),
    "power-loss-never": ((power_loss_never.__doc__ or "").strip(), power_loss_never),
}


def scenario_names() -> list[str]:
    return list(SCENARIOS)


def scenario(name: str, seed: int) -> SimConfig:
    """``(config, plan, workload)`` of the named scenario; ``KeyError`` names the choices."""
    try:
        return SCENARIOS[name][1](seed)
    except KeyError:
        raise KeyError(f"no scenario {name!r}; choose one of {', '.join(SCENARIOS)}") from None


def run_scenario(
    name: str, seed: int, *, until_s: float | None = None, debug_check: bool = False
) -> RunResult:
    config, plan, workload = scenario(name, seed)
    return Simulation(config, plan, workload, seed, debug_check).run(until_s)


def save_run(result: RunResult, out_dir: str) -> list[str]:
    """Write the ledger, CSVs and PNG plots of ``result`` into ``out_dir``; returns paths."""
    from phase1.lessons import plots

    os.makedirs(out_dir, exist_ok=True)
    written: list[str] = []

    def path(name: str) -> str:
        p = os.path.join(out_dir, name)
        written.append(p)
        return p

    with open(path("ledger.json"), "w", encoding="utf-8") as f:
        json.dump(result.ledger, f, indent=2, sort_keys=True)
        f.write("\n")
    result.events.to_csv(path("events.csv"), index=False)
    result.throughput().to_csv(path("throughput.csv"), index=False)
    result.depth().to_csv(path("depth.csv"), index=False)
    result.recoveries().to_csv(path("recoveries.csv"), index=False)
    result.latencies().to_csv(path("latencies.csv"), index=False)
    for name, fig in (
        ("throughput.png", plots.plot_run_throughput(result)),
        ("depth.png", plots.plot_run_depth(result)),
        ("latency.png", plots.plot_run_latency(result)),
    ):
        fig.savefig(path(name), dpi=100)
        plots.close(fig)
    return written
