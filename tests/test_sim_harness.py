"""The SimPy harness: determinism per seed, the durability contract under crashes and power
loss, timeouts rescuing stuck workers, debug checks that name the seed."""

from __future__ import annotations

import pytest

from phase1.config import Config
from phase1.errors import InvariantViolation
from phase1.sim.harness import (
    FaultPlan,
    JobKind,
    RunResult,
    Simulation,
    SimulationError,
    Workload,
)

SEEDS = range(30)


def _config(**changes: object) -> Config:
    base = Config().replace(
        worker_count=4,
        task_timeout_s=0.05,
        timeout_check_interval_s=0.01,
        snapshot_interval_s=0.1,
        max_retry=5,
        wal_path="sim/wal.log",
        snapshot_path="sim/snapshot.json",
    )
    return base.replace(**changes)


def _workload(jobs: int = 200, **changes: object) -> Workload:
    mix = (
        JobKind("a", weight=0.7, service_s_mean=0.002, priority_max=5),
        JobKind("b", weight=0.3, service_s_mean=0.004, service_dist="lognormal"),
    )
    fields: dict[str, object] = {
        "jobs": jobs,
        "rate_per_s": 1_500.0,
        "mix": mix,
        "delayed_probability": 0.1,
        "delay_s_mean": 0.02,
        "depends_probability": 0.1,
        "burst_rate_per_s": 5.0,
        "burst_size": 10,
    }
    fields.update(changes)
    return Workload(**fields)  # type: ignore[arg-type]


STORM = FaultPlan(
    crash_rate_per_s=30.0,
    power_loss_probability=0.5,
    crash_window_s=(0.0, 0.15),
    torn_write_probability=0.7,
    zero_fill_probability=0.3,
    job_fail_probability=0.02,
)


def _run(seed: int, policy: str = "batch", plan: FaultPlan = STORM, **kw: object) -> RunResult:
    return Simulation(_config(commit_policy=policy), plan, _workload(), seed, **kw).run(10.0)  # type: ignore[arg-type]


def test_same_seed_gives_identical_trace_and_ledger() -> None:
    a = _run(11)
    b = _run(11)
    assert a.ledger["crashes"] > 0
    assert a.trace == b.trace
    assert a.ledger == b.ledger
    assert a.depth().equals(b.depth())
    assert a.recoveries().drop(columns="wall_s").equals(b.recoveries().drop(columns="wall_s"))


def test_different_seed_gives_a_different_trace() -> None:
    assert _run(1).trace != _run(2).trace


@pytest.mark.parametrize("policy", ["always", "batch"])
def test_no_acknowledged_job_is_lost_under_crashes_and_power_loss(policy: str) -> None:
    kinds: set[str] = set()
    for seed in SEEDS:
        res = _run(seed, policy)
        res.assert_durable()  # raises with the seed
        led = res.ledger
        assert led["acknowledged"] == led["submitted"], f"seed={seed}"
        assert led["unfinished"] == 0, f"seed={seed}: {led}"
        assert led["ok"] == led["acknowledged"], f"seed={seed}"
        kinds.update(res.crashes()["kind"])
    assert kinds == {"process", "power"}


def test_process_crashes_lose_nothing_even_under_never() -> None:
    plan = FaultPlan(crash_rate_per_s=30.0, crash_window_s=(0.0, 0.15))
    for seed in range(10):
        res = _run(seed, "never", plan)
        assert res.ledger["crashes"] > 0
        res.assert_durable()


def test_never_under_power_loss_loses_only_what_was_not_synced() -> None:
    plan = FaultPlan(crash_at_s=((0.05, "power"), (0.1, "power")))
    total_lost = 0
    for seed in range(10):
        res = Simulation(
            _config(commit_policy="never"), plan, _workload(depends_probability=0.0), seed
        ).run(10.0)
        crashes = res.crashes()
        led = res.ledger
        assert led["lost"] == len(led["lost_ids"]) == len(led["lost_detail"])
        for d in led["lost_detail"]:
            at = d["lost_enqueue_at_crash"]
            if at < 0:
                at = d["lost_completion_at_crash"]
                continue  # an ACK lost: the job ran again (counted in duplicated)
            crash = crashes.iloc[at]
            assert d["enqueue_epoch"] == crash["epoch"], f"seed={seed} {d}"
            assert d["enqueue_seq"] > crash["durable_seq"], f"seed={seed} {d} {crash.to_dict()}"
        total_lost += led["lost"]
    assert total_lost > 0, "never + power loss should lose something over 10 seeds"


def test_stuck_workers_jobs_are_rescued_by_timeouts() -> None:
    plan = FaultPlan(stuck_worker_fraction=0.5, stuck_probability=1.0)
    for seed in range(3):
        res = Simulation(_config(), plan, _workload(), seed).run(30.0)
        led = res.ledger
        assert led["stuck_hangs"] > 0 and led["timeouts"] > 0
        assert led["unfinished"] == 0 and led["lost"] == 0
        assert led["ok"] == led["acknowledged"]
        assert led["duplicated"] > 0  # a rescued job was handed out twice


def test_stuck_forever_workers_still_rescued_and_slow_workers_fenced() -> None:
    plan = FaultPlan(
        stuck_worker_fraction=0.25,
        stuck_release="never",
        slow_worker_fraction=0.25,
        slow_factor=30.0,
        worker_death_rate_per_s=5.0,
        worker_restart_s=0.02,
    )
    res = Simulation(_config(worker_count=8), plan, _workload(jobs=1000), 3).run(30.0)
    led = res.ledger
    assert led["ok"] == led["acknowledged"] and led["unfinished"] == 0
    assert led["late_acks"] > 0  # slow workers answered after their attempt timed out
    assert led["worker_deaths"] > 0


def test_debug_check_run_passes() -> None:
    res = _run(5, debug_check=True)
    assert res.ledger["crashes"] > 0
    res.assert_durable()


def test_invariant_violation_names_the_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    from phase1.core import QueueCore

    def broken(self: QueueCore, *, settled: bool = True) -> None:
        raise InvariantViolation("check(): planted")

    monkeypatch.setattr(QueueCore, "check", broken)
    with pytest.raises(InvariantViolation, match=r"reproduce with seed=42$"):
        _run(42, debug_check=True)


def test_any_failure_names_the_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    from phase1.core import QueueCore

    def broken(self: QueueCore, *a: object, **k: object) -> None:
        raise RuntimeError("planted")

    monkeypatch.setattr(QueueCore, "tick", broken)
    with pytest.raises(SimulationError, match=r"reproduce with seed=9$"):
        _run(9)


def test_results_have_the_frames_and_a_summary() -> None:
    res = _run(4)
    assert {"t", "event", "a"} <= set(res.events.columns)
    assert res.throughput(0.01)["completed"].sum() == len(res.latencies())
    lat = res.latency().iloc[0]
    assert 0 < lat["p50_s"] <= lat["p95_s"] <= lat["p99_s"]
    assert len(res.depth()) > 0 and len(res.recoveries()) == res.ledger["crashes"]
    assert "lost=0" in res.summary() and "seed=4" in res.summary()
    assert all(isinstance(line, str) for line in res.trace[:10])


def test_group_commit_batches_records_per_fsync() -> None:
    wl = Workload(jobs=2000, rate_per_s=20_000.0, mix=(JobKind(service_s_mean=0.0005),))
    cfg = _config(worker_count=16, task_timeout_s=5.0)
    batch = Simulation(cfg, FaultPlan(), wl, 1).run().ledger
    always = Simulation(cfg.replace(commit_policy="always"), FaultPlan(), wl, 1).run().ledger
    assert batch["records"] / batch["fsyncs"] > 2.0
    assert always["fsyncs"] >= always["records"] / 3
    assert batch["virtual_s"] < always["virtual_s"]


# -- batching: submit_batch (Controller.enqueue_jobs with a list) and prefetch --------------------
BATCHED = {"submit_batch": 8, "prefetch": 4}


def test_batching_defaults_to_the_runtimes_one_job_per_call_and_per_worker() -> None:
    assert (Workload().submit_batch, Workload().prefetch) == (1, 1)
    with pytest.raises(ValueError, match="submit_batch >= 1 and prefetch >= 1"):
        Workload(prefetch=0)


def test_submit_batch_sends_each_call_in_one_step_and_keeps_the_job_rate() -> None:
    plan = FaultPlan()
    wl = dict(jobs=400, burst_rate_per_s=0.0, delayed_probability=0.0, depends_probability=0.0)
    one = Simulation(_config(), plan, _workload(**wl), 3).run()
    eight = Simulation(_config(), plan, _workload(**wl, submit_batch=8), 3).run()
    submits = eight.events.query("event == 'submit'").groupby("t").size()
    assert list(submits) == [8] * 50  # 400 jobs in 50 calls
    acked = eight.events.query("event == 'acked'").groupby("t").size()
    assert set(acked) == {8}  # one acknowledgment per call
    assert eight.ledger["ok"] == 400 and eight.ledger["fsyncs"] < one.ledger["fsyncs"]
    # same jobs per second: the last submission lands at about the same virtual time
    assert abs(submits.index[-1] - one.events.query("event == 'submit'")["t"].iloc[-1]) < 0.1


def test_prefetch_hands_a_worker_several_jobs_in_one_dispatch_and_runs_them_in_turn() -> None:
    wl = _workload(jobs=64, submit_batch=16, prefetch=4, delayed_probability=0.0)
    res = Simulation(_config(worker_count=2), FaultPlan(), wl, 5).run()
    ev = res.events
    deliver = ev.query("event == 'deliver'")
    per_instant = deliver.groupby(["t", "b"]).size()  # (time, worker) -> tasks handed over
    assert per_instant.max() == 4
    done = ev.query("event == 'done'")
    for _, rows in done.groupby("b"):  # a worker finishes one task at a time
        assert rows["t"].is_monotonic_increasing and rows["t"].is_unique
    assert res.ledger["ok"] == 64 and res.ledger["duplicated"] == 0


def test_prefetch_skips_a_queued_task_whose_attempt_timed_out() -> None:
    plan = FaultPlan(slow_worker_fraction=0.5, slow_factor=40.0)
    wl = _workload(jobs=300, prefetch=8, submit_batch=8)
    res = Simulation(_config(task_timeout_s=0.02), plan, wl, 2).run(30.0)
    led = res.ledger
    cancelled = res.events.query("event == 'cancelled'")
    timed_out = set(zip(*res.events.query("event == 'timeout'")[["a", "b"]].values.T, strict=True))
    assert len(cancelled) > 0
    assert set(zip(cancelled["a"], cancelled["c"], strict=True)) <= timed_out
    assert led["ok"] == led["acknowledged"] == led["submitted"] and led["unfinished"] == 0


@pytest.mark.parametrize("policy", ["always", "batch"])
def test_no_acknowledged_job_is_lost_with_prefetch_and_batched_submissions(policy: str) -> None:
    for seed in range(15):
        res = Simulation(
            _config(commit_policy=policy), STORM, _workload(**BATCHED), seed, debug_check=seed < 3
        ).run(10.0)
        res.assert_durable()
        led = res.ledger
        assert led["crashes"] > 0 and led["unfinished"] == 0, f"seed={seed}: {led}"
        assert led["ok"] == led["acknowledged"] == led["submitted"], f"seed={seed}"


def test_prefetch_run_is_deterministic_and_stuck_workers_are_still_rescued() -> None:
    plan = FaultPlan(stuck_worker_fraction=0.5, worker_death_rate_per_s=20.0, worker_restart_s=0.02)
    a = Simulation(_config(), plan, _workload(**BATCHED), 8).run(30.0)
    b = Simulation(_config(), plan, _workload(**BATCHED), 8).run(30.0)
    assert a.trace == b.trace and a.ledger == b.ledger
    led = a.ledger
    assert led["stuck_hangs"] > 0 and led["timeouts"] > 0 and led["worker_deaths"] > 0
    assert led["ok"] == led["acknowledged"] and led["unfinished"] == 0


def test_a_finished_simulation_is_freed_without_the_cyclic_gc() -> None:
    """No reference cycle runs through the simulation (its pending events hold plain
    functions) or the cores it dropped at crashes, so reference counting frees it."""
    import gc
    import weakref

    sim = Simulation(_config(), STORM, _workload(jobs=100), 3)
    result = sim.run(10.0)
    assert result.ledger["crashes"] > 0
    ref = weakref.ref(sim)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        del sim
        assert ref() is None
    finally:
        if was_enabled:
            gc.enable()


class _RecordingGc:
    """Stands in for the ``gc`` module inside the harness: real collector switches, a
    chosen freeze count, and a log of freeze/unfreeze calls (the real count also drops
    whenever a frozen object is freed, so it cannot be compared before and after)."""

    def __init__(self, freeze_count: int) -> None:
        import gc

        self.real, self.count, self.calls = gc, freeze_count, []

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)

    def get_freeze_count(self) -> int:
        return self.count

    def freeze(self) -> None:
        self.calls.append("freeze")

    def unfreeze(self) -> None:
        self.calls.append("unfreeze")


@pytest.mark.parametrize(("frozen", "calls"), [(0, ["freeze", "unfreeze"]), (7, [])])
def test_a_run_ages_its_objects_unless_the_caller_froze_some(
    monkeypatch: pytest.MonkeyPatch, frozen: int, calls: list[str]
) -> None:
    import phase1.sim.harness as harness

    fake = _RecordingGc(frozen)
    monkeypatch.setattr(harness, "gc", fake)
    Simulation(_config(), STORM, _workload(jobs=50), 1).run(10.0)
    assert fake.calls == calls  # never unfreezes what the caller froze
    assert fake.real.isenabled()
