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
    "crash-storm-bench": "f48c69f57ea912cfa0ec16be5ad8f1a9e5be139d840bcccd1e29bb9877fbaf16",
    "crash-storm": "2c2d57d05b470973edcf455ad47881d689feb367e88c6e388a83a16d9d427f67",
    "crash-storm-batched": "ce1d887c34588465bcad95eea1a8f65e30db7d6d7151bb439dd9e8b37d57acf7",
    "storm-always": "2f23078ecbba749e1f3b9352c10dec242a9d36fb88aee85766bb0aa9e880e7e7",
    "storm-never": "6f5536d6f2bdb0161dc20061958acce85a872f636a3a6e16a4d4854805fdc207",
    "stuck-workers-dying": "b5e48cd8e383d8c385da0244a2df2a1e5052975822277af672e55ca014a0ed6f",
    "slow-workers-never-deadline": "28795ba828cee8480a797713212536e95890a8fd60060a13d1abcac49463b589",
    "power-loss": "d23cc20d824ee537ee7ae5563d34522d2dd965ba58149a3daef1e6a7193ccad7",
    "power-loss-never": "e740694a96aad93510e9620ae878120fe1c4027bd330230ac6d495dab18106d3",
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
