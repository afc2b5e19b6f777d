"""Exercise checks for lessons 07 and 11: ``check_07_*`` and ``check_11_*``.

Same contract as ``phase1.lessons.exercises``: each check computes the right answer from
the real package (the lesson helpers drive it), prints one line and returns it as
``Feedback``; an empty answer (``None`` or ``...``) prints a hint and never raises.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

from phase1.jobs import Job
from phase1.lessons.exercises import Feedback, _check, _int_eq, _word_in

__all__ = [
    "check_07_lost_update",
    "check_07_rlock",
    "check_07_thread_count",
    "check_11_first_dispatched",
    "check_11_waves",
    "check_11_cascade",
]


# == 07 controller and workers ==============================================================
def check_07_lost_update(answer: Any) -> Feedback:
    """The unlocked race stepper: the counter's value after both increments?"""
    from phase1.lessons.threads import race_stepper

    stepper = race_stepper()
    stepper.run_all()
    return _check(
        answer,
        stepper.world.value,
        "both threads read before either wrote; what does the second write store?",
        same=_int_eq,
    )


@cache
def _rlock_outcome() -> str:
    from phase1.lessons.threads import DeadlockDemo, run_with_timeout

    demo = DeadlockDemo()
    demo.lock = threading.RLock()  # type: ignore[assignment]
    return run_with_timeout(demo.dispatch_buggy)


def check_07_rlock(answer: Any) -> Feedback:
    """``dispatch_buggy`` with ``threading.RLock`` instead of ``Lock``: 'ok' or 'deadlock'?"""
    expected = "ok" if _rlock_outcome() == "ok" else "deadlock"
    accepted = (
        ("ok", "works", "no deadlock") if expected == "ok" else ("deadlock", "would deadlock")
    )
    return _check(
        answer,
        expected,
        "a reentrant lock counts how often its owner took it (try it: demo.lock = threading.RLock()).",
        same=_word_in(*accepted),
    )


@cache
def _threads_with_4_workers() -> int:
    from phase1.lessons.threads import controller_leak_check
    from phase1.lessons.views import temp_config

    facts = controller_leak_check(temp_config(worker_count=4), [Job("x", {"kind": "noop"})])
    return len(facts["threads_running"])


def check_07_thread_count(answer: Any) -> Feedback:
    """How many threads does a running ``Controller`` with ``worker_count=4`` have?"""
    return _check(
        answer,
        _threads_with_4_workers(),
        "one per worker, plus the controller's own loops (count the roles thread_roles lists).",
        same=_int_eq,
    )


# == 11 priorities, delays, dependencies ====================================================
def check_11_first_dispatched(answer: Any) -> Feedback:
    """``dispatch_table(priority_jobs(8, seed=7))``: which job is dispatched first?"""
    from phase1.lessons.challenges import dispatch_table, priority_jobs

    expected = str(dispatch_table(priority_jobs(8, seed=7))["job_id"].iloc[0])
    return _check(
        answer,
        expected,
        "the highest priority wins; among equal priorities, the one enqueued first.",
        same=lambda a, e: str(a).strip() == e,
    )


def check_11_waves(answer: Any) -> Feedback:
    """Waves needed for ``PIPELINE`` if ``thumbnail`` also depends on ``index``?"""
    from phase1.lessons.challenges import PIPELINE, waves_table

    jobs = [
        j._replace(depends_on=("parse", "index")) if j.id == "thumbnail" else j for j in PIPELINE
    ]
    return _check(
        answer,
        len(waves_table(jobs)[0]),
        "a wave runs everything whose dependencies are complete; count the longest chain.",
        same=_int_eq,
    )


def check_11_cascade(answer: Any) -> Feedback:
    """If ``publish`` (not ``parse``) fails every attempt, how many jobs end up dead?"""
    from phase1.lessons.challenges import cascade_table

    return _check(
        answer,
        len(cascade_table(fail="publish")),
        "the failed job itself, plus every job that (directly or not) depends on it.",
        same=_int_eq,
    )
