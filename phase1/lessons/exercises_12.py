"""Exercise checks for lesson 12 (the crash explorer): ``check_12_*``.

Same contract as ``phase1.lessons.exercises``: each check computes the right answer from
the real package (the explorer, its standard workload and its checks), prints one line and
returns it as ``Feedback``; an empty answer (``None``, ``...`` or blank text) prints a hint
and never raises, so the exercise cells run before anyone answers.  The explorations behind
a check run only once an answer is given, and once per session.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import cache
from typing import Any

from phase1.crashcheck import (
    STANDARD_CONFIG,
    CrashState,
    check_disk,
    crash_states,
    explore_variant,
    run_workload,
)
from phase1.lessons.exercises import Feedback, _check, _empty, _int_eq, _say
from phase1.protocol import VARIANTS, protocol_named

__all__ = [
    "LESSON_SEED",
    "EXERCISE_12_AFTER_OPS",
    "SAME_FOLDER_CONFIG",
    "check_12_states_after_op",
    "check_12_process_crash_variant",
    "check_12_same_folder_lost",
]

#: The seed lesson 12 uses (its ``SEED``).
LESSON_SEED = 42
#: Exercise 12.1's crash point: after op #7 of the standard workload (two unsynced appends).
EXERCISE_12_AFTER_OPS = 8
#: Exercise 12.3: the standard configuration with the snapshots in the WAL's own folder.
SAME_FOLDER_CONFIG = STANDARD_CONFIG.replace(snapshot_path="data/wal/snapshot.json")


def _lazy(
    answer: Any, expected: Callable[[], Any], hint: str, same: Callable[[Any, Any], bool]
) -> Feedback:
    """``_check`` that computes ``expected`` only once there is an answer to check."""
    if _empty(answer):
        return _say(f"not answered yet: replace ... with your answer. Hint: {hint}")
    return _check(answer, expected(), hint, same=same)


def _name_eq(answer: Any, expected: Any) -> bool:
    return bool(str(answer).strip().lower().replace("_", "-").replace(" ", "-") == expected)


# == 12.1 counting crash states ==============================================================
@cache
def _states_after_op() -> int:
    trace = run_workload()
    rng = random.Random(LESSON_SEED)  # unused: nothing is sampled
    _, total = crash_states(trace, EXERCISE_12_AFTER_OPS, max_states=None, rng=rng)
    return total


def check_12_states_after_op(answer: Any) -> Feedback:
    """How many crash states the explorer enumerates after op #7 (two unsynced appends)."""
    return _lazy(
        answer,
        _states_after_op,
        "1 process crash; for power loss keep 0, 1 or 2 appends, or tear the last kept one "
        "at any byte (0..size-1), once cut and once zero-filled.",
        _int_eq,
    )


# == 12.2 which bug needs no power loss ======================================================
@cache
def _process_crash_variants() -> frozenset[str]:
    """The variants that lose an acknowledged fact or fail to recover after a process
    crash alone (the OS survives: every byte and name it holds stays)."""
    found = set()
    for name in VARIANTS:
        trace = run_workload(protocol_named(name))
        for n in range(len(trace.states)):
            cs = CrashState(n, "process")
            verdict = check_disk(cs.disk(trace), trace.config)
            acked = trace.acked_by(n)
            if verdict.problems or verdict.facts is None or not acked <= verdict.facts:
                found.add(name)
                break
    return frozenset(found)


def _only_variant() -> str:
    found = _process_crash_variants()
    if len(found) != 1:
        raise AssertionError(f"expected exactly one variant to fail on a process crash: {found}")
    return next(iter(found))


def check_12_process_crash_variant(answer: Any) -> Feedback:
    """The one broken variant that loses data even when only the process crashes."""
    return _lazy(
        answer,
        _only_variant,
        "a process crash keeps every byte the OS holds, fsynced or not; which variant "
        "deletes something the recovery needs before its replacement exists?",
        _name_eq,
    )


# == 12.3 a bug that hides ===================================================================
@cache
def _same_folder_lost() -> int:
    result = explore_variant(
        "rename-without-dir-fsync", seed=LESSON_SEED, max_states=None, config=SAME_FOLDER_CONFIG
    )
    return result.violations["lost"]


def check_12_same_folder_lost(answer: Any) -> Feedback:
    """``lost`` violations of ``rename-without-dir-fsync`` with the snapshots in the WAL folder."""
    return _lazy(
        answer,
        _same_folder_lost,
        "run explore_variant('rename-without-dir-fsync', seed=SEED, max_states=None, "
        "config=SAME_FOLDER_CONFIG) and read .violations['lost']; which fsync_dir now covers "
        "the snapshot's rename?",
        _int_eq,
    )
