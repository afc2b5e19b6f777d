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
    "crash-storm-bench": "aae43fe21d651c9ee139a061bee12a84d283f84dbc0165924598ad03fc566ea1",
    "crash-storm": "b3e2edac20e4a468f1d72e4acc273f49605b49523309fac27f610ab572754d2a",
    "crash-storm-batched": "925fd741bdf4d43ebc97e1163a2db8a5e235a5299dc589e9de6d7b72c3b981e0",
    "storm-always": "e4b869aa9568ad8c637ca1b6fd5407e461173843b00dfd7626703ea8ae386d0d",
    "storm-never": "d4a3d94f5dea2f3833f70526481f25f73db61bfe7c9d55c3a3085265c5c99bf3",
    "stuck-workers-dying": "b2c4d71fd33cb8fa543e6feb3a38bf9d10459a333e36be224fffb36c990fab2b",
    "slow-workers-never-deadline": "9ee7a2cfc9ddcec42f68cc25c2039d999bb4826ed67416020ac569b97489aa77",
    "power-loss": "4ec5ccd5e319779bc097f21dff7d64bcbeb9b7b54f2e82f480ef8c6df52ef4db",
    "power-loss-never": "0876f1b83b6f7011b9d04f13912db9d0613fe2c8414fbfed47bec3e7b191eca5",
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
