"""The crash explorer: the correct protocol survives every crash state of the standard
workload; each broken variant loses data in the way its name says."""

from __future__ import annotations

import random

import pytest

from phase1.crashcheck import (
    EXPECTED_KIND,
    KINDS,
    STANDARD_CONFIG,
    CrashState,
    check_disk,
    crash_states,
    explore,
    explore_variant,
    report_lines,
    run_workload,
    timeline,
)
from phase1.protocol import CORRECT, VARIANTS, protocol_named

VARIANT_STATES = 150  # per crash point for the broken variants: enough to find each bug


def test_correct_protocol_survives_the_full_enumeration() -> None:
    result = explore_variant(CORRECT, max_states=None)
    assert not result.sampled
    assert result.states_explored == result.states_possible > 5000
    assert result.total_violations == 0, {k: v.detail for k, v in result.smallest.items()}
    assert result.crash_points == result.ops + 1


def test_correct_protocol_with_a_preallocated_wal_survives_the_full_enumeration() -> None:
    """Records written over newline padding (the runtime's default): every crash state,
    torn writes over the padding and zero-filled ones included, recovers clean."""
    config = STANDARD_CONFIG.replace(preallocate_bytes=128)
    result = explore_variant(CORRECT, max_states=None, config=config)
    assert not result.sampled
    kinds = {op.kind for op in result.trace.ops}
    assert "write_at" in kinds and "append" not in kinds
    assert result.states_explored == result.states_possible > 7000
    assert result.total_violations == 0, {k: v.detail for k, v in result.smallest.items()}


@pytest.mark.parametrize("name", [n for n in VARIANTS if n != "correct"])
def test_each_variant_shows_a_violation_of_its_expected_kind(name: str) -> None:
    result = explore_variant(name, max_states=VARIANT_STATES)
    expected = EXPECTED_KIND[name]
    assert any(result.violations[k] for k in expected), result.violations
    first = result.first
    assert first is not None
    lines = timeline(result.trace, first)
    assert lines[-2].startswith("  ** ") and first.kind in lines[-1]


def test_variant_losses_name_the_facts_lost() -> None:
    no_fsync = explore_variant("no-fsync", max_states=50)
    lost_ack = no_fsync.smallest["lost-ack"]
    assert lost_ack.state.kind == "power"
    assert lost_ack.lost and all(f.kind == "enqueue" for f in lost_ack.lost)
    early = explore_variant("truncate-wal-before-snapshot-durable", max_states=50)
    lost = early.smallest["lost"]
    assert lost.state.kind == "process"  # not even a power loss is needed
    assert any(f.kind == "completed" for f in lost.lost)


def test_explorer_is_deterministic_for_a_seed() -> None:
    names = ["correct", "no-fsync", "snapshot-in-place"]
    a = explore(names, seed=3, max_states=40)
    b = explore(names, seed=3, max_states=40)
    assert a.rows(with_time=False) == b.rows(with_time=False)
    for va, vb in zip(a.variants, b.variants, strict=True):
        assert va.smallest == vb.smallest
    assert report_lines(a)[1:] == report_lines(b)[1:]  # all but the timed table


def test_sampling_says_how_many_states_exist() -> None:
    result = explore_variant("no-fsync", max_states=20)
    assert result.sampled
    assert result.states_possible > 10**6 > result.states_explored
    assert "a seeded sample" in "\n".join(report_lines(explore(["no-fsync"], max_states=20)))


def test_workload_acknowledges_only_after_the_fsync() -> None:
    trace = run_workload()
    fsyncs = [op.index for op in trace.ops if op.kind == "fsync"]
    assert trace.acks
    for ack in trace.acks:  # each ack comes after some fsync, under the correct protocol
        assert any(i < ack.after_ops for i in fsyncs)
    eager = run_workload(protocol_named("ack-before-durable"))
    assert eager.acks[0].after_ops < trace.acks[0].after_ops


def test_crash_states_enumerate_torn_and_zero_filled_writes() -> None:
    trace = run_workload()
    # the op after the first append to the (then durable) active segment: an unsynced append
    n = next(
        i + 1
        for i, op in enumerate(trace.ops)
        if op.kind == "append"
        and trace.states[i + 1].durable_names
        and any(p.endswith("wal.log") for p, _ in trace.states[i + 1].durable_names)
    )
    states, total = crash_states(trace, n, max_states=None, rng=random.Random(0))
    assert len(states) == total
    assert states[0].kind == "process"
    assert any(s.zero_fill for s in states) and any(s.cuts and not s.zero_fill for s in states)
    for s in states[:50]:
        assert isinstance(s, CrashState) and s.after_ops == n


def test_check_disk_reports_refusal_for_an_unreadable_snapshot() -> None:
    trace = run_workload()
    disk = CrashState(len(trace.ops), "process").disk(trace)
    disk.write("data/snap/snapshot.json", b"garbage\n")
    disk.unlink("data/snap/snapshot.json.1")
    verdict = check_disk(disk, trace.config)
    assert verdict.facts is None
    assert verdict.problems[0][0] == "refused"


def test_every_kind_is_counted_in_rows() -> None:
    result = explore(["correct"], max_states=5)
    row = result.rows()[0]
    for kind in KINDS:
        assert row[kind] == 0
    assert {"variant", "crash_states", "possible", "time_s"} <= set(row)


# -- the CLI and the lesson helpers ------------------------------------------------------------
def test_cli_explore_lists_variants(capsys: pytest.CaptureFixture[str]) -> None:
    from phase1.cli import main

    assert main(["explore", "--list"]) == 0
    out = capsys.readouterr().out
    for name in VARIANTS:
        assert name in out


def test_cli_explore_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from phase1.cli import main

    assert main(["explore", "--variant", "rename-without-dir-fsync", "--max-states", "30"]) == 0
    out = capsys.readouterr().out
    assert "crash_states" in out and "the smallest crash state" in out
    assert main(["explore", "--variant", "correct", "--max-states", "5", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["variants"][0]["variant"] == "correct"
    assert doc["variants"][0]["violations"] == 0
    plain = doc["variants"][0]["possible"]
    args = ["explore", "--variant", "correct", "--max-states", "5", "--format", "json"]
    assert main([*args, "--preallocate", "128"]) == 0
    padded = json.loads(capsys.readouterr().out)["variants"][0]
    assert padded["violations"] == 0 and padded["possible"] > plain  # torn padding: more


def test_cli_explore_rejects_an_unknown_variant(capsys: pytest.CaptureFixture[str]) -> None:
    from phase1.cli import main

    assert main(["explore", "--variant", "nope"]) == 2
    assert "not a protocol variant" in capsys.readouterr().err


def test_lesson_frame_and_timeline_plot() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from phase1.lessons.crash import explore_frame, plot_violation_timeline, violations_frame

    result = explore(["correct", "ack-before-durable"], max_states=30)
    frame = explore_frame(result, with_time=False)
    assert list(frame.index) == ["correct", "ack-before-durable"]
    assert frame.loc["correct", "violations"] == 0
    assert frame.loc["ack-before-durable", "lost-ack"] > 0
    assert "time_s" in explore_frame(result).columns
    table = violations_frame(result)
    assert set(table["variant"]) == {"ack-before-durable"}
    fig = plot_violation_timeline(result["ack-before-durable"])
    assert fig.axes and "lost-ack" in fig.axes[0].get_title()
    with pytest.raises(ValueError):
        plot_violation_timeline(result["correct"])
