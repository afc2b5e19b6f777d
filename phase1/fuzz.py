"""Corruption fuzzing: damage WAL and snapshot files the real writer wrote, then read them back.

Owns: a deterministic corpus (``base_corpus``: a WAL written by ``WalWriter`` with every
record type, in one segment or split into a closed and an active segment, and snapshots
written by ``write_snapshot``), the corruption operators (``MUTATIONS``: bit flips,
truncations, duplicated / swapped / deleted lines, garbage, empty and huge lines, invalid
UTF-8, NUL tails, valid JSON with wrong types and seq going backwards, re-checksummed so
they get past the CRC), the oracle (``check_wal_case`` / ``check_snapshot_case``) and the
runner (``run_cases``; ``python -m phase1.fuzz --cases N``, ``make fuzz CASES=N``).

Must not know: the real file system (every case runs on a fresh ``SimDisk``), threads.
Deterministic: case ``i`` of seed ``s`` draws from ``random.Random(f"{s}:{i}")`` only.

The oracle (what recovery promises about damaged files, DESIGN.md):

* ``read_wal`` either succeeds -- every record before the damaged line comes back intact
  and, unless the damage left only whole valid lines (a cut at a line boundary), the
  damage is reported as a torn tail at or after the damaged line -- or raises
  ``WalCorruptionError`` naming an existing segment, a line >= 1 and an offset inside it,
  not before the damage.  ``recover`` on the same files raises only ``WalCorruptionError``
  / ``SnapshotError`` or keeps every record before the damage.
* ``load_snapshot`` either returns exactly the state that was written (the damaged copy
  skipped and reported, an intact older copy used) or raises ``SnapshotError`` naming
  the file.
* Nothing else is raised, and no case takes longer than ``CASE_BUDGET_S``.

A case that breaks the oracle is a *finding*: its seed, case number and the damaged bytes
are printed so ``tests/test_fuzz_regressions.py`` can keep it.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import orjson

from phase1.config import Config
from phase1.core import QueueCore, Record
from phase1.errors import SnapshotError, WalCorruptionError
from phase1.jobs import Job
from phase1.recovery import recover
from phase1.sim.disk import SimDisk
from phase1.snapshot import CHECKSUM_MARKER, decode_snapshot, load_snapshot, write_snapshot
from phase1.wal import WalWriter, data_end, encode_records, read_wal, segment_path

__all__ = [
    "CASE_BUDGET_S",
    "MUTATIONS",
    "Corpus",
    "Case",
    "FuzzReport",
    "base_corpus",
    "make_case",
    "check_case",
    "check_wal_files",
    "check_snapshot_files",
    "run_cases",
    "main",
]

CASE_BUDGET_S = 2.0  # a case slower than this is a finding ("slow": a hang in the making)
WAL = "data/wal.log"
SNAP = "data/snapshot.json"
_TRAILER = b',"checksum":'
_CONFIG = Config().replace(wal_path=WAL, snapshot_path=SNAP, max_retry=3, snapshots_kept=2)


# == the corpus ===========================================================================
@dataclass(frozen=True)
class Corpus:
    """Files the real writer produced: the WAL as one segment or as closed + active, and
    two snapshots (``older`` at ``path.1``, ``newer`` at ``path``)."""

    records: tuple[Record, ...]
    single: dict[str, bytes]  # {WAL: every record}
    split: dict[str, bytes]  # {closed segment: records 1..k, WAL: the rest}
    snapshot_newer: bytes
    snapshot_older: bytes


def _workload(core: QueueCore) -> Iterator[tuple[Record, ...]]:
    jobs = [
        Job("a", {"kind": "fibonacci", "n": 20}),
        Job("b", "héllo ✓", priority=7),
        Job("c", None, scheduled_at=5.0),
        Job("d", [1, 2, 3], depends_on=("a",)),
    ]
    yield core.enqueue(jobs, 0.0).records
    yield core.dispatch(1.0, worker_id=1, limit=2).records
    yield core.ack("b", 1, 1.5).records
    yield core.fail("a", 1, 2.0, reason='boom "quoted"').records
    yield core.dispatch(2.5, worker_id=2).records
    yield core.tick(10.0).records
    yield core.dispatch(10.0, worker_id=3, limit=3).records
    yield core.ack("a", 3, 10.5).records
    yield core.enqueue([Job("e", {"deep": {"x": [None, True, 1.5]}})], 11.0).records
    yield core.cancel("e", 11.5, "no longer wanted").records


@cache
def base_corpus() -> Corpus:
    """The corpus, built once per process with the real ``WalWriter`` / ``write_snapshot``."""
    core = QueueCore(max_retry=3, task_timeout_s=3.0)
    disk = SimDisk()
    writer = WalWriter(disk, WAL, next_seq=1, policy="always")
    records: list[Record] = []
    older = b""
    for i, recs in enumerate(_workload(core)):
        if recs:
            writer.append(recs)
            records.extend(recs)
        if i == 3:
            write_snapshot(disk, SNAP, core.export(), keep=2)
            older = disk.read(SNAP)
    write_snapshot(disk, SNAP, core.export(), keep=2)
    single = {WAL: disk.read(WAL)}
    cut = len(records) // 2
    head = encode_records(records[:cut])
    split = {segment_path(WAL, records[cut - 1].seq): head, WAL: single[WAL][len(head) :]}
    return Corpus(tuple(records), single, split, disk.read(SNAP), older)


# == mutations ============================================================================
def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def _line_at(lines: list[bytes], rng: random.Random) -> int:
    return rng.randrange(len(lines)) if lines else 0


def _rechecksum(obj: Any, trailer: bytes = _TRAILER) -> bytes:
    """``obj`` as a line whose checksum is right, so only the content can be wrong."""
    # the stdlib encoder: orjson refuses integers beyond 64 bits, which we want to write
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()[:-1]
    return body + trailer + str(zlib.crc32(body)).encode() + b"}\n"


def _bitflip(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        if buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    return bytes(buf)


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def _truncate_at_line(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    return b"".join(lines[: rng.randrange(len(lines) + 1)])


def _duplicate_line(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    i = _line_at(lines, rng)
    return b"".join(lines[: i + 1] + lines[i:])


def _swap_lines(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    if len(lines) < 2:
        return data[::-1]
    i, j = sorted(rng.sample(range(len(lines)), 2))
    lines[i], lines[j] = lines[j], lines[i]
    if not lines[-1].endswith(b"\n"):  # keep the result a sequence of lines
        lines[-1] += b"\n"
    return b"".join(lines)


def _delete_line(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    i = _line_at(lines, rng)
    return b"".join(lines[:i] + lines[i + 1 :])


def _insert(data: bytes, rng: random.Random, new: bytes) -> bytes:
    lines = _lines(data)
    i = rng.randrange(len(lines) + 1)
    return b"".join(lines[:i] + [new] + lines[i:])


def _garbage_line(data: bytes, rng: random.Random) -> bytes:
    junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 80))).replace(b"\n", b"")
    return _insert(data, rng, junk + b"\n")


def _empty_line(data: bytes, rng: random.Random) -> bytes:
    return _insert(data, rng, b"\n")


def _huge_line(data: bytes, rng: random.Random) -> bytes:
    size = rng.choice((4096, 65536, 1 << 20))
    kind = rng.randrange(3)
    if kind == 0:
        line = b'{"seq":' + b"9" * size + b"}\n"
    elif kind == 1:
        line = b'{"seq":1,"job_id":"' + b"x" * size + b'"}\n'
    else:
        line = b"[" * size + b"\n"  # deep nesting
    return _insert(data, rng, line)


def _invalid_utf8(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    if not lines:
        return b"\xff\xfe\n"
    i = _line_at(lines, rng)
    line = lines[i].rstrip(b"\n")
    at = rng.randrange(len(line) + 1)
    bad = rng.choice((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"))
    damaged = line[:at] + bad + line[at:]
    if rng.random() < 0.5 and _TRAILER in damaged:  # get past the CRC too
        body = damaged[: damaged.rfind(_TRAILER)]
        damaged = body + _TRAILER + str(zlib.crc32(body)).encode() + b"}"
    lines[i] = damaged + b"\n"
    return b"".join(lines)


def _zero_tail(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(data) + 1)
    return data[:at] + bytes(len(data) - at)


_WRONG_VALUES: tuple[Any, ...] = ("1", 1.5, -1, None, [], {}, True, "", "ü", 2**70)
_FREE = frozenset({"payload"})  # any JSON is a valid payload: changing it forges a record
_NULLABLE = frozenset({"scheduled_at"})  # null is a legal job.scheduled_at ("now")


def _json_type(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _wrong_for(value: Any, rng: random.Random, key: str = "") -> Any:
    """A value of another JSON type than ``value`` (or an integer orjson cannot hold)."""
    kind = _json_type(value)
    options = [v for v in _WRONG_VALUES if _json_type(v) != kind]
    if key in _NULLABLE and None in options:
        options.remove(None)
    if type(value) is int:
        options.append(2**70)
    return rng.choice(options)


def _wrong_type(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    if not lines:
        return data
    i = _line_at(lines, rng)
    try:
        obj = orjson.loads(lines[i])
    except orjson.JSONDecodeError:
        return _bitflip(data, rng)
    if not isinstance(obj, dict) or not obj:
        return _bitflip(data, rng)
    obj.pop("checksum", None)
    keys = sorted(obj)
    if rng.random() < 0.15:
        obj["extra"] = 1
    else:
        key = rng.choice(keys)
        value = obj[key]
        inner_keys = sorted(set(value) - _FREE) if isinstance(value, dict) else []
        if inner_keys and rng.random() < 0.5:
            inner = rng.choice(inner_keys)
            value[inner] = _wrong_for(value[inner], rng, inner)
        else:
            obj[key] = _wrong_for(value, rng, key)
    lines[i] = _rechecksum(obj)
    return b"".join(lines)


def _seq_backwards(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    if len(lines) < 2:
        return _wrong_type(data, rng)
    i = rng.randrange(1, len(lines))
    try:
        obj = orjson.loads(lines[i])
    except orjson.JSONDecodeError:
        return _bitflip(data, rng)
    if not isinstance(obj, dict) or type(obj.get("seq")) is not int:
        return _bitflip(data, rng)
    obj.pop("checksum", None)
    obj["seq"] = max(1, obj["seq"] - rng.randint(1, i + 1))
    lines[i] = _rechecksum(obj)
    return b"".join(lines)


Mutation = Callable[[bytes, random.Random], bytes]
MUTATIONS: dict[str, Mutation] = {
    "bitflip": _bitflip,
    "truncate": _truncate,
    "truncate-at-line": _truncate_at_line,
    "duplicate-line": _duplicate_line,
    "swap-lines": _swap_lines,
    "delete-line": _delete_line,
    "garbage-line": _garbage_line,
    "empty-line": _empty_line,
    "huge-line": _huge_line,
    "invalid-utf8": _invalid_utf8,
    "zero-tail": _zero_tail,
    "wrong-type": _wrong_type,
    "seq-backwards": _seq_backwards,
}
_SNAPSHOT_MUTATIONS = [m for m in MUTATIONS if m != "seq-backwards"]


# == cases ================================================================================
@dataclass(frozen=True)
class Case:
    """One damaged set of files: ``target`` is ``"wal"`` or ``"snapshot"``; ``files`` the
    damaged ones; ``original`` the same files before the damage; ``path`` what changed."""

    seed: int
    index: int
    target: str
    mutation: str
    path: str
    files: dict[str, bytes]
    original: dict[str, bytes]

    def label(self) -> str:
        return f"seed {self.seed} case {self.index}: {self.target} {self.mutation} on {self.path}"


def make_case(seed: int, index: int, *, target: str = "all") -> Case:
    """Case ``index`` of ``seed``: deterministic whatever else ran before."""
    rng = random.Random(f"{seed}:{index}")
    corpus = base_corpus()
    if target == "all":
        target = "wal" if rng.random() < 0.7 else "snapshot"
    if target == "wal":
        original = dict(corpus.single if rng.random() < 0.5 else corpus.split)
        path = rng.choice(sorted(original))
        mutation = rng.choice(sorted(MUTATIONS))
    else:
        original = {SNAP: corpus.snapshot_newer}
        if rng.random() < 0.5:
            original[SNAP + ".1"] = corpus.snapshot_older
        path = SNAP if rng.random() < 0.8 else rng.choice(sorted(original))
        mutation = rng.choice(_SNAPSHOT_MUTATIONS)
    files = dict(original)
    op = MUTATIONS[mutation]
    if target == "snapshot" and mutation == "wrong-type":
        files[path] = _wrong_type_snapshot(files[path], rng)
    else:
        files[path] = op(files[path], rng)
    return Case(seed, index, target, mutation, path, files, original)


def _wrong_type_snapshot(data: bytes, rng: random.Random) -> bytes:
    obj = orjson.loads(data)
    obj.pop("checksum", None)
    key = rng.choice(sorted(obj))
    value = obj[key]
    if isinstance(value, list) and value and rng.random() < 0.6:
        i = rng.randrange(len(value))
        value[i] = _wrong_for(value[i], rng)
    elif isinstance(value, dict) and value and rng.random() < 0.6:
        inner = rng.choice(sorted(value))
        value[inner] = _wrong_for(value[inner], rng, inner)
    elif key == "schema_version" and rng.random() < 0.3:
        obj[key] = 99  # a newer writer: refused, never guessed at
    else:
        obj[key] = _wrong_for(value, rng)
    return _rechecksum(obj, CHECKSUM_MARKER)


# == the oracle ===========================================================================
class Finding(AssertionError):
    """The oracle failed: a crash (undocumented exception), a dropped record, a slow case."""


def _disk(files: dict[str, bytes]) -> SimDisk:
    disk = SimDisk()
    disk.makedirs("data")
    for path, data in sorted(files.items()):
        disk.write(path, data)
    return disk


def _ordered(files: dict[str, bytes]) -> list[str]:
    closed = sorted(p for p in files if p != WAL)
    return closed + ([WAL] if WAL in files else [])


def _damage_at(original: bytes, damaged: bytes) -> int:
    """Start of the line holding the first byte that differs (len if none differs)."""
    n = min(len(original), len(damaged))
    i = 0
    while i < n and original[i] == damaged[i]:
        i += 1
    if i == len(original) == len(damaged):
        return i
    return original.rfind(b"\n", 0, i) + 1


def check_wal_files(original: dict[str, bytes], files: dict[str, bytes], changed: str) -> str:
    """Read the damaged WAL segments ``files`` and check the oracle; return the outcome
    kind (``intact``, ``torn``, ``cut-at-line``, ``corruption``) or raise ``Finding``."""
    order = _ordered(files)
    damage = _damage_at(original[changed], files[changed])
    before = b"".join(original[p] for p in order[: order.index(changed)])
    intact = before + original[changed][:damage]  # bytes every success must return
    disk = _disk(files)
    try:
        read = read_wal(disk, WAL)
    except WalCorruptionError as exc:
        if exc.path not in files or exc.line < 1 or not 0 <= exc.offset <= len(files[exc.path]):
            raise Finding(f"WalCorruptionError with a bad location: {exc!r}") from exc
        where = (order.index(exc.path), exc.offset)
        if where < (order.index(changed), damage):
            raise Finding(
                f"corruption reported before the damage ({changed}@{damage}): {exc}"
            ) from exc
        _check_recover(files, None)
        return "corruption"
    got = encode_records(read.records)
    if not got.startswith(intact):
        raise Finding(
            f"read_wal returned {len(read.records)} records that do not start with every "
            f"record before the damage at {changed}@{damage} (a silent drop)"
        )
    if read.torn is None:
        # the active segment's trailing blank lines are padding (preallocation), not records
        everything = b"".join(
            files[p][: data_end(files[p])] if p == WAL else files[p] for p in order
        )
        if got != everything:
            raise Finding("read_wal succeeded without a torn tail but did not return every byte")
        leading_cut = bool(read.records) and read.records[0].seq > 1
        if files != original and changed != order[-1] and not leading_cut:
            raise Finding(
                f"{changed} is a closed segment (never torn by a crash) yet its damage went "
                f"unreported: read_wal returned {len(read.records)} records, no error"
            )
        outcome = "intact" if files == original else "cut-at-line"
    else:
        torn = read.torn
        if torn.path != order[-1]:
            raise Finding(f"torn tail reported in {torn.path}, not the last segment")
        kept = b"".join(files[p] for p in order[:-1]) + files[torn.path][: torn.offset]
        if got != kept:
            raise Finding("the records returned are not exactly the bytes before the torn tail")
        outcome = "torn"
    forged = not b"".join(original[p] for p in _ordered(original)).startswith(got)
    _check_recover(files, read.records, forged=forged)
    return outcome


def _check_recover(
    files: dict[str, bytes], records: list[Record] | None, *, forged: bool = False
) -> None:
    """``recover`` (no snapshot) must refuse what ``read_wal`` refused, and otherwise
    replay exactly the records ``read_wal`` returned (or refuse a log not starting at 1).

    ``forged``: the records read are not the ones written, yet every checksum is right
    (mutations that re-checksum, composed: swap two lines, renumber them).  No per-record
    checksum can see that; replay refusing with ``WalCorruptionError`` is then correct.
    """
    disk = _disk(files)
    try:
        core, report = recover(disk, _CONFIG, check=True)
    except WalCorruptionError:
        if forged or records is None or (records and records[0].seq != 1):
            return
        raise Finding("recover refused a WAL that read_wal accepted from seq 1") from None
    if records is None:
        raise Finding("recover accepted a WAL that read_wal refused")
    last = records[-1].seq if records else 0
    if report.wal_last_seq != last:
        raise Finding(f"recover replayed to seq {report.wal_last_seq}, read_wal to {last}")
    core.check()


def check_snapshot_files(original: dict[str, bytes], files: dict[str, bytes]) -> str:
    """Load the damaged snapshot copies; return ``intact``, ``fallback`` or ``refused``."""
    disk = _disk(files)
    try:
        loaded = load_snapshot(disk, SNAP, keep=2)
    except SnapshotError as exc:
        if exc.path not in files and exc.path != SNAP:
            raise Finding(f"SnapshotError without the file: {exc!r}") from exc
        return "refused"
    if loaded.state is None or loaded.used_path is None:
        raise Finding("load_snapshot found no snapshot although files exist")
    want = decode_snapshot(original[loaded.used_path], path=loaded.used_path)
    if loaded.state != want:
        raise Finding(f"{loaded.used_path} loaded a state that differs from what was written")
    if files[loaded.used_path] != original[loaded.used_path]:
        # bytes changed yet it decoded: only a change decoding can't see is allowed
        return "intact"
    if loaded.used_path != SNAP:
        if not loaded.damaged:
            raise Finding("fell back to an older snapshot without reporting the damaged one")
        return "fallback"
    return "intact"


def check_case(case: Case) -> str:
    """Run ``case`` through the oracle; return its outcome kind or raise ``Finding``."""
    started = time.perf_counter()
    try:
        if case.target == "wal":
            outcome = check_wal_files(case.original, case.files, case.path)
        else:
            outcome = check_snapshot_files(case.original, case.files)
    except Finding:
        raise
    except Exception as exc:  # noqa: BLE001 - an undocumented exception is the finding
        raise Finding(f"{case.label()}: {type(exc).__name__}: {exc}") from exc
    elapsed = time.perf_counter() - started
    if elapsed > CASE_BUDGET_S:
        raise Finding(f"{case.label()}: took {elapsed:.1f} s (budget {CASE_BUDGET_S} s)")
    return f"{case.target}:{outcome}"


# == the runner ===========================================================================
@dataclass
class FuzzReport:
    seed: int
    cases: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    mutations: Counter[str] = field(default_factory=Counter)
    findings: list[tuple[Case, str]] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [
            f"fuzz: {self.cases:,} cases, seed {self.seed}, {self.seconds:.1f} s "
            f"({self.cases / max(self.seconds, 1e-9):,.0f} cases/s)",
            "outcomes: " + ", ".join(f"{k} {v:,}" for k, v in sorted(self.outcomes.items())),
            "mutations: " + ", ".join(f"{k} {v:,}" for k, v in sorted(self.mutations.items())),
            f"findings: {len(self.findings)}",
        ]
        for case, why in self.findings[:20]:
            out.append(f"  FINDING {case.label()}: {why}")
            out.append(
                f"    reproduce: python -m phase1.fuzz --seed {case.seed} --only {case.index}"
            )
        return out


def run_cases(
    cases: int,
    *,
    seed: int = 0,
    start: int = 0,
    target: str = "all",
    progress: bool = False,
) -> FuzzReport:
    """Run cases ``start .. start + cases - 1`` of ``seed``; findings are collected."""
    report = FuzzReport(seed)
    started = time.perf_counter()
    indices: Any = range(start, start + cases)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, unit="case", file=sys.stderr, leave=False)
    for index in indices:
        case = make_case(seed, index, target=target)
        report.cases += 1
        report.mutations[case.mutation] += 1
        try:
            report.outcomes[check_case(case)] += 1
        except Finding as exc:
            report.outcomes["FINDING"] += 1
            report.findings.append((case, str(exc)))
    report.seconds = time.perf_counter() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m phase1.fuzz",
        description=(
            "Damage WAL and snapshot files written by the real writer (seeded) and check "
            "that recovery keeps every record before the damage or refuses with file and "
            "offset. Exit 1 if any case breaks that promise."
        ),
        epilog="example: make fuzz CASES=100000   (or: python -m phase1.fuzz --cases 100000)",
    )
    parser.add_argument("--cases", type=int, default=10_000, help="cases to run (10000)")
    parser.add_argument("--seed", type=int, default=0, help="seed (0)")
    parser.add_argument("--start", type=int, default=0, help="first case number (0)")
    parser.add_argument("--target", choices=("all", "wal", "snapshot"), default="all")
    parser.add_argument("--only", type=int, metavar="I", help="run case I alone, verbosely")
    args = parser.parse_args(argv)
    if args.only is not None:
        case = make_case(args.seed, args.only, target=args.target)
        print(case.label())
        print(f"damaged {case.path}: {case.files[case.path][:400]!r}")
        try:
            print("outcome:", check_case(case))
        except Finding as exc:
            print(f"FINDING: {exc}")
            return 1
        return 0
    report = run_cases(
        args.cases,
        seed=args.seed,
        start=args.start,
        target=args.target,
        progress=sys.stderr.isatty(),
    )
    print("\n".join(report.lines()))
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
