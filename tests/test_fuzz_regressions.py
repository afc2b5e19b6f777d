"""Inputs the fuzzer (``phase1.fuzz``) found, kept so they stay fixed.

1. ``python -m phase1.fuzz --seed 0 --only 299`` (truncate-at-line on a closed segment):
   a closed segment emptied, or cut after a whole line, was read as if nothing were
   missing: ``read_wal`` returned the later records and no error, so ``phase1 wal verify``
   said "ok" about a log that had lost records.  A closed segment is fsynced before it is
   named after its last record, so a crash never leaves it short: ``read_wal`` now calls a
   closed segment that does not end at the seq in its name corruption.
2. ``--seed 0 --only 45`` (delete-line: the first record of the first segment): not a bug.
   Older segments may have been dropped, so the reader accepts a log starting anywhere;
   ``recover`` refuses it because no snapshot covers the missing records.
"""

from __future__ import annotations

import pytest

from phase1.errors import WalCorruptionError
from phase1.fuzz import _CONFIG, WAL, base_corpus, check_case, make_case
from phase1.recovery import recover
from phase1.sim.disk import SimDisk
from phase1.wal import read_wal, repair_wal


def disk_with(files: dict[str, bytes]) -> SimDisk:
    disk = SimDisk()
    disk.makedirs("data")
    for path, data in files.items():
        disk.write(path, data)
    return disk


def closed_and_active() -> tuple[str, bytes, bytes]:
    split = base_corpus().split
    closed = next(p for p in split if p != WAL)
    return closed, split[closed], split[WAL]


def test_found_case_seed0_299_still_passes() -> None:
    case = make_case(0, 299)
    assert (case.mutation, case.path) == ("truncate-at-line", "data/wal.log.000000000008")
    assert check_case(case) == "wal:corruption"


def test_an_emptied_closed_segment_is_corruption_not_silence() -> None:
    closed, _, active = closed_and_active()
    disk = disk_with({closed: b"", WAL: active})
    with pytest.raises(WalCorruptionError) as err:
        read_wal(disk, WAL)
    assert err.value.path == closed
    assert "is empty" in str(err.value)


def test_a_closed_segment_cut_at_a_line_boundary_is_corruption() -> None:
    closed, head, _ = closed_and_active()
    lines = head.splitlines(keepends=True)
    short = b"".join(lines[:-2])
    disk = disk_with({closed: short})  # no active segment: nothing else would notice
    with pytest.raises(WalCorruptionError) as err:
        read_wal(disk, WAL)
    assert err.value.path == closed
    assert err.value.offset == len(short)
    assert "ends at seq" in str(err.value)


def test_repair_renames_a_short_closed_segment_after_its_true_last_seq() -> None:
    closed, head, active = closed_and_active()
    lines = head.splitlines(keepends=True)
    disk = disk_with({closed: b"".join(lines[:-1]), WAL: active})
    report = repair_wal(disk, WAL)
    assert report.repaired
    read = read_wal(disk, WAL)  # clean again: the records up to the gap
    assert read.torn is None
    assert read.last_seq == len(lines) - 1


def test_found_case_seed0_45_leading_record_missing_is_refused_by_recovery() -> None:
    case = make_case(0, 45)
    assert case.mutation == "delete-line"
    assert check_case(case) == "wal:cut-at-line"
    with pytest.raises(WalCorruptionError, match="resumes at seq"):
        recover(disk_with(case.files), _CONFIG)


def test_hypothesis_found_forged_but_checksummed_log_is_refused_by_replay() -> None:
    """3. hypothesis (``test_hypothesis_wal_corruption_sequences``): swap two lines, give one
    a lower seq with a correct checksum, cut at a line: every record is valid and the seqs
    run on, but the story is impossible.  No per-record checksum can see that; replay
    refuses it with ``WalCorruptionError`` naming the WAL, line and offset (not a
    ``TypeError`` or a silent wrong state)."""
    import random

    from phase1.fuzz import MUTATIONS, check_wal_files

    original = dict(base_corpus().split)
    data = original[WAL]
    for name, seed in [
        ("swap-lines", 3059597955),
        ("seq-backwards", 4130928866),
        ("truncate-at-line", 4272706933),
    ]:
        data = MUTATIONS[name](data, random.Random(seed))
    files = {**original, WAL: data}
    read = read_wal(disk_with(files), WAL)
    assert read.torn is None
    with pytest.raises(
        WalCorruptionError, match=r"data/wal.log: line \d+, byte offset \d+: replay stopped"
    ) as info:
        recover(disk_with(files), _CONFIG)
    assert info.value.path == WAL and info.value.line >= 1 and info.value.seq is not None
    assert check_wal_files(original, files, WAL) == "cut-at-line"
