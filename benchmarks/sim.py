"""Simulator speed: simulated jobs per wall-clock second, real modules vs a bare SimPy model.

``bench_sim(quick)`` returns rows ``{name, value, unit, baseline, ratio, target}``:

* ``sim.bare_simpy``: a producer, 2 workers and a ``simpy.Store`` (no queue logic, no WAL),
  the same arrival rate and service times: the ceiling SimPy itself sets;
* ``sim.crash_storm``: the ``crash-storm`` scenario (real ``QueueCore``, ``WalWriter``,
  snapshots and ``recover`` on a ``SimDisk``, crashes and power losses), measured in the
  same process right after the bare model; ratio = harness / bare;
* ``sim.sweep_20x3``: a 20-point x 3-seed sweep of 10,000-job runs on the default
  2-process pool, wall seconds (``quick``: 4 points x 3 seeds of 2,000 jobs).

Targets (information only): >= 50,000 jobs/s and >= 1/3 of the bare model; sweep <= 60 s.
"""

from __future__ import annotations

import random
import time
from typing import Any

import simpy

__all__ = ["bench_sim", "bare_model", "sweep_point"]


def bare_model(jobs: int, rate_per_s: float, service_s_mean: float, seed: int = 0) -> int:
    """A producer, 2 workers and a Store: returns jobs completed."""
    env = simpy.Environment()
    store: simpy.Store = simpy.Store(env)
    rng = random.Random(seed)
    done = [0]

    def producer() -> Any:
        for i in range(jobs):
            yield env.timeout(rng.expovariate(rate_per_s))
            yield store.put(i)

    def worker() -> Any:
        while True:
            yield store.get()
            yield env.timeout(rng.expovariate(1.0 / service_s_mean))
            done[0] += 1

    env.process(producer())
    for _ in range(2):
        env.process(worker())
    env.run()
    return done[0]


def sweep_point(snapshot_interval_s: float, seed: int, jobs: int) -> dict[str, Any]:
    """One 2-worker run of ``jobs`` jobs with crashes (picklable, for the sweep row)."""
    from phase1.sim.harness import Simulation
    from phase1.sim.scenarios import scenario

    config, plan, workload = scenario("crash-storm", seed)
    from dataclasses import replace

    workload = replace(workload, jobs=jobs)
    config = config.replace(snapshot_interval_s=snapshot_interval_s)
    res = Simulation(config, plan, workload, seed).run()
    return {"completed": res.ledger["completed"], "lost": res.ledger["lost"]}


def bench_sim(quick: bool = False) -> list[dict[str, Any]]:
    from dataclasses import replace

    from phase1.sim.experiments import sweep
    from phase1.sim.harness import Simulation
    from phase1.sim.scenarios import scenario

    jobs = 5_000 if quick else 20_000
    config, plan, workload = scenario("crash-storm", 1)
    workload = replace(workload, jobs=jobs)
    plan = replace(plan, crash_window_s=(0.0, jobs / workload.rate_per_s))
    # the same arrival rate and mean service time for the bare model
    mean_service = sum(k.weight * k.service_s_mean for k in workload.mix) / sum(
        k.weight for k in workload.mix
    )
    t0 = time.perf_counter()
    n_bare = bare_model(jobs, workload.rate_per_s, mean_service / 2)  # 2 workers, same load
    bare_rate = n_bare / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    res = Simulation(config, plan, workload, 1).run()
    harness_rate = res.ledger["completed"] / (time.perf_counter() - t0)
    points, seeds, sweep_jobs = (4, [0, 1, 2], 2_000) if quick else (20, [0, 1, 2], 10_000)
    grid = {"snapshot_interval_s": [0.1 + 0.05 * i for i in range(points)], "jobs": [sweep_jobs]}
    t0 = time.perf_counter()
    sweep(sweep_point, grid, seeds, progress=False)
    sweep_s = time.perf_counter() - t0
    return [
        {
            "name": "sim.bare_simpy",
            "value": bare_rate,
            "unit": "jobs/s",
            "baseline": None,
            "ratio": None,
            "target": "",
        },
        {
            "name": "sim.crash_storm",
            "value": harness_rate,
            "unit": "jobs/s",
            "baseline": bare_rate,
            "ratio": harness_rate / bare_rate,
            "target": ">= 50,000 jobs/s and >= 1/3 of bare",
            "crashes": res.ledger["crashes"],
            "lost": res.ledger["lost"],
        },
        {
            "name": "sim.sweep_20x3" if not quick else "sim.sweep_4x3_quick",
            "value": sweep_s,
            "unit": "s",
            "baseline": None,
            "ratio": None,
            "target": "<= 60 s" if not quick else "",
        },
    ]


if __name__ == "__main__":
    for row in bench_sim(quick=False):
        print(row)
