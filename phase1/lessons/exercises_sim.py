"""Exercise checks for lessons 08 and 09: ``check_08_*`` and ``check_09_*``.

Same contract as ``phase1.lessons.exercises``: each check computes the right answer from
the real package (the SimPy harness and its experiments, run with the lesson's seed),
prints one line and returns it as ``Feedback``; an empty answer (``None``, ``...`` or blank
text) prints a hint and never raises, so the exercise cells run before anyone answers.
The simulations behind a check run only once an answer is given, and once per session.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from typing import Any

from phase1.lessons.exercises import Feedback, _check, _empty, _int_eq, _say, _set_eq, _word_in

__all__ = [
    "LESSON_SEED",
    "check_08_never_power_lost",
    "check_08_which_crash",
    "check_08_crashes_seed7",
    "check_09_safe_policies",
    "check_09_drain_at_60",
    "check_09_recovery_ratio",
]

#: The seed lessons 08 and 09 use (their ``SEED``).
LESSON_SEED = 42


def _lazy(
    answer: Any, expected: Callable[[], Any], hint: str, same: Callable[[Any, Any], bool]
) -> Feedback:
    """``_check`` that computes ``expected`` only once there is an answer to check."""
    if _empty(answer):
        return _say(f"not answered yet: replace ... with your answer. Hint: {hint}")
    return _check(answer, expected(), hint, same=same)


def _close(rel: float, abs_: float = 0.0) -> Callable[[Any, Any], bool]:
    def same(answer: Any, expected: Any) -> bool:
        if isinstance(answer, bool):
            return False
        return math.isclose(float(answer), float(expected), rel_tol=rel, abs_tol=abs_)

    return same


# == 08 simulating faults ====================================================================
@cache
def _never_power_lost() -> int:
    from phase1.lessons.simview import crash_kind_table
    from phase1.sim.scenarios import scenario

    table = crash_kind_table(scenario("steady", LESSON_SEED), LESSON_SEED, policies=("never",))
    row = table[(table["policy"] == "never") & (table["crash"] == "power")].iloc[0]
    return int(row["lost"])


def check_08_never_power_lost(answer: Any) -> Feedback:
    """The crash-kind table: acknowledged jobs a power loss cost under ``never``."""
    return _lazy(
        answer,
        _never_power_lost,
        "read the 'lost' column of the never / power row of the crash-kind table.",
        _int_eq,
    )


def check_08_which_crash(answer: Any) -> Feedback:
    """Under ``never``, which crash kind loses acknowledged jobs?"""
    return _check(
        answer,
        "power",
        "which one takes the page cache (the written but not fsynced bytes) with it?",
        same=_word_in("power", "power loss"),
    )


@cache
def _crashes_seed7() -> int:
    from phase1.sim.scenarios import run_scenario

    return int(run_scenario("crash-storm", 7).ledger["crashes"])


def check_08_crashes_seed7(answer: Any) -> Feedback:
    """``run_scenario("crash-storm", 7)``: how many crashes did seed 7 draw?"""
    return _lazy(
        answer,
        _crashes_seed7,
        "run run_scenario('crash-storm', 7) and read ledger['crashes'] (or its summary).",
        _int_eq,
    )


# == 09 recovery experiments =================================================================
#: The loss sweep's workload in lesson 09 (jobs per run).
LOSS_JOBS = 1_500


@cache
def _safe_policies() -> frozenset[str]:
    from phase1.sim.experiments import loss_point

    return frozenset(
        p
        for p in ("always", "batch", "never")
        if loss_point(p, seed=LESSON_SEED, jobs=LOSS_JOBS)["lost"] == 0
    )


def check_09_safe_policies(answer: Any) -> Feedback:
    """Which commit policies lost no acknowledged job under power loss?"""
    return _lazy(
        answer,
        _safe_policies,
        "a policy is safe when it fsyncs before it acknowledges (two of the three).",
        _set_eq,
    )


@cache
def _drain_at_60() -> float:
    from phase1.sim.experiments import drain_point

    return round(float(drain_point(0.6, downtime_s=0.5, seed=LESSON_SEED)["drain_after_up_s"]), 2)


def check_09_drain_at_60(answer: Any) -> Feedback:
    """``drain_point(0.6, downtime_s=0.5, seed=SEED)['drain_after_up_s']`` to 2 decimals."""
    return _lazy(
        answer,
        _drain_at_60,
        "run drain_point(0.6, downtime_s=0.5, seed=SEED) and read 'drain_after_up_s' "
        "(the formula 0.5 * u / (1 - u) predicts about 0.75 s).",
        _close(0.0, 0.011),
    )


@cache
def _recovery_ratio() -> float:
    from phase1.sim.experiments import recovery_point

    def cost(interval_s: float) -> float:
        point = recovery_point(interval_s, crash_at_s=2.0, seed=LESSON_SEED, rate_per_s=1000.0)
        return float(point["recovery_s"])

    return round(cost(4.0) / cost(0.1), 2)


def check_09_recovery_ratio(answer: Any) -> Feedback:
    """Crash at 2.0 s: recovery time with a 4 s snapshot interval / with a 0.1 s one."""
    return _lazy(
        answer,
        _recovery_ratio,
        "divide recovery_s at snapshot_interval_s=4.0 by recovery_s at 0.1 "
        "(crash_at_s=2.0, seed SEED) in the recovery table.",
        _close(0.02),
    )
