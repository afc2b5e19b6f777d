"""Simulator speed: simulated jobs per wall-clock second, real modules vs a bare SimPy model.

``bench_sim(quick)`` returns rows ``{name, value, unit, baseline, ratio, target, ...}``;
``python -m benchmarks`` prints them through ``bench(ctx)`` (group ``sim``):

* ``sim.bare_simpy``: a producer, 2 workers and a ``simpy.Store`` (no queue logic, no WAL),
  the same arrival rate and total service capacity: the ceiling SimPy itself sets;
* ``sim.crash_storm``: the ``crash-storm`` scenario (real ``QueueCore``, ``WalWriter``,
  snapshots and ``recover`` on a ``SimDisk``, crashes and power losses over the whole run),
  measured in the same process, alternating with the bare model; each is the median of
  ``REPEATS`` runs; ratio = harness / bare.  The notes add both medians per CPU second
  (``time.process_time``), which other processes on a busy machine move much less than
  the wall-clock figures.  The scenario runs at the runtime's defaults: one job per
  ``enqueue_jobs`` call, ``prefetch`` 1;
* ``sim.bare_simpy_batched`` / ``sim.crash_storm_batched`` (information): the same pair
  with clients submitting ``BATCH`` jobs per call and ``prefetch=BATCH`` (the end-to-end
  benchmark's prefetch): what batched semantics buy at crash-storm's service times;
* ``sim.bare_modules`` (information): the floor under the harness: the same real
  ``QueueCore``, ``WalWriter`` and ``SimDisk`` driven by a plain loop, no SimPy, no harness,
  no faults: per job one append + fsync for its ENQUEUE and DISPATCH and one for its ACK
  (the harness's common shape); median of ``REPEATS`` runs, and the harness's rate as a
  share of it;
* ``sim.sweep``: a 20-point x 3-seed sweep of 10,000-job crash-storm runs through
  ``phase1.sim.experiments.sweep`` on its default 2-process pool, wall seconds (shrunk with
  ``--quick``: 4 points x 3 seeds of 2,000 jobs; ``--smoke``: 2 x 1 of 300; the notes say so
  and the 60 s target applies to the full size only).

Targets (information only): >= 50,000 jobs/s and >= 1/3 of the bare model; sweep <= 60 s.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import simpy

from benchmarks._harness import Context, Result, ratio

__all__ = ["bench", "bench_sim", "bare_model", "bare_modules", "sweep_point"]

REPEATS = 3
BATCH = 16  # jobs per enqueue_jobs call and prefetch, for the *_batched rows
TARGET_JOBS_S = 50_000
TARGET_SWEEP_S = 60.0
# mode -> (crash-storm jobs, sweep points, sweep seeds, jobs per sweep run)
SIZES = {
    "full": (20_000, 20, (0, 1, 2), 10_000),
    "quick": (5_000, 4, (0, 1, 2), 2_000),
    "smoke": (1_000, 2, (0,), 300),
}


def bare_model(
    jobs: int, rate_per_s: float, service_s_mean: float, seed: int = 0, batch: int = 1
) -> int:
    """A producer, 2 workers and a Store: returns jobs completed.  ``batch``: the producer
    puts that many jobs at each arrival (arrivals at ``rate_per_s / batch``)."""
    env = simpy.Environment()
    store: simpy.Store = simpy.Store(env)
    rng = random.Random(seed)
    done = [0]

    def producer() -> Any:
        for i in range(0, jobs, batch):
            yield env.timeout(rng.expovariate(rate_per_s / batch))
            for j in range(i, min(i + batch, jobs)):
                yield store.put(j)

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


def bare_modules(jobs: int, seed: int = 0) -> int:
    """The real core, WAL writer and ``SimDisk`` in a plain loop (no SimPy, no faults):
    per job ``enqueue`` + ``dispatch`` in one append and fsync, then ``ack`` in another, at
    the crash-storm scenario's config and job mix.  Returns jobs completed."""
    from phase1.core import SendToWorker
    from phase1.jobs import Job
    from phase1.recovery import open_writer, recover
    from phase1.sim.disk import SimDisk

    config, _, workload = _crash_storm(seed, jobs)
    rng = random.Random(seed)
    mix = workload.mix
    weights = [k.weight for k in mix]
    batch = [
        Job(
            f"j{i:06d}",
            payload={"kind": k.name},
            priority=rng.randint(k.priority_min, k.priority_max),
        )
        for i, k in enumerate(rng.choices(mix, weights, k=jobs))
    ]
    disk = SimDisk(log_ops=False)
    core, report = recover(disk, config, now_s=0.0)
    writer = open_writer(disk, config, report, segment_bytes=1 << 62, preallocate_bytes=0)
    now = 0.0
    gap = 1.0 / workload.rate_per_s
    for job in batch:
        now += gap
        enq = core.enqueue([job], now)
        sent = core.dispatch(now, 0, 1)
        writer.append(enq.records + sent.records, now)
        writer.mark_durable(writer.fsync_upto())
        for send in sent.effects:
            assert isinstance(send, SendToWorker)
            done = core.ack(send.job.id, send.attempt, now)
            writer.append(done.records, now)
            writer.mark_durable(writer.fsync_upto())
    return len(core.completed_ids())


def _crash_storm(seed: int, jobs: int, batch: int = 1) -> Any:
    """The ``crash-storm`` scenario resized to ``jobs``, crashes spread over the whole run;
    ``batch`` > 1: clients submit that many jobs per call and workers prefetch that many."""
    from phase1.sim.scenarios import scenario

    config, plan, workload = scenario("crash-storm", seed)
    workload = replace(workload, jobs=jobs)
    if batch > 1:
        workload = replace(workload, submit_batch=batch, prefetch=batch)
    plan = replace(plan, crash_window_s=(0.0, jobs / workload.rate_per_s))
    return config, plan, workload


def sweep_point(snapshot_interval_s: float, seed: int, jobs: int) -> dict[str, Any]:
    """One crash-storm run of ``jobs`` jobs (picklable, for the sweep row)."""
    from phase1.sim.harness import Simulation

    config, plan, workload = _crash_storm(seed, jobs)
    config = config.replace(snapshot_interval_s=snapshot_interval_s)
    res = Simulation(config, plan, workload, seed).run()
    return {
        "completed": res.ledger["completed"],
        "lost": res.ledger["lost"],
        "crashes": res.ledger["crashes"],
    }


class _Pair:
    """The bare model and the harness on one workload, alternated ``REPEATS`` times."""

    def __init__(self, jobs: int, batch: int) -> None:
        from phase1.sim.harness import Simulation

        config, plan, workload = _crash_storm(1, jobs, batch)
        # the same arrival rate and total capacity: 2 workers at half the mix's mean service
        # time (the scenario has 4 workers)
        self.mean_service = sum(k.weight * k.service_s_mean for k in workload.mix) / sum(
            k.weight for k in workload.mix
        )
        self.jobs, self.batch, self.rate_per_s = jobs, batch, workload.rate_per_s
        self.bare: list[float] = []
        self.harness: list[float] = []
        self.bare_cpu: list[float] = []
        self.harness_cpu: list[float] = []
        res = None
        for _ in range(REPEATS):  # alternate, so a busy moment hits both
            t0, c0 = time.perf_counter(), time.process_time()
            n_bare = bare_model(jobs, workload.rate_per_s, self.mean_service / 2, batch=batch)
            self.bare.append(n_bare / (time.perf_counter() - t0))
            self.bare_cpu.append(n_bare / (time.process_time() - c0))
            t0, c0 = time.perf_counter(), time.process_time()
            res = Simulation(config, plan, workload, 1).run()
            self.harness.append(res.ledger["completed"] / (time.perf_counter() - t0))
            self.harness_cpu.append(res.ledger["completed"] / (time.process_time() - c0))
        assert res is not None
        self.res = res
        self.bare_rate = statistics.median(self.bare)
        self.harness_rate = statistics.median(self.harness)

    def rows(self, suffix: str, target: bool) -> list[dict[str, Any]]:
        res = self.res
        h_cpu, b_cpu = statistics.median(self.harness_cpu), statistics.median(self.bare_cpu)
        cpu_note = (
            f"; per CPU-s (median): harness {h_cpu:,.0f}, bare {b_cpu:,.0f}, "
            f"ratio {h_cpu / b_cpu:.3f}"
        )
        shape = (
            "1 job per call, prefetch 1 (the runtime's defaults)"
            if self.batch == 1
            else f"{self.batch} jobs per call, prefetch {self.batch}"
        )
        bare_shape = "" if self.batch == 1 else f", {self.batch} jobs per arrival"
        storm: dict[str, Any] = {
            "name": f"sim.crash_storm{suffix}",
            "value": self.harness_rate,
            "unit": "jobs/s",
            "baseline": self.bare_rate,
            "ratio": self.harness_rate / self.bare_rate,
            "target": f">= {TARGET_JOBS_S:,} jobs/s and >= 1/3 of bare" if target else "",
            "crashes": res.ledger["crashes"],
            "lost": res.ledger["lost"],
            "notes": f"crash-storm seed 1, {self.jobs:,} jobs, {shape} (simulated completions "
            f"/ wall s), {res.ledger['crashes']} crashes, {res.ledger['lost']} lost, "
            f"{res.ledger['records'] / res.ledger['fsyncs']:.2f} records per fsync, "
            f"{res.virtual_s:.1f} virtual s; median of {REPEATS}: "
            + ", ".join(f"{r:,.0f}" for r in self.harness)
            + cpu_note,
        }
        if target:
            storm["met"] = (
                self.harness_rate >= TARGET_JOBS_S and self.harness_rate >= self.bare_rate / 3
            )
        bare = {
            "name": f"sim.bare_simpy{suffix}",
            "value": self.bare_rate,
            "unit": "jobs/s",
            "baseline": None,
            "ratio": None,
            "target": "",
            "notes": f"{self.jobs:,} jobs, {self.rate_per_s:g} jobs/s arrivals{bare_shape}, "
            f"2 workers at {self.mean_service / 2 * 1e3:.2f} ms mean; median of {REPEATS}: "
            + ", ".join(f"{r:,.0f}" for r in self.bare),
        }
        return [bare, storm]


def bench_sim(quick: bool = False, *, mode: str | None = None) -> list[dict[str, Any]]:
    from phase1.sim.experiments import sweep

    mode = mode or ("quick" if quick else "full")
    jobs, points, seeds, sweep_jobs = SIZES[mode]
    pair = _Pair(jobs, 1)
    rows = pair.rows("", target=True) + _Pair(jobs, BATCH).rows("_batched", False)
    floor = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        done = bare_modules(jobs, 1)
        floor.append(done / (time.perf_counter() - t0))
    floor_rate = statistics.median(floor)
    rows.append(
        {
            "name": "sim.bare_modules",
            "value": floor_rate,
            "unit": "jobs/s",
            "baseline": None,
            "ratio": None,
            "target": "",
            "notes": f"the real QueueCore + WalWriter + SimDisk in a plain loop, no SimPy, no "
            f"faults, {jobs:,} jobs, 2 appends + fsyncs per job; median of {REPEATS}: "
            + ", ".join(f"{r:,.0f}" for r in floor)
            + f"; sim.crash_storm is {pair.harness_rate / floor_rate:.2f} of it",
        }
    )

    grid: dict[str, Sequence[Any]] = {
        "snapshot_interval_s": [0.1 + 0.05 * i for i in range(points)],
        "jobs": [sweep_jobs],
    }
    t0 = time.perf_counter()
    df = sweep(sweep_point, grid, list(seeds), progress=False)
    sweep_s = time.perf_counter() - t0
    runs = points * len(seeds)
    full = mode == "full"
    size = f"{points} points x {len(seeds)} seed(s) x {sweep_jobs:,} jobs"
    return rows + [
        {
            "name": "sim.sweep",
            "value": sweep_s,
            "unit": "s",
            "baseline": None,
            "ratio": None,
            "target": f"<= {TARGET_SWEEP_S:g} s" if full else "(full size only)",
            "met": sweep_s <= TARGET_SWEEP_S if full else None,
            "notes": ("" if full else f"SHRUNK for --{mode}: ")
            + f"sweep() of {size} ({runs} crash-storm runs, {int(df['completed'].sum()):,} jobs "
            f"completed, {int(df['crashes'].sum())} crashes, {int(df['lost'].sum())} lost) "
            "on its default ProcessPoolExecutor(max_workers=2), pool start-up included",
        },
    ]


def bench(ctx: Context) -> list[Result]:
    """The ``sim`` group of ``python -m benchmarks``."""
    out = []
    for row in bench_sim(mode=ctx.mode):
        out.append(
            ctx.result(
                name=row["name"],
                figure=row["value"],
                unit=row["unit"],
                baseline=row["baseline"],
                baseline_label=row["name"].replace("crash_storm", "bare_simpy") + " (same run)"
                if row["baseline"]
                else "",
                ratio=ratio(row["value"], row["baseline"]),
                target=row["target"],
                met=row.get("met"),
                notes=row["notes"],
            )
        )
    return out


BENCHMARKS = [("sim", bench)]
ROW_NAMES = [
    "sim.bare_simpy",
    "sim.crash_storm",
    "sim.bare_simpy_batched",
    "sim.crash_storm_batched",
    "sim.bare_modules",
    "sim.sweep",
]


if __name__ == "__main__":
    for r in bench_sim(quick=False):
        print(r)
