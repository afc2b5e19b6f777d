"""Hot spots behind the missed ``sim`` and ``e2e`` targets (not part of ``python -m benchmarks``).

``python -m benchmarks.profiles sim``: cProfile of one 20,000-job crash-storm run (after a
warm-up run), top 25 by tottime and by cumulative time, then the time spent in calls the
harness (``phase1/sim/harness.py``) makes into other code (the real core, WAL, recovery,
``SimDisk`` under the WAL, ``random``): what is left if the harness itself cost nothing.

``python -m benchmarks.profiles e2e [--prefetch P] [--jobs N]``: a ``Controller`` run as in
``e2e.controller_prefetch*``: CPU seconds from the first submit to idle, per thread role
(read from ``/proc``; the process is GIL-bound, so CPU per job is the budget) and in cyclic
GC, then cProfile of the dispatcher and results threads.  ``threading.Thread.run`` is wrapped here, in this process only; ``phase1`` is not
touched.  Figures under cProfile are slower than the benchmark's; read the shares.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import gc
import io
import os
import pstats
import sys
import tempfile
import threading
import time
from typing import Any

from benchmarks._harness import TMP_ROOT


def _stats(profs: list[cProfile.Profile], sort: str, n: int) -> str:
    buf = io.StringIO()
    st = pstats.Stats(profs[0], stream=buf)
    for p in profs[1:]:
        st.add(p)
    st.strip_dirs().sort_stats(sort).print_stats(n)
    return "\n".join(line for line in buf.getvalue().splitlines() if line.strip())


def profile_sim(jobs: int) -> str:
    from benchmarks.sim import _crash_storm
    from phase1.sim.harness import Simulation

    config, plan, workload = _crash_storm(1, jobs)
    t = time.perf_counter()
    res = Simulation(config, plan, workload, 1).run()
    plain = res.ledger["completed"] / (time.perf_counter() - t)
    prof = cProfile.Profile()
    prof.enable()
    Simulation(config, plan, workload, 1).run()
    prof.disable()
    return (
        f"# crash-storm seed 1, {jobs} jobs: {plain:,.0f} jobs/s without the profiler\n"
        f"## top 25 by tottime\n{_stats([prof], 'tottime', 25)}\n"
        f"## top 30 by cumulative\n{_stats([prof], 'cumulative', 30)}\n"
        f"## calls out of the harness, by callee (cumulative time, share of the run)\n"
        f"{_calls_out_of(prof, 'phase1/sim/harness.py', 15)}\n"
    )


def _thread_cpu_s() -> dict[str, float]:
    """CPU seconds (user + system) so far of each live thread, summed by role, from
    ``/proc/self/task/*/stat`` (clock ticks; empty where there is no ``/proc``)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = collections.defaultdict(float)
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        name = names.get(int(tid), "?")
        role = "main (submit + wait)" if name == "MainThread" else name.rsplit("-", 1)[-1]
        role = "worker" if role.startswith("worker") else role
        out[role] += (int(fields[11]) + int(fields[12])) / tick
    return out


def _calls_out_of(prof: cProfile.Profile, caller_file: str, n: int) -> str:
    """Cumulative time of the calls that functions of ``caller_file`` make into functions
    defined elsewhere, summed per callee; the rest of the run is the caller's own time."""
    st = pstats.Stats(prof)
    total = st.total_tt  # type: ignore[attr-defined]
    by: dict[str, float] = collections.defaultdict(float)
    for callee, (_, _, _, _, callers) in st.stats.items():  # type: ignore[attr-defined]
        if callee[0].endswith(caller_file):
            continue
        for caller, (_, _, _, cumtime) in callers.items():
            if caller[0].endswith(caller_file):
                by[f"{callee[0].rsplit('/', 1)[-1]}:{callee[2]}"] += cumtime
    top = sorted(by.items(), key=lambda kv: -kv[1])[:n]
    lines = [f"{t:8.3f} s {100 * t / total:5.1f}%  {name}" for name, t in top]
    out = sum(by.values())
    lines.append(
        f"{out:8.3f} s {100 * out / total:5.1f}%  all calls out of {caller_file} "
        f"(its own time: {100 - 100 * out / total:.0f}% of {total:.3f} s)"
    )
    return "\n".join(lines)


def profile_e2e(prefetch: int, jobs: int) -> str:
    from benchmarks.e2e import controller_run

    marks: dict[str, tuple[float, dict[str, float]]] = {}
    gc_s = [0.0, 0.0]  # seconds in collections during the timed part, start of the current
    gc_runs = collections.Counter[int]()
    timing = [False]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if not timing[0]:
            return
        if phase == "start":
            gc_s[1] = time.thread_time()
        else:
            gc_s[0] += time.thread_time() - gc_s[1]
            gc_runs[info["generation"]] += 1

    def probe(when: str) -> None:
        timing[0] = when == "start"
        marks[when] = (time.process_time(), _thread_cpu_s())

    profs: dict[str, list[cProfile.Profile]] = collections.defaultdict(list)
    want: set[str] = set()
    original = threading.Thread.run

    def run(self: threading.Thread) -> None:
        role = self.name.rsplit("-", 1)[-1]
        role = "worker" if role.startswith("worker") else role
        prof = None
        if role in want:
            prof = cProfile.Profile()
            profs[role].append(prof)
            prof.enable()
        try:
            original(self)
        finally:
            if prof is not None:
                prof.disable()

    threading.Thread.run = run  # type: ignore[method-assign]
    gc.callbacks.append(on_gc)
    out = []
    try:
        with tempfile.TemporaryDirectory(dir=TMP_ROOT) as d:
            r: dict[str, Any] = controller_run(d, jobs, prefetch, probe)
        (p0, c0), (p1, c1) = marks["start"], marks["idle"]
        total = p1 - p0
        cpu = {role: s - c0.get(role, 0.0) for role, s in c1.items()}
        gens = ", ".join(f"gen{g} x{gc_runs[g]}" for g in sorted(gc_runs))
        out.append(
            f"# Controller, 8 workers, prefetch {prefetch}, {jobs} noop jobs: "
            f"{jobs / r['elapsed_s']:,.0f} jobs/s, {r['elapsed_s']:.2f} s wall, process CPU "
            f"{total:.2f} s ({total / r['elapsed_s']:.2f} cores), {1e6 * total / jobs:.0f} us "
            f"CPU/job, {r['fsyncs']} fsyncs; cyclic GC {1e6 * gc_s[0] / jobs:.1f} us/job "
            f"({gens})\n## CPU per thread role, first submit to idle (/proc, 10 ms ticks)"
        )
        for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]):
            out.append(f"  {k:22s} {v:6.2f} s ({1e6 * v / jobs:.0f} us/job)")
        want.update({"dispatcher", "results"})
        with tempfile.TemporaryDirectory(dir=TMP_ROOT) as d:
            r = controller_run(d, jobs, prefetch)
        out.append(f"\n# profiled run: {jobs / r['elapsed_s']:,.0f} jobs/s under cProfile")
        for role in ("dispatcher", "results"):
            out.append(f"## {role} thread, top 18 by tottime\n{_stats(profs[role], 'tottime', 18)}")
    finally:
        threading.Thread.run = original  # type: ignore[method-assign]
        gc.callbacks.remove(on_gc)
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiles")
    parser.add_argument("what", choices=["sim", "e2e"])
    parser.add_argument("--prefetch", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=None)
    args = parser.parse_args(argv)
    TMP_ROOT.mkdir(parents=True, exist_ok=True)
    cmd = " ".join([".venv/bin/python -m benchmarks.profiles", *(argv or sys.argv[1:])])
    if args.what == "sim":
        text = profile_sim(args.jobs or 20_000)
    else:
        text = profile_e2e(args.prefetch, args.jobs or 30_000)
    print(f"# command: {cmd}\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
