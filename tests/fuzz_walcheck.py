"""A fuzz loop for the C record decoder, meant to run under AddressSanitizer (not collected
by pytest: ``tests/test_wal_c.py`` holds the differential tests it extends).

Each case is a little workload's WAL, damaged (flipped, inserted and deleted bytes, values
rewritten into odd JSON), often with every checksum recomputed so that only the field
checks can refuse a line; ``decode_records`` runs on it from a random offset, and
``read_wal`` must answer the same with and without the decoder (and the ENQUEUE ids the
decoder lists must be those of the ENQUEUEs it read).  To run it on a sanitized
build (a copy, so the worktree's .so stays the optimised one)::

    git archive HEAD | tar -x -C /tmp/asan && cd /tmp/asan
    CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer" \\
        LDFLAGS="-fsanitize=address,undefined" python setup.py build_ext --inplace
    LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" \\
        ASAN_OPTIONS=detect_leaks=0 PYTHONMALLOC=malloc PYTHONPATH=. \\
        python tests/fuzz_walcheck.py SEED CASES
"""

from __future__ import annotations

import random
import sys

import orjson

from phase1 import fuzz, wal
from phase1.core import QueueCore, Record
from phase1.jobs import PRIORITY_MAX, Job
from tests.test_wal_c import ODD_VALUES, both_ways, recheck


def written_log(rng: random.Random) -> bytes:
    core = QueueCore(max_retry=2, task_timeout_s=1.0)
    payloads = [None, {"a": 1}, [1, 2.5], 's"x', {"k": {"n": [True, None]}}, "é"]
    jobs = [
        Job(
            f"j{i}",
            rng.choice(payloads),
            priority=rng.randint(0, 10),
            scheduled_at=rng.choice([None, None, 1, 2.5]),
            depends_on=tuple(sorted({f"j{k}" for k in range(i) if rng.random() < 0.2})),
        )
        for i in range(rng.randint(1, 12))
    ]
    records = list(core.enqueue(jobs, 0.0).records)
    now = 0.0
    for _ in range(rng.randint(0, 15)):
        now += rng.choice([0.1, 0.6, 1.5])
        move = rng.random()
        if move < 0.4:
            records += core.dispatch(now, worker_id=rng.randint(-3, 3), limit=3).records
        elif move < 0.7:
            flying = sorted(core.in_flight().items())
            if flying:
                job_id, flight = rng.choice(flying)
                if rng.random() < 0.6:
                    records += core.ack(job_id, flight.attempt, now).records
                else:
                    reason = rng.choice(["x", "é", 'a"b', ""])
                    records += core.fail(job_id, flight.attempt, now, reason).records
        else:
            records += core.tick(now).records
    return wal.encode_records(records)


def damaged(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(0, 4)):
        k = rng.randrange(len(buf) + 1)
        how = rng.random()
        if how < 0.3 and buf:
            buf[min(k, len(buf) - 1)] = rng.randrange(256)
        elif how < 0.5:
            buf[k:k] = bytes([rng.randrange(256)])
        elif how < 0.6:
            del buf[k : k + rng.randint(1, 20)]
        else:
            lines = bytes(buf).split(b"\n")
            i = rng.randrange(len(lines))
            line = lines[i]
            keys = [q for q in range(len(line)) if line[q : q + 2] == b'":']
            if keys:
                at = rng.choice(keys) + 2
                end = at
                while end < len(line) and line[end : end + 1] not in (b",", b"}"):
                    end += 1
                lines[i] = recheck(line[:at] + rng.choice(ODD_VALUES) + line[end:])
            buf = bytearray(b"\n".join(lines))
    if rng.random() < 0.5:  # only the field checks may refuse a line
        buf = bytearray(b"\n".join(recheck(line) for line in bytes(buf).split(b"\n")))
    return bytes(buf)


def main(seed: int, cases: int) -> int:
    rng = random.Random(seed)
    for case in range(cases):
        data = damaged(rng, written_log(rng))
        out: list[object] = []
        start = rng.randint(0, len(data))
        prev = rng.choice([0, 0, 3])
        after = rng.randint(0, 5)
        ids: list[str] = []
        wal._c_decode(data, start, prev, after, out, Record, Job, orjson.loads, PRIORITY_MAX, ids)
        if ids != [r.job_id for r in out if r.type == "ENQUEUE"]:  # type: ignore[attr-defined]
            print(f"seed {seed} case {case}: ids {ids!r} are not the ENQUEUEs' of {out!r}")
            return 1
        rows = rng.random() < 0.5
        with_c, without = both_ways({fuzz.WAL: data}, rows=rows, after_seq=rng.randint(0, 4))
        if with_c != without:
            print(f"seed {seed} case {case}: the decoder disagrees on {data[:300]!r}")
            print(f"  with it:    {with_c!r}\n  without it: {without!r}")
            return 1
    print(f"seed {seed}: {cases} cases, the same answer with and without the decoder")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(int(sys.argv[1]), int(sys.argv[2])))
