"""Exercise checks for the lessons: ``check_0X_name(answer)`` prints ``correct`` or a hint.

Owns: one check per exercise in ``notebooks/00-06``.  Each computes the right answer from
the real package (never a hard-coded number where the package can say it), prints one
line and returns it as ``Feedback`` (a ``str``).  An empty answer (``None`` or ``...``)
prints a hint and never raises, so a notebook's exercise cells run before anyone answers.

``Feedback`` has an ``_ipython_display_`` that shows nothing: the printed line is the only
output, so a check as the last line of a cell does not echo twice.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

from phase1.core import TRANSITIONS, Record
from phase1.jobs import JobState, generate_test_jobs
from phase1.wal import encode_record

__all__ = [
    "Feedback",
    "EXERCISE_02_LINE",
    "check_00_lost",
    "check_00_requeued",
    "check_01_from_pending",
    "check_01_second_attempt",
    "check_01_generator",
    "check_02_checksum",
    "check_02_torn_or_corrupt",
    "check_03_never_lost",
    "check_03_safe_policies",
    "check_03_fsyncs_at_20ms",
    "check_04_loaded_seq",
    "check_04_skipped_step",
    "check_05_replayed",
    "check_05_second_replay",
    "check_05_torn_or_corrupt",
    "check_06_late_ack_effect",
    "check_06_dispatches_before_dead",
    "check_06_records_at_max_retry_5",
]


class Feedback(str):
    """The line a check printed.  Displays as nothing (it was printed already)."""

    __slots__ = ()

    def _ipython_display_(self) -> None:
        return None

    @property
    def correct(self) -> bool:
        return self.startswith("correct")


def _empty(answer: Any) -> bool:
    return answer is None or answer is Ellipsis or (isinstance(answer, str) and not answer.strip())


def _say(text: str) -> Feedback:
    print(text)
    return Feedback(text)


def _check(answer: Any, expected: Any, hint: str, *, same: Callable[[Any, Any], bool]) -> Feedback:
    if _empty(answer):
        return _say(f"not answered yet: replace ... with your answer. Hint: {hint}")
    try:
        ok = same(answer, expected)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if ok:
        return _say(f"correct: {_show(expected)}")
    return _say(f"not quite ({_show(answer)}). Hint: {hint}")


def _show(value: Any) -> str:
    if isinstance(value, set | frozenset):
        return "{" + ", ".join(repr(v) for v in sorted(value)) + "}"
    return repr(value)


def _int_eq(answer: Any, expected: Any) -> bool:
    return not isinstance(answer, bool) and int(answer) == expected and float(answer) == expected


def _word_in(*accepted: str) -> Callable[[Any, Any], bool]:
    def same(answer: Any, _expected: Any) -> bool:
        text = str(answer).strip().lower().replace("_", " ").replace("-", " ")
        return any(text == a or text.startswith(a + " ") for a in accepted)

    return same


def _names(answer: Any) -> frozenset[str]:
    if isinstance(answer, str):
        answer = answer.replace(",", " ").split()
    if not isinstance(answer, Iterable):
        raise TypeError("not a collection")
    return frozenset(str(a).strip().lower() for a in answer)


def _set_eq(answer: Any, expected: Any) -> bool:
    return _names(answer) == _names(expected)


# == 00 tour ==============================================================================
def check_00_lost(answer: Any) -> Feedback:
    """How many acknowledged jobs did the crash in 00-tour lose?"""
    return _check(
        answer,
        0,
        "compare the completed count before the crash with the one recovery reports.",
        same=_int_eq,
    )


def check_00_requeued(answer: Any) -> Feedback:
    """How many jobs did recovery re-queue in 00-tour?"""
    return _check(
        answer,
        1,
        "which jobs were in flight when the process died? RecoveryReport.requeued counts them.",
        same=_int_eq,
    )


# == 01 job lifecycle =====================================================================
def check_01_from_pending(answer: Any) -> Feedback:
    """Which record types may a PENDING job receive?  (Drawn from ``core.TRANSITIONS``.)"""
    expected = frozenset(t for t, (src, _) in TRANSITIONS.items() if JobState.PENDING in src)
    return _check(
        answer,
        expected,
        "look for 'pending' in the 'from' column of transition_table() (two rows).",
        same=_set_eq,
    )


def check_01_second_attempt(answer: Any) -> Feedback:
    """A job is dispatched, times out and is dispatched again: the second DISPATCH's attempt?"""
    return _check(
        answer,
        2,
        "every DISPATCH counts one attempt (attempt = previous + 1); a TIMEOUT does not.",
        same=_int_eq,
    )


def check_01_generator(answer: Any) -> Feedback:
    """``payload["value"]`` of ``task-0003`` from ``generate_test_jobs(5, random.Random(42))``."""
    expected = generate_test_jobs(5, random.Random(42))[3].payload["value"]
    return _check(
        answer,
        expected,
        "build a fresh random.Random(SEED) (a used one has moved on) and index the list at 3.",
        same=_int_eq,
    )


# == 02 write-ahead log ===================================================================
EXERCISE_02_LINE: bytes = encode_record(
    Record(
        seq=7,
        type="DISPATCH",
        job_id="task-0003",
        timestamp_ms=1_704_103_200_000,
        attempt=1,
        worker_id=2,
        deadline_ms=1_704_103_203_000,
    )
)
"""A WAL line for exercise 02: recompute its checksum."""


def check_02_checksum(answer: Any) -> Feedback:
    """The CRC32 of ``EXERCISE_02_LINE``'s body (every byte before ``,"checksum":``)."""
    body = EXERCISE_02_LINE[: EXERCISE_02_LINE.rfind(b',"checksum":')]
    return _check(
        answer,
        zlib.crc32(body),
        "zlib.crc32 of the bytes before b',\"checksum\":' (not the whole line).",
        same=_int_eq,
    )


def check_02_torn_or_corrupt(answer: Any) -> Feedback:
    """A byte flipped in the LAST record, nothing after it: 'torn' or 'corruption'?"""
    return _check(
        answer,
        "torn",
        "what could a crash mid-append leave at the end of the file? Nothing valid follows it.",
        same=_word_in("torn", "torn tail"),
    )


# == 03 fsync and group commit ============================================================
def check_03_never_lost(answer: Any) -> Feedback:
    """How many acknowledged jobs did policy ``never`` lose in the power-loss demo?"""
    from phase1.lessons.fsync import power_loss_table

    table = power_loss_table()
    expected = int(table.loc[table["policy"] == "never", "lost"].iloc[0])
    return _check(answer, expected, "read the 'lost' column of the never row.", same=_int_eq)


def check_03_safe_policies(answer: Any) -> Feedback:
    """Which policies lose no acknowledged job when the power fails?"""
    from phase1.lessons.fsync import power_loss_table

    table = power_loss_table()
    expected = frozenset(table.loc[table["lost"] == 0, "policy"])
    return _check(
        answer,
        expected,
        "a policy is safe when it fsyncs before it acknowledges (two of the three).",
        same=_set_eq,
    )


def check_03_fsyncs_at_20ms(answer: Any) -> Feedback:
    """``simulated_group_commit(0.020)``: how many fsyncs for 1000 records, 1 per ms?"""
    from phase1.lessons.fsync import simulated_group_commit

    expected = simulated_group_commit(0.020)["fsyncs"]
    return _check(
        answer,
        expected,
        "run simulated_group_commit(0.020) and read 'fsyncs' (about records / (interval/gap + 1)).",
        same=_int_eq,
    )


# == 04 atomic snapshots ==================================================================
@cache
def _old_new_seqs() -> tuple[int, int]:
    from phase1.lessons.snapshots import old_and_new_states

    old, new = old_and_new_states()
    return old.last_seq, new.last_seq


def check_04_loaded_seq(answer: Any) -> Feedback:
    """The process dies half-way through ``write_snapshot``: which ``last_seq`` loads?"""
    old, _new = _old_new_seqs()
    return _check(
        answer,
        old,
        "the rename never happened, so snapshot.json is still the old one.",
        same=_int_eq,
    )


def check_04_skipped_step(answer: Any) -> Feedback:
    """Which step of write_snapshot, left out, lets a power loss right after the final
    rename and fsync_dir leave an empty snapshot.json?"""
    return _check(
        answer,
        "fsync",
        "the rename made the new name durable; were the temp file's bytes durable too?",
        same=_word_in("fsync", "fsync tmp", "fsync the temp file", "2", "step 2"),
    )


# == 05 crash recovery ====================================================================
def check_05_replayed(answer: Any) -> Feedback:
    """In the Q1 timeline, how many WAL records does recovery replay?"""
    return _check(
        answer,
        3,
        "count the records written after the T0 snapshot (T1, T2, T3).",
        same=_int_eq,
    )


def check_05_second_replay(answer: Any) -> Feedback:
    """Replaying the same records a second time: how many change the core?"""
    return _check(
        answer,
        0,
        "apply() returns False for a record whose seq <= last_seq.",
        same=_int_eq,
    )


def check_05_torn_or_corrupt(answer: Any) -> Feedback:
    """A damaged record in the middle of the WAL, valid records after it: torn or corrupt?"""
    return _check(
        answer,
        "corruption",
        "a crash only tears the end of the file; valid records after the damage mean more.",
        same=_word_in("corruption", "corrupt", "corrupted"),
    )


# == 06 timeouts, retries, dead letters ===================================================
def check_06_late_ack_effect(answer: Any) -> Feedback:
    """The class name of the effect ``QueueCore.ack`` returns for attempt 1's late ACK."""
    return _check(
        answer,
        "LateAck",
        "look at effect_names() of the late ACK's step in the Q5 stepper (step 6).",
        same=lambda a, e: str(getattr(a, "__name__", a)).strip() == e,
    )


def check_06_dispatches_before_dead(answer: Any) -> Feedback:
    """With max_retry 3, how many DISPATCH records does the poison job get?"""
    from phase1.lessons.fencing import poison_run

    expected = sum(1 for r in poison_run(3) if r.type == "DISPATCH")
    return _check(
        answer,
        expected,
        "each DISPATCH is one attempt; the job dies when its attempt reaches max_retry.",
        same=_int_eq,
    )


def check_06_records_at_max_retry_5(answer: Any) -> Feedback:
    """``len(poison_run(5))``: how many records until the poison job is dead with max_retry 5?"""
    from phase1.lessons.fencing import poison_run

    return _check(
        answer,
        len(poison_run(5)),
        "ENQUEUE, then DISPATCH + FAIL + RETRY per attempt, the last RETRY replaced by DEAD.",
        same=_int_eq,
    )
