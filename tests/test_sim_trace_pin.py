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
    "crash-storm-bench": "8950edb57151c6ef2bf23694a188482781f9a674e7784afc164c41c54c3ec889",
    "crash-storm": "94ec5bb4c1b128ffc722b3fa477e1c689faf923d84a7b6653b59131da03a9041",
    "crash-storm-batched": "8ccaf8f6a6538b7513baaf1b2ab93cd0a522e731ebe6955837b094f09484f6e4",
    "storm-always": "a0a5cf6aa1a6b551eec1a68ff61448c16c6cba7852f5c703608ba2c35c9f4a3b",
    "storm-never": "2a1812f16177f87a12826bf2a35a618282e65c20592fb04e84b383b4c4ba48e5",
    "stuck-workers-dying": "8280611b3a44cb1f224bfc8b0b50bb1a2524b33d1282b6ee22975612362ea605",
    "slow-workers-never-deadline": "f0364d92521a2f24995324a48397c2aa5098efec13cdc357ea3a17fa64ec0571",
    "power-loss": "3bb7abfe65a754a8c3f92000855da653118c3f7ae318b5a1ba266250013bdd46",
    "power-loss-never": "dffa8b14a76d1736c0ed127f7c18c5289d9157b822981e26a8ce03fbe2cd4732",
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
