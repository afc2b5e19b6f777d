"""Helpers of lessons 08 and 09: simview and the exercise checks in exercises_sim."""

from __future__ import annotations

import pytest

from phase1.lessons import exercises_sim as ex
from phase1.lessons.simview import (
    LEDGER_COLUMNS,
    TraceWorld,
    crash_kind_table,
    event_text,
    ledger_table,
    plot_timeline,
    recoveries_table,
    short_run_inputs,
    summary_text,
    trace_hash,
    trace_stepper,
)
from phase1.sim.harness import Simulation, Workload, run_simulation
from phase1.sim.scenarios import scenario


@pytest.fixture(scope="module")
def short_crash():
    """The short run of lesson 08 (5 jobs, a process crash at 4.5 ms), run uninterrupted."""
    return Simulation(*short_run_inputs(), seed=42).run()


# == text and tables =======================================================================
def test_summary_text_drops_the_wall_clock_part(short_crash):
    text = summary_text(short_crash)
    assert "wall" not in text
    assert text.startswith("seed=42 policy=batch")
    assert short_crash.summary().startswith(text + " jobs/wall-s=")


def test_ledger_table_has_one_row_per_run_and_the_ledger_counts(short_crash):
    table = ledger_table({"a": short_crash, "b": short_crash})
    assert list(table.index) == ["a", "b"]
    assert list(table.columns) == ["policy", *LEDGER_COLUMNS]
    for col in LEDGER_COLUMNS:
        assert table.loc["a", col] == short_crash.ledger[col]
    assert table.loc["a", "crashes"] == 1 and table.loc["a", "lost"] == 0


def test_trace_hash_is_stable_per_seed_and_differs_across_seeds(short_crash):
    again = Simulation(*short_run_inputs(), seed=42).run()
    other = Simulation(*short_run_inputs(), seed=43).run()
    assert trace_hash(again) == trace_hash(short_crash)
    assert len(trace_hash(short_crash)) == 16
    assert trace_hash(other) != trace_hash(short_crash)


def test_recoveries_table_has_no_wall_time(short_crash):
    table = recoveries_table(short_crash)
    assert len(table) == 1
    assert not [c for c in table.columns if "wall" in c]
    assert table.loc[0, "kind"] == "process" and table.loc[0, "records_read"] == 8


def test_recoveries_table_of_a_run_without_crashes_is_empty():
    config, plan, _ = short_run_inputs(crash_at_s=None)
    result = run_simulation(config, plan, Workload(jobs=3, rate_per_s=500.0), seed=1)
    assert recoveries_table(result).empty


def test_crash_kind_table_power_loses_only_under_never():
    config, plan, workload = scenario("steady", 5)
    small = (config, plan, Workload(jobs=800, rate_per_s=workload.rate_per_s, mix=workload.mix))
    table = crash_kind_table(small, 5, crash_at_s=0.4)
    assert list(zip(table["policy"], table["crash"], strict=True)) == [
        ("batch", "process"),
        ("batch", "power"),
        ("never", "process"),
        ("never", "power"),
    ]
    lost = dict(zip(zip(table["policy"], table["crash"], strict=True), table["lost"], strict=True))
    assert lost[("batch", "process")] == lost[("batch", "power")] == 0
    assert lost[("never", "process")] == 0
    assert lost[("never", "power")] > 0


def test_plot_timeline_draws_a_line_per_crash_on_both_panels(short_crash):
    fig = plot_timeline(short_crash)
    top, bottom = fig.axes
    assert len(top.lines) == 1 + 1  # throughput + one crash
    assert len(bottom.lines) == 2 + 1  # pending, in flight + one crash
    assert "1 crashes" in top.get_title()


# == the trace stepper =====================================================================
def test_event_text_names_fields_and_keeps_unknown_ones():
    assert event_text((0.0015, "deliver", "j1", 0, 2)) == "t=1.500ms deliver j1 worker=0 attempt=2"
    assert event_text((0.0, "mystery", 1, 2)) == "t=0.000ms mystery 1 2"


def test_stepping_gives_the_trace_of_an_uninterrupted_run(short_crash):
    stepper = trace_stepper(seed=42)
    lines = stepper.run_all()
    assert len(lines) == stepper.total == 23
    assert stepper.world.sim.trace_events == short_crash.trace_events
    assert lines[-1].endswith("drained")


def test_stepper_labels_are_the_groups_each_step_logs():
    world = TraceWorld(short_run_inputs(), 42)
    stepper = trace_stepper(seed=42)
    for label in stepper.labels:
        assert " | ".join(event_text(e) for e in world.advance()) == label
    assert world.finished


def test_stepper_state_shows_down_during_recovery_and_the_wal_tail():
    stepper = trace_stepper(seed=42)
    before = stepper.goto(10).state()
    assert " up" in before.splitlines()[0]
    crashed = stepper.goto(11).state()
    assert "DOWN (recovering)" in crashed
    assert "RETRY j000002" in crashed and "durable_seq: 9" in crashed
    assert "up" in stepper.goto(14).state().splitlines()[0]


def test_stepper_widget_repr_is_deterministic():
    view = trace_stepper(seed=42).widget()
    assert repr(view) == "StepperView('short run, seed 42', step 0/23)"
    view.step_button.click()
    assert view.stepper.position == 1


# == exercise checks ========================================================================
CHECKS = [
    ex.check_08_never_power_lost,
    ex.check_08_which_crash,
    ex.check_08_crashes_seed7,
    ex.check_09_safe_policies,
    ex.check_09_drain_at_60,
    ex.check_09_recovery_ratio,
]


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("empty", [None, ..., "  "])
def test_checks_accept_an_empty_answer_with_a_hint(check, empty, capsys):
    feedback = check(empty)
    assert feedback.startswith("not answered yet") and not feedback.correct
    assert capsys.readouterr().out.strip() == feedback


def test_check_08_which_crash():
    assert ex.check_08_which_crash("power").correct
    assert ex.check_08_which_crash("Power loss").correct
    assert not ex.check_08_which_crash("process").correct


def test_check_08_crashes_seed7_uses_the_scenario():
    from phase1.sim.scenarios import run_scenario

    crashes = run_scenario("crash-storm", 7).ledger["crashes"]
    assert ex.check_08_crashes_seed7(crashes).correct
    assert not ex.check_08_crashes_seed7(crashes + 1).correct
    assert not ex.check_08_crashes_seed7(True).correct


def test_check_08_never_power_lost_matches_the_lesson_number():
    assert ex.check_08_never_power_lost(597).correct
    assert not ex.check_08_never_power_lost(0).correct


def test_check_09_safe_policies():
    assert ex.check_09_safe_policies(["batch", "always"]).correct
    assert ex.check_09_safe_policies("always, batch").correct
    assert not ex.check_09_safe_policies(["always", "batch", "never"]).correct


def test_check_09_drain_at_60():
    from phase1.sim.experiments import drain_point

    value = drain_point(0.6, downtime_s=0.5, seed=ex.LESSON_SEED)["drain_after_up_s"]
    assert ex.check_09_drain_at_60(round(value, 2)).correct
    assert not ex.check_09_drain_at_60(round(value + 0.1, 2)).correct


def test_check_09_recovery_ratio_matches_lesson_09():
    assert ex.check_09_recovery_ratio(6.24).correct
    assert not ex.check_09_recovery_ratio(1.0).correct
    assert not ex.check_09_recovery_ratio("many").correct
