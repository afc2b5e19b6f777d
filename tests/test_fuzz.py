"""Corruption fuzzing: damaged WAL and snapshot files are read back intact up to the damage,
or refused with file and offset; never another exception, never a silent drop."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phase1.fuzz import (
    MUTATIONS,
    Finding,
    base_corpus,
    check_snapshot_files,
    check_wal_files,
    main,
    make_case,
    run_cases,
)

CHUNKS = 10
CHUNK_CASES = 600  # 6,000 cases in all: `make test` runs >= 5,000


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_fuzz_chunk_finds_nothing(chunk: int) -> None:
    report = run_cases(CHUNK_CASES, seed=0, start=chunk * CHUNK_CASES)
    assert report.cases == CHUNK_CASES
    assert not report.findings, "\n".join(report.lines())
    assert report.outcomes  # every case ended in a documented outcome


def test_every_mutation_and_outcome_kind_is_exercised() -> None:
    report = run_cases(1500, seed=1)
    assert set(report.mutations) == set(MUTATIONS)
    for kind in ("wal:corruption", "wal:torn", "wal:cut-at-line", "snapshot:refused"):
        assert report.outcomes[kind] > 0, report.outcomes
    assert report.outcomes["snapshot:fallback"] > 0


def test_cases_are_deterministic_per_seed() -> None:
    assert make_case(7, 123) == make_case(7, 123)
    a = run_cases(200, seed=7)
    b = run_cases(200, seed=7)
    assert a.outcomes == b.outcomes and a.mutations == b.mutations
    assert [make_case(8, i).files for i in range(20)] != [make_case(7, i).files for i in range(20)]


def test_cli_reports_cases_outcomes_and_time(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--cases", "50", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "fuzz: 50 cases, seed 3" in out
    assert "outcomes:" in out and "findings: 0" in out


def test_only_runs_one_case_verbosely(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--only", "4"]) == 0
    assert "outcome:" in capsys.readouterr().out


def test_the_oracle_catches_a_silent_drop() -> None:
    corpus = base_corpus()
    original = dict(corpus.single)
    lines = original["data/wal.log"].splitlines(keepends=True)
    # a reader that "succeeded" on a log with a middle line gone would be a silent drop;
    # the real reader refuses it (seq gap), so the oracle passes through corruption
    damaged = {"data/wal.log": b"".join(lines[:3] + lines[4:])}
    assert check_wal_files(original, damaged, "data/wal.log") == "corruption"


# -- hypothesis: sequences of corruption ops ----------------------------------------------
ops = st.lists(
    st.tuples(st.sampled_from(sorted(MUTATIONS)), st.integers(0, 2**32 - 1)),
    min_size=1,
    max_size=3,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops, split=st.booleans(), which=st.integers(0, 1))
def test_hypothesis_wal_corruption_sequences(
    ops: list[tuple[str, int]], split: bool, which: int
) -> None:
    corpus = base_corpus()
    original = dict(corpus.split if split else corpus.single)
    path = sorted(original)[which % len(original)]
    data = original[path]
    for name, seed in ops:
        data = MUTATIONS[name](data, random.Random(seed))
    try:
        check_wal_files(original, {**original, path: data}, path)
    except Finding as exc:  # pragma: no cover - a failure prints the input
        raise AssertionError(f"{exc}\nops={ops} split={split} path={path}") from exc


@settings(max_examples=200, deadline=None)
@given(ops=ops, with_older=st.booleans())
def test_hypothesis_snapshot_corruption_sequences(
    ops: list[tuple[str, int]], with_older: bool
) -> None:
    corpus = base_corpus()
    original = {"data/snapshot.json": corpus.snapshot_newer}
    if with_older:
        original["data/snapshot.json.1"] = corpus.snapshot_older
    data = corpus.snapshot_newer
    for name, seed in ops:
        data = MUTATIONS[name](data, random.Random(seed))
    outcome = check_snapshot_files(original, {**original, "data/snapshot.json": data})
    assert outcome in {"intact", "fallback", "refused"}
    if with_older and data != corpus.snapshot_newer and outcome != "intact":
        assert outcome == "fallback"
