"""Helpers and exercise checks of lessons 07 (threads) and 11 (challenges)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from phase1.jobs import Job
from phase1.lessons import exercises_mid as ex
from phase1.lessons.challenges import (
    DELAYED_JOBS,
    PIPELINE,
    WORKLOADS,
    cascade_table,
    crash_and_recover,
    delay_stepper,
    delay_table,
    dispatch_table,
    draw_graph,
    graph_layout,
    plot_dispatch_order,
    priority_jobs,
    recovery_table,
    settle_cascade,
    waves_table,
)
from phase1.lessons.exercises import Feedback
from phase1.lessons.threads import (
    DeadlockDemo,
    LeakyService,
    LockedCounter,
    RacyCounter,
    blocked_channel_table,
    contention_table,
    controller_leak_check,
    hammer,
    leak_check,
    profile_controller,
    profile_table,
    race_stepper,
    run_with_timeout,
)
from phase1.lessons.views import temp_config


# == 07: threads ===========================================================================
def test_locked_counter_is_exact() -> None:
    result = hammer(LockedCounter(), threads=4, per_thread=500)
    assert result.got == result.expected == 2000
    assert result.lost == 0 and result.stuck == ()


def test_racy_counter_loses_updates() -> None:
    result = hammer(RacyCounter(), threads=4, per_thread=500)
    assert result.got < result.expected
    assert result.stuck == ()


def test_race_stepper_loses_one_update_and_the_lock_fixes_it() -> None:
    racy = race_stepper()
    racy.run_all()
    assert racy.world.value == 1
    locked = race_stepper(locked=True)
    lines = locked.run_all()
    assert locked.world.value == 2
    assert "B blocks" in lines[1]
    assert "lock=free" in locked.state()


def test_deadlock_demo_reports_within_its_timeout_and_the_fix_works() -> None:
    started = time.monotonic()
    outcome = run_with_timeout(DeadlockDemo(wait_s=0.1).dispatch_buggy, timeout_s=5)
    assert outcome.startswith("would deadlock")
    assert time.monotonic() - started < 2.0
    fixed = DeadlockDemo(wait_s=0.1)
    assert run_with_timeout(fixed.dispatch_fixed) == "ok"
    assert fixed.handled == ["job-1"]
    assert not [t for t in threading.enumerate() if t.name == "deadlock-demo"]


def test_run_with_timeout_reports_a_thread_still_blocked() -> None:
    gate = threading.Event()
    try:
        assert run_with_timeout(lambda: gate.wait(5), timeout_s=0.05).startswith("still blocked")
    finally:
        gate.set()


def test_blocked_channel_table_blocks_only_without_buffer_or_reader() -> None:
    table = blocked_channel_table(wait_s=0.05)
    outcomes = table["second send"].tolist()
    assert outcomes[0].startswith("blocked")
    assert outcomes[1] == "sent"
    assert outcomes[2] == "sent; read [1, 2]"


def test_leak_check_catches_the_leaky_toy_and_not_the_fixed_one() -> None:
    toy = LeakyService("leaky-test").start()
    try:
        toy.stop()
        assert leak_check([toy.thread]) == ["leaky-test-loop"]
    finally:
        toy.release()
    assert leak_check([toy.thread]) == []
    fixed = LeakyService("fixed-test").start()
    fixed.stop(fixed=True)
    assert leak_check([fixed.thread]) == []


def test_controller_leak_check_on_a_real_controller() -> None:
    facts = controller_leak_check(
        temp_config(worker_count=2), [Job(f"j{i}", {"kind": "noop"}) for i in range(5)]
    )
    assert facts["idle"] and facts["completed"] == 5
    assert facts["threads_running"] == [
        "dispatcher",
        "results",
        "snapshots",
        "timeouts",
        "worker0.1",
        "worker1.2",
    ]
    assert facts["threads_after_stop"] == [] and facts["leaked_threads"] == []


def test_profile_controller_profiles_every_thread() -> None:
    jobs = [
        Job(f"f{i}", {"type": "compute", "operation": "fibonacci", "input": 20}) for i in range(20)
    ]
    stats, facts = profile_controller(temp_config(worker_count=2), jobs)
    assert facts["completed"] == 20 and facts["leaked_threads"] == []
    assert len(facts["threads_profiled"]) == 6
    assert threading.getprofile() is None  # the hook is removed again
    table = profile_table(stats, n=1000)
    assert list(table.columns) == ["function", "ncalls", "tottime_s", "cumtime_s"]
    assert "handlers.py:_fibonacci" in set(table["function"])
    assert not table["function"].str.contains("/").any()  # no paths
    only = profile_table(stats, n=5, include=lambda f: f == "core.py:dispatch")
    assert only["function"].tolist() == ["core.py:dispatch"] and only["ncalls"].iloc[0] >= 20


def test_contention_table_has_three_variants_and_outside_waits_least() -> None:
    table = contention_table(threads=2, ops=5, io_s=0.001)
    assert len(table) == 3
    assert table["lock_wait_s"].iloc[2] <= table["lock_wait_s"].iloc[0]


# == 11: challenges ========================================================================
def test_dispatch_table_orders_by_priority_then_fifo() -> None:
    table = dispatch_table(priority_jobs(8, seed=42))
    keys = list(zip(-table["priority"], table["enqueued"], strict=True))
    assert keys == sorted(keys)
    fifo = dispatch_table(priority_jobs(8, seed=42), fifo=True)
    assert fifo["enqueued"].tolist() == fifo["dispatched"].tolist() == list(range(1, 9))


def test_delayed_jobs_are_dispatched_when_due_not_earlier() -> None:
    table = delay_table()
    assert (table["dispatched_s"] == table["due_s"]).all()
    assert table["job_id"].iloc[-1] == "urgent-later"
    stepper = delay_stepper()
    assert "next_wakeup_s: T0+1s" in stepper.state()
    stepper.run_all()
    assert "completed: now-a, now-b, reminder, report, urgent-later" in stepper.state()
    assert len(DELAYED_JOBS) == 5


def test_graph_layout_is_deterministic_and_layered() -> None:
    first = graph_layout(PIPELINE)
    again = graph_layout(list(reversed(PIPELINE)))
    assert first == again
    assert first["fetch"][0] == 0.0 and first["report"][0] == 4.0
    for job in PIPELINE:
        for dep in job.depends_on:
            assert first[dep][0] < first[job.id][0]


def test_graph_layout_refuses_a_cycle() -> None:
    with pytest.raises(ValueError, match="cycle"):
        graph_layout([Job("a", depends_on=("b",)), Job("b", depends_on=("a",))])


def test_figures_draw() -> None:
    fig = draw_graph(PIPELINE, states={"fetch": "completed", "parse": "dead"}, title="t")
    assert fig.axes
    table = dispatch_table(priority_jobs(4))
    assert len(plot_dispatch_order({"a": table, "b": table}).axes) == 2


def test_waves_and_cascade() -> None:
    waves, states = waves_table()
    assert len(waves) == 5 and set(states.values()) == {"completed"}
    _, states = waves_table(fail=["parse"])
    assert sorted(j for j, s in states.items() if s == "dead") == [
        "index",
        "parse",
        "publish",
        "report",
        "thumbnail",
    ]
    cascade = cascade_table()
    assert cascade["job_id"].iloc[0] == "parse"
    assert (cascade["reason"].iloc[1:].str.startswith("dependency")).all()


def test_recovery_keeps_order_delayed_and_blocked_sets() -> None:
    table = recovery_table()
    assert table["workload"].tolist() == list(WORKLOADS)
    assert table[["ready_kept", "delayed_kept", "blocked_kept"]].all().all()
    snap = recovery_table(snapshot=True)
    assert (snap["replayed"] < table["replayed"]).all()
    assert snap["first_after_restart"].tolist() == table["first_after_restart"].tolist()


def test_downtime_makes_delayed_jobs_due() -> None:
    case = crash_and_recover("delayed", downtime_s=40.0)
    assert case.before["delayed"] == ["job-3", "job-4", "job-6"]
    assert case.after["delayed"] == ["job-6"]


def test_settle_cascade_dead_letters_dependants_at_recovery() -> None:
    case = settle_cascade(max_retry=2)
    assert case.before["in_flight"] == ["parse"]
    assert [r.type for r in case.settle] == ["DEAD"] * 5
    assert case.settle[0].job_id == "parse"
    assert case.after == {"ready": [], "delayed": [], "blocked": []}


# == exercise checks =======================================================================
CHECKS = [
    (ex.check_07_lost_update, 1, 2),
    (ex.check_07_rlock, "ok", "deadlock"),
    (ex.check_07_thread_count, 8, 4),
    (ex.check_11_first_dispatched, None, "task-99"),
    (ex.check_11_waves, 6, 5),
    (ex.check_11_cascade, 2, 5),
]


@pytest.mark.parametrize(("check", "right", "wrong"), CHECKS)
def test_checks_accept_the_answer_and_reject_others(
    check: Callable[[object], Feedback],
    right: object,
    wrong: object,
    capsys: pytest.CaptureFixture[str],
) -> None:
    empty = check(...)
    assert empty.startswith("not answered yet") and not empty.correct
    assert not check(wrong).correct
    if right is None:  # computed: take it from the package
        right = dispatch_table(priority_jobs(8, seed=7))["job_id"].iloc[0]
    assert check(right).correct
    assert "correct" in capsys.readouterr().out
