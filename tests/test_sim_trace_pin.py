"""Pinned digests of representative faulted simulator runs: the trace, ledger, samples,
crash and recovery records, completions and the SimDisk's final bytes, byte for byte.

A change that only makes the simulator faster must leave every digest unchanged; a change
of simulated semantics (what is durable when, fsync latency draws, crash points, RNG draw
order) moves them, and then the committed notebooks' outputs move too.  Regenerate only
on purpose: ``python -m tests.test_sim_trace_pin`` prints the current digests."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

import pytest

from phase1.sim.harness import Simulation
from phase1.sim.scenarios import scenario


def _storm_always_never(seed: int, policy: str) -> tuple[Any, Any, Any]:
    config, plan, workload = scenario("crash-storm", seed)
    plan = replace(
        plan,
        crash_rate_per_s=8.0,
        crash_window_s=(0.0, 1.5),
        power_loss_probability=0.5,
        job_fail_probability=0.02,
        worker_death_rate_per_s=2.0,
        worker_restart_s=0.05,
    )
    return config.replace(commit_policy=policy), plan, replace(workload, jobs=1500)


def _case(name: str) -> tuple[Any, Any, Any, int]:
    if name == "crash-storm-bench":  # benchmarks/sim.py's workload: 20,000 jobs, seed 1
        from benchmarks.sim import _crash_storm

        return (*_crash_storm(1, 20_000), 1)
    if name == "crash-storm":
        config, plan, workload = scenario("crash-storm", 5)
        workload = replace(workload, jobs=3000)
        plan = replace(plan, crash_window_s=(0.0, 3000 / workload.rate_per_s))
        return config, plan, workload, 5
    if name == "crash-storm-batched":
        config, plan, workload = scenario("crash-storm", 10)
        workload = replace(workload, jobs=2000, submit_batch=16, prefetch=16)
        plan = replace(plan, crash_window_s=(0.0, 2000 / workload.rate_per_s))
        return config, plan, workload, 10
    if name in ("storm-always", "storm-never"):
        return (*_storm_always_never(3, name.split("-")[1]), 3)
    if name == "stuck-workers-dying":
        config, plan, workload = scenario("stuck-workers", 4)
        plan = replace(plan, worker_death_rate_per_s=1.0, crash_at_s=((0.8, "power"),))
        return config, plan, replace(workload, jobs=1500), 4
    if name == "slow-workers-never-deadline":
        config, plan, workload = scenario("slow-workers", 5)
        plan = replace(plan, stuck_worker_fraction=0.25, stuck_release="never")
        plan = replace(plan, crash_at_s=((0.5, "process"), (1.0, "power")))
        return config, plan, replace(workload, jobs=1500, prefetch=4), 5
    config, plan, workload = scenario(name, 6)
    return config, plan, replace(workload, jobs=2000), 6


def digest(name: str) -> str:
    config, plan, workload, seed = _case(name)
    sim = Simulation(config, plan, workload, seed)
    res = sim.run()
    h = hashlib.sha256()

    def put(x: Any) -> None:
        h.update(json.dumps(x, sort_keys=True, default=repr).encode())
        h.update(b"\n")

    for line in res.trace:
        h.update(line.encode())
        h.update(b"\n")
    put(res.ledger)
    put(repr(res.virtual_s))
    put([repr(s) for s in sim.samples])
    put([repr(c) for c in sim.completions])
    put([{k: repr(v) for k, v in c.items()} for c in sim.crashes])
    put([{k: repr(v) for k, v in r.items()} for r in sim.recoveries])
    put({p: hashlib.sha256(b).hexdigest() for p, b in sim.disk.snapshot_files().items()})
    put({p: hashlib.sha256(b).hexdigest() for p, b in sim.disk.durable_files().items()})
    return h.hexdigest()


PINNED = {
    "crash-storm-bench": "e22a6f95b42084d01b445662cdcb846fbefb85b36e7b9b9be9a5f2a10515c83e",
    "crash-storm": "a5fead3a5c4ec8ad8093b3081ae448ca383a3ce3a7d2a509aac66061774bb287",
    "crash-storm-batched": "0503e01adca08665944e18ff7d3218701008931cdbc431dc6794618fb14b589b",
    "storm-always": "dbc6d419a6ba97251a6018465e0d80739e99415920b53cb34551c1350498f778",
    "storm-never": "c410bf34fa9f342d31e34f72db2a5bb2e83b964b9cc171688777b29309cd526f",
    "stuck-workers-dying": "efd2b20edb9612d0809621db41e5904b2192e1f53a23d5f5c560f919d218fe44",
    "slow-workers-never-deadline": "e6bc53703594f663b16596dc9747ed51534c8b09a83f2fcbb55a43da2c968283",
    "power-loss": "28bdabedfb99baf8c0fefbabb1a3a001afa0feac671b3770ea2e9e258193186c",
    "power-loss-never": "3424d6160236ace3f37c7bfd334a6e88ab3ba55cae0fa719a8e15f6303b21810",
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_faulted_run_digest_is_pinned(name: str) -> None:
    assert digest(name) == PINNED[name], f"{name}: the simulated trace changed"


if __name__ == "__main__":
    for n in (
        "crash-storm-bench",
        "crash-storm",
        "crash-storm-batched",
        "storm-always",
        "storm-never",
        "stuck-workers-dying",
        "slow-workers-never-deadline",
        "power-loss",
        "power-loss-never",
    ):
        print(f'    "{n}": "{digest(n)}",')
