"""The lesson helpers (phase1/lessons/): views, stepper, scenarios and exercise checks."""

from __future__ import annotations

import os
import re

import pytest

from phase1.clock import ManualClock
from phase1.core import TRANSITIONS, QueueCore
from phase1.jobs import Job
from phase1.lessons import exercises as ex
from phase1.lessons.fencing import NaiveQueue, late_ack_table, poison_run, q5_stepper
from phase1.lessons.fsync import group_commit_run, power_loss_table, simulated_group_commit
from phase1.lessons.replay import damage_table, q1_stepper
from phase1.lessons.snapshots import crash_outcomes, protocol_stepper, q3_table
from phase1.lessons.stepper import Action, Scenario, Stepper
from phase1.lessons.views import (
    counts_text,
    draw_state_diagram,
    hide_paths,
    in_flight_table,
    jobs_table,
    run_jq,
    state_text,
    temp_config,
    transition_table,
    when,
)
from phase1.recovery import recover
from phase1.runtime.durable import DurableQueue

ADDRESS = re.compile(r"0x[0-9a-f]{6,}")


def small_core() -> QueueCore:
    core = QueueCore(max_retry=2, task_timeout_s=3.0)
    core.enqueue([Job("a"), Job("b")], now_s=0.0)
    core.dispatch(now_s=0.0, worker_id=1)
    return core


# == views ================================================================================
def test_transition_table_has_one_row_per_record_type() -> None:
    table = transition_table()
    assert list(table["record"]) == list(TRANSITIONS)
    assert table.set_index("record").loc["ENQUEUE", "from"] == "(new)"


def test_state_diagram_draws_without_error() -> None:
    fig = draw_state_diagram()
    assert fig.axes


def test_views_show_queues_and_deadlines() -> None:
    core = small_core()
    assert counts_text(core) == "pending=1 in_flight=1 completed=0 dead=0 last_seq=3"
    assert list(jobs_table(core)["state"]) == ["pending", "in_flight"]
    flights = in_flight_table(core, now_s=1.0)
    assert flights.loc[0, "deadline"] == "3s" and flights.loc[0, "left_s"] == 2.0
    text = state_text(core, durable_seq=3, now_s=1.0)
    assert "in_flight: a worker=1 attempt=1 deadline=3s" in text and "durable_seq: 3" in text


def test_when_shows_epoch_times_as_utc_and_virtual_times_as_seconds() -> None:
    assert when(1_704_103_203_000) == "10:00:03.000Z"
    assert when(3_500) == "3.5s"


def test_hide_paths_keeps_basenames() -> None:
    assert hide_paths("cannot open /tmp/phase1-x1/wal.log: no") == "cannot open wal.log: no"
    assert hide_paths("data/wal.log line 3") == "data/wal.log line 3"


def test_temp_config_uses_a_fresh_folder() -> None:
    a, b = temp_config(), temp_config()
    assert a.wal_dir != b.wal_dir and os.path.isdir(a.wal_dir)


def test_run_jq_reads_a_wal_or_says_it_is_missing() -> None:
    config = temp_config()
    with DurableQueue(config, clock=ManualClock(0.0)) as q:
        q.submit([Job("a")])
    out = run_jq(["-r", ".type"], config.wal_path)
    assert out == "ENQUEUE" or out.startswith("jq is not installed")


# == stepper ==============================================================================
def counter_setup() -> Scenario:
    box: list[int] = []
    actions = [Action(f"push {i}", lambda i=i: box.append(i)) for i in range(3)]
    return Scenario(actions, lambda: f"box={box}", world=box)


def test_stepper_steps_runs_all_and_goes_back_by_replaying() -> None:
    s = Stepper(counter_setup, title="t")
    assert s.step() == "[1/3] push 0"
    assert s.run_all() == ["[2/3] push 1", "[3/3] push 2"]
    assert s.done and s.step().endswith("(finished: reset to replay)")
    assert s.goto(1).state() == "box=[0]"  # rebuilt from setup, not undone
    assert repr(s) == "Stepper('t', step 1/3)"


def test_stepper_widget_responds_to_clicks_and_has_a_deterministic_repr() -> None:
    view = Stepper(counter_setup, title="t").widget()
    assert repr(view) == "StepperView('t', step 0/3)"
    before = view.screen.value
    view.step_button.click()
    assert view.stepper.position == 1 and view.screen.value != before
    view.slider.value = 3
    assert view.stepper.position == 3 and view.step_button.disabled
    view.reset_button.click()
    assert view.stepper.position == 0 and view.slider.value == 0
    assert not ADDRESS.search(repr(view))


# == scenarios ============================================================================
def test_q1_stepper_matches_recover() -> None:
    s = q1_stepper()
    lines = s.run_all()
    assert len(lines) == 11 and "RETRY task-102" in lines[-1]
    core, report = recover(s.world.disk, s.world.config)
    assert report.records_replayed == 3
    assert core.counts() == s.world.core.counts()


def test_q1_stepper_is_deterministic() -> None:
    assert q1_stepper().goto(11).state() == q1_stepper().goto(11).state()


def test_damage_table_tells_torn_from_corrupt() -> None:
    outcomes = list(damage_table()["recover()"])
    assert outcomes[0].startswith("ok: 12") and outcomes[1].startswith("ok: 11")
    assert outcomes[2] == "raises WalCorruptionError"


def test_q3_in_place_breaks_and_rename_survives() -> None:
    found = list(q3_table()["load_snapshot finds"])
    assert found[0].startswith("SnapshotError") and found[1] == "seq 6 (snapshot.json)"


def test_write_then_rename_never_loads_a_broken_snapshot() -> None:
    table = crash_outcomes("write-then-rename")
    cells = table[["process dies", "power fails", "power fails mid-write"]].to_numpy().ravel()
    assert not any(str(c).startswith("SnapshotError") for c in cells)
    assert protocol_stepper("write-then-rename").total == len(table) - 1


def test_late_ack_table_shows_double_completion_only_without_fencing() -> None:
    assert list(late_ack_table()["completions"]) == [2, 1, 1]
    q = NaiveQueue()
    q.enqueue("x")
    assert q.ack("x") == "completed" and q.ack("x") == "completed"


def test_q5_stepper_returns_a_late_ack() -> None:
    lines = q5_stepper().run_all()
    assert lines[5].endswith("effect LateAck")


def test_poison_job_is_dead_after_max_retry_attempts() -> None:
    records = poison_run(3)
    assert [r.type for r in records].count("DISPATCH") == 3 and records[-1].type == "DEAD"
    assert poison_run(2, timeout=True)[-1].reason == "timed out on attempt 2; max_retry 2 reached"


def test_power_loss_table_never_loses_everything_unsynced() -> None:
    table = power_loss_table(5).set_index("policy")
    assert table.loc["never", "lost"] == 5 and table.loc["always", "lost"] == 0
    assert table.loc["batch", "lost"] == 0


def test_simulated_group_commit_trades_fsyncs_for_wait() -> None:
    eager, patient = simulated_group_commit(0.0), simulated_group_commit(0.010)
    assert eager["fsyncs"] == 1000 and patient["fsyncs"] < 100
    assert patient["wait_ms_max"] > eager["wait_ms_max"]


def test_group_commit_run_reports_counts(tmp_path: os.PathLike[str]) -> None:
    row = group_commit_run(str(tmp_path), threads=2, jobs_per_thread=3, batch_interval_s=0.0)
    assert row["jobs"] == 6 and 1 <= row["fsyncs"] <= 6


# == exercise checks =======================================================================
CHECKS = [getattr(ex, name) for name in ex.__all__ if name.startswith("check_")]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("empty", [None, ..., ""])
def test_empty_answers_give_a_hint_and_do_not_raise(check, empty, capsys) -> None:  # type: ignore[no-untyped-def]
    out = check(empty)
    assert isinstance(out, ex.Feedback) and not out.correct and "Hint" in out
    assert capsys.readouterr().out.strip() == out


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_wrong_answers_of_any_type_give_a_hint(check) -> None:  # type: ignore[no-untyped-def]
    for wrong in (-12345, "nonsense", object(), [1, 2]):
        assert not check(wrong).correct


RIGHT = {
    "check_00_lost": 0,
    "check_00_requeued": 1,
    "check_01_from_pending": ["dispatch", "DEAD"],
    "check_01_second_attempt": 2,
    "check_01_generator": 759,
    "check_02_torn_or_corrupt": "torn",
    "check_03_never_lost": 20,
    "check_03_safe_policies": "always, batch",
    "check_04_loaded_seq": 6,
    "check_04_skipped_step": "fsync",
    "check_05_replayed": 3,
    "check_05_second_replay": 0,
    "check_05_torn_or_corrupt": "corruption",
    "check_06_late_ack_effect": "LateAck",
    "check_06_dispatches_before_dead": 3,
    "check_06_records_at_max_retry_5": 16,
}


def test_right_answers_are_correct() -> None:
    import zlib

    line = ex.EXERCISE_02_LINE
    RIGHT["check_02_checksum"] = zlib.crc32(line[: line.rfind(b',"checksum":')])
    RIGHT["check_03_fsyncs_at_20ms"] = simulated_group_commit(0.020)["fsyncs"]
    assert set(RIGHT) == {c.__name__ for c in CHECKS}
    for name, answer in RIGHT.items():
        assert getattr(ex, name)(answer).correct, name


def test_feedback_displays_nothing_extra() -> None:
    assert ex.Feedback("correct: 1")._ipython_display_() is None
