"""A fuzz loop for the C record encoder, meant to run under AddressSanitizer (not collected
by pytest: ``tests/test_wal_encode_c.py`` holds the differential tests it extends).

Each case is a list of records, most of them valid, some with fields swapped for odd or
hostile values (huge ints, subclasses, floats, strings needing escapes or refused by
orjson, payloads of every kind and depth, wrong shapes); ``wal.encode_records`` (the C
encoder) must give the same bytes or the same exception as ``wal._encode_records_py``.
Built and run as ``tests/fuzz_walcheck.py`` says (a sanitized copy of the tree)::

    LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" \\
        ASAN_OPTIONS=detect_leaks=0 PYTHONMALLOC=malloc PYTHONPATH=. \\
        python tests/fuzz_walencode.py SEED CASES
"""

from __future__ import annotations

import random
import sys
from typing import Any

from phase1 import wal
from phase1.core import RECORD_TYPES, Record
from phase1.jobs import Job

T0 = 1_704_103_200_000
ISO_MIN = -62_135_596_800_000
ISO_MAX = 253_402_300_799_999


class Str(str):
    pass


class Int(int):
    pass


TEXTS = ["", "a", "task-0001", 'q"', "b\\s", "\x00", "\x1f", "\x7f", "é", "\u2028", "\U0001f600",
         "\ud800", "n\nl", Str("sub")]  # fmt: skip
INTS = [0, 1, -1, 7, (1 << 63) - 1, 1 << 63, -(1 << 63), -(1 << 63) - 1, (1 << 64) - 1, 1 << 64,
        1 << 90, Int(2), True, False]  # fmt: skip
ODD: list[Any] = [None, 1.5, float("nan"), b"x", (), [], object(), 1j]


def value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 and roll < 0.02:
        return nested(rng.choice([30, 33, 60, 254, 255, 400]))
    if roll < 0.5 or depth > 5:
        return rng.choice(TEXTS + INTS + ODD + [2.5, -0.0, float("inf")])
    if roll < 0.75:
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if roll < 0.97:
        keys = [rng.choice(TEXTS + ["k", "index", "value"]) for _ in range(rng.randint(0, 4))]
        return {k: value(rng, depth + 1) for k in keys}
    return {rng.choice([1, None, (1,)]): 1}


def nested(depth: int) -> Any:
    v: Any = 1
    for i in range(depth):
        v = [v] if i % 2 else {"k": v}
    return v


def pick(rng: random.Random, good: Any, pool: list[Any]) -> Any:
    return good if rng.random() < 0.85 else rng.choice(pool)


def record(rng: random.Random, seq: int) -> Any:
    rtype = pick(rng, rng.choice(RECORD_TYPES), TEXTS + ["BOGUS", Str("ACK")] + ODD)
    job_id = pick(rng, f"j{rng.randint(0, 50)}", TEXTS + INTS + ODD)
    stamp = pick(
        rng,
        rng.choice([T0 + rng.randint(-5000, 5000), rng.randint(ISO_MIN, ISO_MAX)]),
        [ISO_MIN, ISO_MIN - 1, ISO_MAX, ISO_MAX + 1, -1, 1 << 70] + INTS + ODD,
    )
    job = None
    if rtype == "ENQUEUE" or rng.random() < 0.05:
        job = Job(
            pick(rng, job_id, TEXTS + ODD),
            value(rng),
            pick(rng, 0, INTS + ODD),
            pick(rng, "pending", TEXTS + ODD),
            pick(rng, rng.randint(0, 10), INTS + ODD),
            pick(rng, None, [1.5, 2, float("nan")] + ODD),
            pick(rng, (), [("a",), ["a"], ("a", "b"), None, "x"]),
        )
        if rng.random() < 0.05:
            job = tuple(job)  # type: ignore[assignment]
    plain = rtype == "ENQUEUE" and rng.random() < 0.7
    rec = Record(
        pick(rng, seq, INTS + ODD),
        rtype,
        job_id,
        stamp,
        0 if plain else pick(rng, rng.randint(0, 4), INTS + ODD),
        None if plain else pick(rng, rng.choice([None, rng.randint(0, 8)]), INTS + ODD),
        None if plain else pick(rng, rng.choice([None, T0]), INTS + ODD),
        None if plain else pick(rng, rng.choice([None, "boom"]), TEXTS + ODD),
        job,
    )
    roll = rng.random()
    if roll < 0.02:
        return tuple(rec)
    if roll < 0.03:
        return tuple(rec)[: rng.randint(0, 8)]
    if roll < 0.035:
        return rng.choice(ODD)
    return rec


def outcome(fn: Any, recs: list[Any]) -> tuple[Any, ...]:
    try:
        return ("ok", fn(recs))
    except Exception as exc:  # noqa: BLE001  # the comparison is the point
        return ("raised", type(exc), str(exc))


def main(seed: int, cases: int) -> int:
    assert wal._c_encode is not None, "phase1._walcheck is not built"
    rng = random.Random(seed)
    for case in range(cases):
        recs = [record(rng, i + 1) for i in range(rng.randint(0, 8))]
        with_c = outcome(wal.encode_records, recs)
        py = outcome(wal._encode_records_py, recs)
        if with_c != py:
            print(f"case {case}: {recs!r}\n  C:  {with_c!r}\n  py: {py!r}")
            return 1
    print(f"{cases} cases, seed {seed}: the same")
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))
