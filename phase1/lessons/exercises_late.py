"""Exercise checks for lessons 10 and 13: ``check_1X_name(answer)`` prints ``correct`` or a hint.

Owns: one check per exercise in ``notebooks/10-metrics-and-dashboards`` and
``notebooks/13-json-or-binary``.  Same contract as ``phase1.lessons.exercises``: each
check computes the right answer from the real package (never a number copied from a
notebook), prints one line and returns it as a ``Feedback``; an empty answer (``None``,
``...`` or blank text) prints a hint and never raises, so the exercise cells run before
anyone answers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from typing import Any

from phase1.core import Record
from phase1.lessons.exercises import Feedback, _check
from phase1.lessons.framing import encode_frame, encode_frames, read_frames, sample_records
from phase1.lessons.metrics_view import histogram_quantile, run_virtual
from phase1.wal import encode_record

__all__ = [
    "EXERCISE_10_BUCKETS",
    "check_10_p95",
    "check_10_retry_ratio",
    "check_10_label",
    "check_13_dispatch_bytes",
    "check_13_records_after_damaged_length",
    "check_13_size_ratio",
]

#: ``(le, cumulative count)`` of a small latency histogram for exercise 10.1.
EXERCISE_10_BUCKETS: list[tuple[float, float]] = [
    (0.1, 40.0),
    (0.25, 70.0),
    (0.5, 90.0),
    (1.0, 98.0),
    (math.inf, 100.0),
]


def _int_eq(answer: Any, expected: Any) -> bool:
    return not isinstance(answer, bool) and int(answer) == expected and float(answer) == expected


def _close(tol: float) -> Callable[[Any, Any], bool]:
    def same(answer: Any, expected: Any) -> bool:
        return not isinstance(answer, bool) and abs(float(answer) - expected) <= tol

    return same


# == 10 metrics and dashboards =============================================================
@cache
def _lesson10_counters() -> tuple[float, float]:
    run = run_virtual(42)
    m = run.metrics
    return m.value("queue_jobs_retried_total") or 0.0, m.value("queue_jobs_dispatched_total") or 0.0


def check_10_p95(answer: Any) -> Feedback:
    """P95 of ``EXERCISE_10_BUCKETS`` by histogram_quantile's linear interpolation."""
    expected = round(histogram_quantile(0.95, EXERCISE_10_BUCKETS), 4)
    return _check(
        answer,
        expected,
        "rank = 0.95 * (the +Inf count); find the first bucket whose cumulative count reaches "
        "the rank, then interpolate linearly between that bucket's lower and upper bound.",
        same=_close(1e-3),
    )


def check_10_retry_ratio(answer: Any) -> Feedback:
    """Retries per dispatch over the whole virtual run (seed 42), from its final counters."""
    retries, dispatched = _lesson10_counters()
    expected = round(retries / dispatched, 4)
    return _check(
        answer,
        expected,
        "divide queue_jobs_retried_total (every cause) by queue_jobs_dispatched_total "
        "(run.metrics.value(...) reads one sample).",
        same=_close(5e-4),
    )


def check_10_label(answer: Any) -> Feedback:
    """Which label makes the ratio return no series when the by-cause counter is divided?"""
    return _check(
        answer,
        "cause",
        "one side of the division has a label the other lacks; look at the labels column of "
        "queue_jobs_retried_by_cause_total in the samples table.",
        same=lambda a, e: str(a).strip().strip("'\"").lower() == e,
    )


# == 13 JSON or binary =====================================================================
def _dispatch_record() -> Record:
    return Record(
        seq=7,
        type="DISPATCH",
        job_id="task-0001",
        timestamp_ms=1_704_103_200_000,
        attempt=1,
        worker_id=2,
        deadline_ms=1_704_103_203_000,
    )


def check_13_dispatch_bytes(answer: Any) -> Feedback:
    """Bytes of the binary frame of a DISPATCH for ``task-0001`` (worker 2, attempt 1)."""
    expected = len(encode_frame(_dispatch_record()))
    return _check(
        answer,
        expected,
        "the fixed header is HEADER_BYTES long; a DISPATCH adds only its job_id's UTF-8 bytes "
        "(no reason, no job).",
        same=_int_eq,
    )


def check_13_records_after_damaged_length(answer: Any) -> Feedback:
    """Records a naive reader (``resync=False``) returns when frame 6's length is damaged."""
    recs = sample_records()[:10]
    blob = bytearray(encode_frames(recs))
    sixth = len(encode_frames(recs[:5]))
    blob[sixth + 1] ^= 0x01  # a bit in the length field of frame 6
    expected = len(read_frames(bytes(blob), resync=False).records)
    return _check(
        answer,
        expected,
        "without resync the reader stops at the first damaged frame and calls the rest a torn "
        "tail: how many frames come before frame 6?",
        same=_int_eq,
    )


def check_13_size_ratio(answer: Any) -> Feedback:
    """JSON bytes over binary bytes for all of ``sample_records()``, to two decimals."""
    recs = sample_records()
    expected = round(sum(len(encode_record(r)) for r in recs) / len(encode_frames(recs)), 2)
    return _check(
        answer,
        expected,
        "read the json_over_binary column of the 'all' row of size_table(records).",
        same=_close(0.011),
    )
