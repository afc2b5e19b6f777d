"""Helpers of lesson 12: explorer_view and the exercise checks in exercises_12."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from phase1.crashcheck import ExploreResult, explore_variant, run_workload
from phase1.lessons import exercises_12 as ex
from phase1.lessons.explorer_view import (
    STATE_KINDS,
    op_log_frame,
    plot_states_per_op,
    plot_violation_kinds,
    q3_crash,
    q4_crash,
    same_crash_frame,
    smallest_text,
    states_per_op_frame,
    violation_stepper,
)
from phase1.protocol import CORRECT


@pytest.fixture(scope="module")
def trace():
    return run_workload(CORRECT)


@pytest.fixture(scope="module")
def early_ack():
    """A cheap variant with violations: a sample of 3 states per crash point."""
    return explore_variant("ack-before-durable", seed=42, max_states=3)


@pytest.fixture(scope="module")
def truncate_early():
    return explore_variant("truncate-wal-before-snapshot-durable", seed=42, max_states=3)


# == the workload ==========================================================================
def test_op_log_frame_has_a_row_per_op_and_every_ack_once(trace):
    frame = op_log_frame(trace)
    assert len(frame) == len(trace.ops)
    assert list(frame.columns) == ["step", "disk op", "client told"]
    told = [t for cell in frame["client told"] if cell for t in cell.split(", ")]
    assert len(told) == len(trace.acks)
    assert frame["step"][3] == "enqueue a, b"
    assert frame["disk op"][3].startswith("append data/wal/wal.log")


def test_op_log_frame_shortens_long_steps_only(trace):
    steps = set(op_log_frame(trace)["step"])
    assert "snapshot: write snapshot" in steps
    assert "ack a (attempt 1)" in steps


def test_states_per_op_frame_counts_add_up_to_the_explorers_total(trace):
    frame = states_per_op_frame(trace)
    assert len(frame) == len(trace.states)
    assert (frame[list(STATE_KINDS)].sum(axis=1) == frame["total"]).all()
    assert (frame["process"] == 1).all()
    # one unsynced append of n bytes: 2 whole-op choices, n torn, n zero-filled
    row = frame.loc[7]
    assert row["crash after"] == "append data/wal/wal.log +163 B at 328"
    assert (row["power: whole ops"], row["power: torn"], row["power: zero-filled"]) == (2, 163, 163)
    full = explore_variant("correct", seed=0, max_states=None)
    assert int(frame["total"].sum()) == full.states_possible
    assert full.total_violations == 0


def test_plot_states_per_op_draws_a_bar_per_point_and_kind(trace):
    frame = states_per_op_frame(trace)
    fig = plot_states_per_op(frame)
    ax = fig.axes[0]
    assert len(ax.patches) == len(frame) * len(STATE_KINDS)
    assert ax.get_title().startswith(f"{int(frame['total'].sum()):,} crash states")
    plt.close(fig)


# == one violation =========================================================================
def test_smallest_text_names_the_crash_and_what_was_lost(early_ack):
    text = smallest_text(early_ack)
    lines = text.splitlines()
    assert lines[0].startswith("ack-before-durable: lost-ack (")
    assert lines[1] == "  smallest: power loss after op #3 (every unsynced op lost)"
    assert lines[2] == "  lost: enqueue a, enqueue b"


def test_smallest_text_of_a_clean_run_says_so():
    clean = explore_variant("correct", seed=42, max_states=2)
    assert (
        smallest_text(clean) == f"correct: no violation in {clean.states_explored:,} crash states"
    )


# == one crash, several protocols ===========================================================
def test_q3_in_place_refuses_where_write_then_rename_loads_the_old_snapshot():
    frame = same_crash_frame(q3_crash(0.5), ["snapshot-in-place", "correct"])
    in_place, correct = frame.loc["snapshot-in-place"], frame.loc["correct"]
    assert in_place["verdict"] == "refused"
    assert in_place["recovery"].startswith("SnapshotError")
    assert "torn at byte 175" in in_place["crash"]
    assert "snapshot.json 175 B" in in_place["files after the crash"]
    assert correct["verdict"] == "safe"
    assert correct["recovery"] == "snapshot seq 12 + 7 WAL records"
    assert "tmp" not in correct["files after the crash"]


def test_q4_loses_the_first_acks_only_without_durability_first():
    frame = same_crash_frame(q4_crash(), ["correct", "no-fsync", "ack-before-durable"])
    assert frame.loc["correct", "lost"] == "-"
    assert frame.loc["correct", "verdict"] == "safe"
    for name in ("no-fsync", "ack-before-durable"):
        assert frame.loc[name, "lost"] == "enqueue a, enqueue b"
        assert frame.loc[name, "verdict"] == "lost-ack"
    assert frame.loc["ack-before-durable", "files after the crash"] == "(no files)"


# == the stepper ===========================================================================
def test_violation_stepper_walks_the_ops_then_crashes_then_recovers(truncate_early):
    first = truncate_early.first
    assert first is not None and first.state.kind == "process"
    stepper = violation_stepper(truncate_early)
    n = first.state.after_ops
    assert stepper.total == n + 2
    assert repr(stepper.widget()) == (
        f"StepperView('truncate-wal-before-snapshot-durable: lost', step 0/{n + 2})"
    )
    lines = stepper.run_all()
    assert lines[n - 1].startswith(f"[{n}/{n + 2}] #{n - 1} unlink ")
    assert lines[-2].endswith("process crash after op #21")
    state = stepper.state()
    assert "CRASH: process crash after op #21" in state
    assert "recovery: no snapshot + 0 WAL records" in state
    assert "=> lost: durable then lost" in state


def test_violation_stepper_marks_files_a_power_loss_would_change(early_ack):
    stepper = violation_stepper(early_ack).goto(early_ack.first.state.after_ops)
    state = stepper.state()
    assert "data/wal/wal.log" in state and "<- at risk" in state
    assert state.splitlines()[-1].startswith("client told ok (2)")


def test_violation_stepper_refuses_a_clean_variant():
    clean = explore_variant("correct", seed=42, max_states=2)
    with pytest.raises(ValueError, match="no violation"):
        violation_stepper(clean)


def test_plot_violation_kinds_shows_only_kinds_found(early_ack, truncate_early):
    result = ExploreResult(42, 3, (early_ack, truncate_early))
    fig = plot_violation_kinds(result)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["lost-ack", "lost"]
    assert len(ax.texts) == 4
    plt.close(fig)


# == exercises =============================================================================
@pytest.mark.parametrize(
    "check",
    [ex.check_12_states_after_op, ex.check_12_process_crash_variant, ex.check_12_same_folder_lost],
)
@pytest.mark.parametrize("empty", [None, ..., "  "])
def test_checks_accept_an_empty_answer_with_a_hint(check, empty, capsys):
    feedback = check(empty)
    assert feedback.startswith("not answered yet")
    assert capsys.readouterr().out.strip() == feedback


def test_check_12_states_after_op():
    assert ex.check_12_states_after_op(1 + 1 + 2 + 163 + 164 + 163 + 164).correct
    assert not ex.check_12_states_after_op(329).correct
    assert not ex.check_12_states_after_op("many").correct


def test_check_12_process_crash_variant():
    assert ex.check_12_process_crash_variant("truncate-wal-before-snapshot-durable").correct
    assert ex.check_12_process_crash_variant("Truncate WAL before snapshot durable").correct
    assert not ex.check_12_process_crash_variant("no-fsync").correct


def test_check_12_same_folder_lost():
    assert ex.check_12_same_folder_lost(0).correct
    assert not ex.check_12_same_folder_lost(3).correct
