"""The crash explorer: every crash state of a small workload, checked against the real recovery.

Owns: the standard workload (``run_workload``: the real ``QueueCore``, ``WalWriter``,
``write_snapshot`` and ``drop_segments_upto`` on a ``SimDisk``, sequenced as
``phase1.runtime.durable`` does: command -> append -> wait durable -> tell the client),
the enumeration of crash states (``crash_states``), the checks run on each one
(``check_disk``) and ``explore``, which does it for the correct protocol and each broken
variant of ``phase1.protocol`` and returns plain dataclasses (``ExploreResult``).
``phase1.lessons.crash`` turns them into a DataFrame and plots.

Must not know: pandas, matplotlib, threads, the real file system.  Deterministic: the only
randomness is a ``random.Random(seed)`` that samples crash states when a crash point has
more than ``max_states`` of them (the count explored and possible is always reported).

How (after ALICE, OSDI '14, and CrashMonkey): the workload runs once, recording the
``SimDisk`` state after every operation and the facts a client was told ("job a is
enqueued", "job a completed") with the operation count at that moment.  A crash after
op ``n`` is either

* a **process crash**: every byte and name the OS holds survives; or
* a **power loss**: per file, ``SimDisk.pending_at_power_loss`` lists the unsynced ops;
  any prefix of them may have reached the disk, the last kept write may be torn at every
  byte boundary, and the lost part may read as zeros (``zero_fill``).  Names revert to
  the last ``fsync_dir`` of their folder.

On each state the real ``recover`` runs and the checks are (a failed check is a
*violation* of the kind named):

* ``refused``: recovery raised ``WalCorruptionError`` / ``SnapshotError``.  Documented,
  but a crash alone must never cause it under the correct protocol;
* ``error``: recovery raised anything else;
* ``lost-ack``: a fact the client was told is missing and was never durable (the ack
  came before the data was safe);
* ``lost``: a fact the client was told is missing though it *had* been durable (the
  files that held it were replaced or deleted too early);
* ``invariant``: ``check()`` fails or a job is in two states;
* ``not-idempotent``: recovering a second time (after ``open_writer`` made the settle
  records durable) gives a different ``export()``;
* ``append-unreadable``: a record appended and synced after recovery (after a torn tail)
  cannot be read back.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from phase1.config import Config
from phase1.core import QueueCore, Record, Step
from phase1.errors import InvariantViolation, SnapshotError, WalCorruptionError
from phase1.jobs import Job
from phase1.protocol import CORRECT, VARIANTS, Protocol, protocol_named
from phase1.recovery import open_writer, recover
from phase1.sim.disk import DiskOp, SimDisk, SimDiskState
from phase1.snapshot import oldest_kept_last_seq, write_snapshot
from phase1.wal import WalWriter, drop_segments_upto, read_wal

__all__ = [
    "KINDS",
    "EXPECTED_KIND",
    "DEFAULT_MAX_STATES",
    "STANDARD_CONFIG",
    "Fact",
    "Ack",
    "Event",
    "Trace",
    "CrashState",
    "DiskVerdict",
    "Violation",
    "VariantResult",
    "ExploreResult",
    "run_workload",
    "crash_states",
    "check_disk",
    "explore_variant",
    "explore",
    "describe_op",
    "timeline",
    "format_table",
    "report_lines",
]

KINDS = (
    "refused",
    "error",
    "lost-ack",
    "lost",
    "invariant",
    "not-idempotent",
    "append-unreadable",
)
# What each variant must show at least once (the tests and the CLI check it).
EXPECTED_KIND: dict[str, tuple[str, ...]] = {
    "correct": (),
    "no-fsync": ("lost-ack",),
    "snapshot-in-place": ("refused", "lost"),
    "rename-without-dir-fsync": ("lost",),
    "truncate-wal-before-snapshot-durable": ("lost",),
    "ack-before-durable": ("lost-ack",),
}
DEFAULT_MAX_STATES = 2_000  # per crash point; the correct protocol's largest has 895
PROBE_JOB = "probe-after-recovery"

# WAL and snapshots in separate folders, as many deployments do: then the WAL's own folder
# fsync cannot make a snapshot rename durable by accident (with both in one folder, the
# rename-without-dir-fsync bug hides behind the next WAL fsync_dir: a lesson in itself).
# No WAL preallocation by default: its padding would multiply the torn-write states of every
# append; ``STANDARD_CONFIG.replace(preallocate_bytes=256)`` explores the padded protocol.
STANDARD_CONFIG = Config().replace(
    wal_path="data/wal/wal.log",
    snapshot_path="data/snap/snapshot.json",
    commit_policy="batch",
    max_retry=2,
    task_timeout_s=5.0,
    snapshots_kept=2,
    preallocate_bytes=0,
)

FactKind = Literal["enqueue", "completed", "dead"]
CrashKind = Literal["process", "power"]
_NO_ROTATION = 1 << 62


# == what the client was told ===============================================================
@dataclass(frozen=True, slots=True, order=True)
class Fact:
    """Something a client was told and recovery must keep: ``enqueue`` (the job is known),
    ``completed`` (its ACK), ``dead`` (its dead-lettering)."""

    kind: FactKind
    job_id: str

    def __str__(self) -> str:
        return f"{self.kind} of job {self.job_id!r}"


@dataclass(frozen=True, slots=True)
class Ack:
    """``fact`` was acknowledged to a client once ``after_ops`` disk ops had run."""

    fact: Fact
    after_ops: int


@dataclass(frozen=True, slots=True)
class Event:
    """A workload step (``after_ops`` disk ops had run when it started), for timelines."""

    after_ops: int
    text: str


@dataclass(frozen=True)
class Trace:
    """One run of the workload: ``states[n]`` is the disk after its first ``n`` ops."""

    protocol: Protocol
    config: Config
    ops: tuple[DiskOp, ...]
    states: tuple[SimDiskState, ...]
    acks: tuple[Ack, ...]
    events: tuple[Event, ...]

    def acked_by(self, n: int) -> frozenset[Fact]:
        return frozenset(a.fact for a in self.acks if a.after_ops <= n)


def _facts_of(records: Sequence[Record]) -> list[Fact]:
    out: list[Fact] = []
    for r in records:
        if r.type == "ENQUEUE":
            out.append(Fact("enqueue", r.job_id))
        elif r.type == "ACK":
            out.append(Fact("completed", r.job_id))
        elif r.type == "DEAD":
            out.append(Fact("dead", r.job_id))
    return out


def _facts_in(core: QueueCore) -> frozenset[Fact]:
    state = core.export()
    known = [j.id for j in state.pending]
    known += [j.id for j, _ in state.in_flight]
    known += [j.id for j in state.failed]
    known += list(state.completed) + list(state.dead)
    facts = {Fact("enqueue", j) for j in known}
    facts |= {Fact("completed", j) for j in state.completed}
    facts |= {Fact("dead", j) for j in state.dead}
    return frozenset(facts)


# == the workload ===========================================================================
class _Shell:
    """A single-threaded shell with the beats of ``runtime.durable.DurableQueue``."""

    def __init__(self, disk: SimDisk, config: Config, protocol: Protocol) -> None:
        self.disk = disk
        self.config = config
        self.protocol = protocol
        self.now_s = 0.0
        self.acks: list[Ack] = []
        self.events: list[Event] = []
        self._waiting: list[tuple[int, list[Fact]]] = []  # (seq, facts) not yet told
        self.event("start: recover from an empty disk")
        disk.makedirs(config.wal_dir)
        disk.makedirs(config.snapshot_dir)
        self.core, report = recover(disk, config, now_s=self.now_s)
        assert not report.settle_records, "the workload starts on an empty disk"
        # open_writer's WalWriter, with the protocol under test
        self.writer = WalWriter(
            disk,
            config.wal_path,
            next_seq=report.wal_last_seq + 1,
            policy=config.commit_policy,
            batch_size=config.batch_size,
            batch_interval_s=config.batch_interval_s,
            segment_bytes=_NO_ROTATION,
            preallocate_bytes=config.preallocate_bytes,
            protocol=protocol,
        )

    def event(self, text: str) -> None:
        self.events.append(Event(len(self.disk.op_log), text))

    def _tell(self, facts: Sequence[Fact]) -> None:
        for fact in facts:
            self.acks.append(Ack(fact, len(self.disk.op_log)))
            self.event(f"client told: {fact} ok")

    def run(self, label: str, command: Callable[[QueueCore, float], Step]) -> Step:
        """Decide and append; the client hears back in ``commit`` (or at once, if the
        protocol acknowledges before durability)."""
        self.event(label)
        step = command(self.core, self.now_s)
        if step.records:
            seq = self.writer.append(step.records, now_s=self.now_s)
            facts = _facts_of(step.records)
            if self.protocol.ack_after_durable:
                self._waiting.append((seq, facts))
            else:
                self._tell(facts)
        return step

    def commit(self) -> None:
        """The group-commit leader's fsync, then every caller it covers is answered."""
        if self.writer.unsynced:
            self.event(f"group commit: fsync up to seq {self.writer.appended_seq}")
            self.writer.sync()
        self._release()

    def _release(self) -> None:
        ack_seq = self.writer.ack_seq
        ready = [(s, f) for s, f in self._waiting if s <= ack_seq]
        self._waiting = [(s, f) for s, f in self._waiting if s > ack_seq]
        for _, facts in ready:
            self._tell(facts)

    def snapshot(self) -> None:
        """``DurableQueue.snapshot``: export + rotate, write, then drop covered segments."""
        cfg, disk = self.config, self.disk
        state = self.core.export()
        self.event(f"snapshot: export at seq {state.last_seq}, rotate the WAL")
        self.writer.rotate()
        self.writer.mark_durable(self.writer.appended_seq)
        self._release()
        if self.protocol.drop_wal_after_snapshot:
            self.event("snapshot: write snapshot (temp, fsync, rename, fsync folder)")
            write_snapshot(
                disk, cfg.snapshot_path, state, keep=cfg.snapshots_kept, protocol=self.protocol
            )
            oldest = oldest_kept_last_seq(disk, cfg.snapshot_path, cfg.snapshots_kept)
            if oldest is not None:
                self.event(f"snapshot: drop WAL segments up to seq {oldest}")
                drop_segments_upto(disk, cfg.wal_path, oldest)
        else:
            self.event(f"snapshot: drop WAL segments up to seq {state.last_seq} (too early)")
            drop_segments_upto(disk, cfg.wal_path, state.last_seq)
            self.event("snapshot: write snapshot")
            write_snapshot(
                disk, cfg.snapshot_path, state, keep=cfg.snapshots_kept, protocol=self.protocol
            )


def _standard_workload(sh: _Shell) -> None:
    """Enqueue, dispatch, ack, fail, a timeout, snapshot, more work, snapshot, more work."""

    def enqueue(*ids: str) -> None:
        sh.run(f"enqueue {', '.join(ids)}", lambda c, t: c.enqueue([Job(i) for i in ids], t))

    def dispatch(worker: int, limit: int = 1) -> Step:
        return sh.run(f"dispatch to worker {worker}", lambda c, t: c.dispatch(t, worker, limit))

    def attempt_of(job_id: str) -> int:
        flight = sh.core.in_flight().get(job_id)
        assert flight is not None, f"workload: {job_id} is not in flight"
        return flight.attempt

    def ack(job_id: str) -> None:
        a = attempt_of(job_id)
        sh.run(f"ack {job_id} (attempt {a})", lambda c, t: c.ack(job_id, a, t))

    def fail(job_id: str) -> None:
        a = attempt_of(job_id)
        sh.run(f"fail {job_id} (attempt {a})", lambda c, t: c.fail(job_id, a, t, "boom"))

    enqueue("a", "b")
    sh.commit()
    enqueue("c")
    enqueue("d")  # two submitters, one group commit
    sh.commit()
    dispatch(1, limit=2)  # a, b
    sh.commit()
    ack("a")
    sh.commit()
    fail("b")  # FAIL + RETRY
    sh.commit()
    sh.now_s = 2.0
    dispatch(2)  # c
    sh.commit()
    sh.now_s = 8.0
    sh.run("tick: c times out", lambda c, t: c.tick(t))  # TIMEOUT + RETRY
    sh.commit()
    sh.snapshot()
    enqueue("e")
    sh.commit()
    dispatch(1, limit=3)  # d, b (attempt 2), c (attempt 2)
    sh.commit()
    fail("b")  # attempt 2 = max_retry: FAIL + DEAD
    sh.commit()
    ack("c")
    sh.commit()
    sh.snapshot()
    enqueue("f")
    sh.commit()
    ack("d")
    sh.commit()
    dispatch(3)  # e, left in flight: recovery re-queues it
    sh.commit()


def run_workload(
    protocol: Protocol = CORRECT,
    *,
    config: Config = STANDARD_CONFIG,
    workload: Callable[[_Shell], None] = _standard_workload,
) -> Trace:
    """Run ``workload`` on a fresh ``SimDisk`` and record the disk after every op."""
    states: list[SimDiskState] = []
    disk = SimDisk()
    states.append(disk.state())
    disk.on_op = lambda op: states.append(disk.state())
    shell = _Shell(disk, config, protocol)
    workload(shell)
    shell.event("end of workload")
    disk.on_op = None
    return Trace(
        protocol,
        config,
        tuple(disk.op_log),
        tuple(states),
        tuple(shell.acks),
        tuple(shell.events),
    )


# == crash states ===========================================================================
@dataclass(frozen=True, slots=True)
class CrashState:
    """A crash after the first ``after_ops`` ops.  For power loss, ``keep``/``cuts`` per
    file (``SimDisk.apply_power_loss``'s arguments): files not named keep nothing."""

    after_ops: int
    kind: CrashKind
    keep: tuple[tuple[str, int], ...] = ()
    cuts: tuple[tuple[str, int], ...] = ()
    zero_fill: bool = False

    @property
    def where(self) -> str:
        return f"after op #{self.after_ops - 1}" if self.after_ops else "before the first op"

    def describe(self) -> str:
        if self.kind == "process":
            return f"process crash {self.where}"
        parts = []
        cuts = dict(self.cuts)
        for name, k in self.keep:
            text = f"{name}: {k} unsynced op(s) reached the disk"
            if name in cuts:
                tail = "zero-filled" if self.zero_fill else "cut"
                text += f", the last torn at byte {cuts[name]} ({tail})"
            parts.append(text)
        kept = "; ".join(parts) if parts else "every unsynced op lost"
        return f"power loss {self.where} ({kept})"

    def disk(self, trace: Trace) -> SimDisk:
        base = SimDisk.from_state(trace.states[self.after_ops])
        if self.kind == "process":
            base.crash("process")
            return base
        return base.apply_power_loss(dict(self.keep), dict(self.cuts), self.zero_fill)


def _choices(disk: SimDisk) -> list[tuple[str, list[tuple[int, int | None]]]]:
    """Per durable file with unsynced ops: every (ops kept, cut) a power loss allows."""
    out: list[tuple[str, list[tuple[int, int | None]]]] = []
    for name, ops in disk.pending_at_power_loss(unique=True).items():
        if not ops:
            continue
        options: list[tuple[int, int | None]] = [(0, None)]
        for k, op in enumerate(ops, start=1):
            options.append((k, None))
            if op.tearable:
                options.extend((k, cut) for cut in range(len(op.data)))
        out.append((name, options))
    return out


def crash_states(
    trace: Trace, after_ops: int, *, max_states: int | None, rng: random.Random
) -> tuple[list[CrashState], int]:
    """The crash states after op ``after_ops`` in enumeration order, and how many exist.

    One process crash, then every power-loss combination: the product over files of
    (ops kept, torn at byte) choices, without and then with zero-filled tails (a
    combination without a torn write is listed once).  When more than ``max_states``
    exist, a seeded sample of that many is returned, still in enumeration order.
    """
    disk = SimDisk.from_state(trace.states[after_ops])
    files = _choices(disk)
    sizes = [len(opts) for _, opts in files]
    combos = 1
    uncut = 1
    for (_, opts), size in zip(files, sizes, strict=True):
        combos *= size
        uncut *= sum(1 for _, cut in opts if cut is None)
    total = 1 + combos + (combos - uncut)  # process + plain + zero-filled
    space = 2 * combos  # indexes: [0, combos) plain, [combos, 2 combos) zero-filled
    if max_states is not None and total > max_states:
        picked: Sequence[int] = sorted(rng.sample(range(space), max(max_states - 1, 0)))
    else:
        picked = range(space)
    states = [CrashState(after_ops, "process")]
    for index in picked:
        zero_fill, rest = divmod(index, combos)
        keep: list[tuple[str, int]] = []
        cuts: list[tuple[str, int]] = []
        for (name, opts), size in zip(files, sizes, strict=True):
            rest, i = divmod(rest, size) if size else (rest, 0)
            k, cut = opts[i]
            if k:
                keep.append((name, k))
            if cut is not None:
                cuts.append((name, cut))
        if zero_fill and not cuts:
            continue  # the same state as without zero fill
        states.append(CrashState(after_ops, "power", tuple(keep), tuple(cuts), bool(zero_fill)))
    return states, total


# == checking one state =====================================================================
@dataclass(frozen=True, slots=True)
class DiskVerdict:
    """What recovering one disk found: the facts it kept (``None`` if it refused) and any
    problem that does not depend on what the client was told."""

    facts: frozenset[Fact] | None
    problems: tuple[tuple[str, str], ...]


def check_disk(disk: SimDisk, config: Config) -> DiskVerdict:
    """Recover ``disk`` (changed in place) and run every check except the lost-fact ones."""
    try:
        core, report = recover(disk, config, check=True)
    except (WalCorruptionError, SnapshotError) as exc:
        return DiskVerdict(None, (("refused", f"{type(exc).__name__}: {exc}"),))
    except InvariantViolation as exc:
        return DiskVerdict(None, (("invariant", str(exc)),))
    except Exception as exc:  # noqa: BLE001 - anything else is the finding
        return DiskVerdict(None, (("error", f"{type(exc).__name__}: {exc}"),))
    problems: list[tuple[str, str]] = []
    try:
        core.check()
    except InvariantViolation as exc:
        problems.append(("invariant", str(exc)))
    state = core.export()
    ids = [j.id for j in state.pending] + [j.id for j, _ in state.in_flight]
    ids += [j.id for j in state.failed] + list(state.completed) + list(state.dead)
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        problems.append(("invariant", f"job {twice[0]!r} is in two states"))
    facts = _facts_in(core)
    try:
        writer = open_writer(disk, config, report, segment_bytes=_NO_ROTATION)
        again, _ = recover(disk, config)
        if again.export() != state:
            problems.append(("not-idempotent", "a second recovery gives a different state"))
    except Exception as exc:  # noqa: BLE001
        problems.append(("not-idempotent", f"second recovery: {type(exc).__name__}: {exc}"))
        return DiskVerdict(facts, tuple(problems))
    try:
        step = again.enqueue([Job(PROBE_JOB)], 0.0)
        writer.append(step.records)
        writer.sync()
        read = read_wal(disk, config.wal_path, after_seq=report.snapshot_last_seq)
        if read.torn is not None or not read.records or read.records[-1] != step.records[-1]:
            problems.append(("append-unreadable", "the record appended after recovery is gone"))
    except Exception as exc:  # noqa: BLE001
        problems.append(("append-unreadable", f"{type(exc).__name__}: {exc}"))
    return DiskVerdict(facts, tuple(problems))


# == results ================================================================================
@dataclass(frozen=True, slots=True)
class Violation:
    """One failed check on one crash state; ``lost`` lists the facts recovery dropped."""

    variant: str
    kind: str
    state: CrashState
    detail: str
    lost: tuple[Fact, ...] = ()


@dataclass(frozen=True)
class VariantResult:
    variant: str
    summary: str
    ops: int
    crash_points: int
    states_possible: int
    states_explored: int
    distinct_disks: int
    violations: dict[str, int]  # by kind, every kind listed
    smallest: dict[str, Violation]  # the first (smallest) violation of each kind found
    seconds: float
    trace: Trace = field(repr=False)

    @property
    def sampled(self) -> bool:
        return self.states_explored < self.states_possible

    @property
    def total_violations(self) -> int:
        return sum(self.violations.values())

    @property
    def first(self) -> Violation | None:
        """The smallest violation of any kind (earliest crash point, then fewest ops)."""
        found = list(self.smallest.values())
        if not found:
            return None
        return min(found, key=_violation_order)

    @property
    def expected_found(self) -> bool:
        expected = EXPECTED_KIND.get(self.variant, ())
        if not expected:
            return self.total_violations == 0
        return any(self.violations[k] for k in expected)

    def row(self, *, with_time: bool = True) -> dict[str, object]:
        out: dict[str, object] = {
            "variant": self.variant,
            "ops": self.ops,
            "crash_states": self.states_explored,
            "possible": self.states_possible,
            "violations": self.total_violations,
        }
        out.update(self.violations)
        out["expected_found"] = self.expected_found
        if with_time:
            out["time_s"] = round(self.seconds, 3)
        return out


@dataclass(frozen=True)
class ExploreResult:
    seed: int
    max_states: int | None
    variants: tuple[VariantResult, ...]

    def rows(self, *, with_time: bool = True) -> list[dict[str, object]]:
        return [v.row(with_time=with_time) for v in self.variants]

    def __getitem__(self, name: str) -> VariantResult:
        for v in self.variants:
            if v.variant == name:
                return v
        raise KeyError(name)

    @property
    def seconds(self) -> float:
        return sum(v.seconds for v in self.variants)


def _violation_order(v: Violation) -> tuple[int, int, int, int]:
    s = v.state
    kept = sum(k for _, k in s.keep)
    return (s.after_ops, 0 if s.kind == "process" else 1, kept, KINDS.index(v.kind))


# == exploring ==============================================================================
def _durable_facts_by_op(trace: Trace) -> list[frozenset[Fact]]:
    """``out[n]``: facts recoverable, at some op <= n, from the durable files alone."""
    out: list[frozenset[Fact]] = []
    seen: frozenset[Fact] = frozenset()
    for st in trace.states:
        verdict = check_disk(SimDisk.from_state(st).apply_power_loss(), trace.config)
        if verdict.facts is not None:
            seen = seen | verdict.facts
        out.append(seen)
    return out


def _key(disk: SimDisk) -> bytes:
    """A digest of every file's name and bytes: equal disks recover equally."""
    h = hashlib.blake2b(digest_size=16)
    for name, data in disk.snapshot_files().items():
        h.update(b"%d:%b\0%d:" % (len(name), name.encode(), len(data)))
        h.update(data)
    return h.digest()


def explore_variant(
    protocol: Protocol | str = CORRECT,
    *,
    seed: int = 0,
    max_states: int | None = DEFAULT_MAX_STATES,
    config: Config = STANDARD_CONFIG,
    progress: Callable[[int, int], None] | None = None,
) -> VariantResult:
    """Run the workload under ``protocol`` and check every crash state (see the module
    docstring).  ``max_states`` caps the states per crash point (``None``: no cap)."""
    if isinstance(protocol, str):
        protocol = protocol_named(protocol)
    started = time.perf_counter()
    rng = random.Random(f"{seed}:{protocol.name}")
    trace = run_workload(protocol, config=config)
    durable = _durable_facts_by_op(trace)
    cache: dict[bytes, DiskVerdict] = {}
    counts = dict.fromkeys(KINDS, 0)
    smallest: dict[str, Violation] = {}
    possible = explored = 0
    points = len(trace.states)
    for n in range(points):
        acked = trace.acked_by(n)
        states, total = crash_states(trace, n, max_states=max_states, rng=rng)
        possible += total
        for cs in states:
            explored += 1
            disk = cs.disk(trace)
            key = _key(disk)
            verdict = cache.get(key)
            if verdict is None:
                verdict = check_disk(disk, config)
                cache[key] = verdict
            for v in _violations(protocol.name, cs, verdict, acked, durable[n]):
                counts[v.kind] += 1
                smallest.setdefault(v.kind, v)
        if progress is not None:
            progress(n + 1, points)
    return VariantResult(
        variant=protocol.name,
        summary=protocol.summary,
        ops=len(trace.ops),
        crash_points=points,
        states_possible=possible,
        states_explored=explored,
        distinct_disks=len(cache),
        violations=counts,
        smallest=smallest,
        seconds=time.perf_counter() - started,
        trace=trace,
    )


def _violations(
    variant: str,
    cs: CrashState,
    verdict: DiskVerdict,
    acked: frozenset[Fact],
    durable: frozenset[Fact],
) -> Iterator[Violation]:
    for kind, detail in verdict.problems:
        yield Violation(variant, kind, cs, detail)
    if verdict.facts is None:
        return
    missing = sorted(acked - verdict.facts)
    if not missing:
        return
    was_durable = tuple(f for f in missing if f in durable)
    never = tuple(f for f in missing if f not in durable)
    if was_durable:
        listing = ", ".join(map(str, was_durable))
        yield Violation(variant, "lost", cs, f"durable then lost: {listing}", was_durable)
    if never:
        listing = ", ".join(map(str, never))
        yield Violation(variant, "lost-ack", cs, f"acknowledged, never durable: {listing}", never)


def explore(
    variants: Sequence[str] | None = None,
    *,
    seed: int = 0,
    max_states: int | None = DEFAULT_MAX_STATES,
    config: Config = STANDARD_CONFIG,
    progress: Callable[[str, int, int], None] | None = None,
) -> ExploreResult:
    """``explore_variant`` for each name (default: the correct protocol and every variant)."""
    names = list(variants) if variants is not None else list(VARIANTS)
    results = []
    for name in names:
        hook = None
        if progress is not None:

            def hook(done: int, total: int, name: str = name) -> None:
                progress(name, done, total)

        results.append(
            explore_variant(
                protocol_named(name), seed=seed, max_states=max_states, config=config, progress=hook
            )
        )
    return ExploreResult(seed, max_states, tuple(results))


# == rendering ==============================================================================
def describe_op(op: DiskOp) -> str:
    """One disk op as a short line: ``append data/wal/wal.log +342 B at 0``."""
    if op.kind in ("write", "append", "write_at"):
        where = f" at {op.offset}" if op.kind != "write" else ""
        return f"{op.kind} {op.path} +{op.size} B{where}"
    if op.kind == "truncate":
        return f"truncate {op.path} to {op.size} B"
    if op.kind == "rename":
        return f"rename {op.path} -> {op.dst}"
    if op.kind == "fsync":
        return f"fsync {op.path} ({op.size} B made durable)"
    return f"{op.kind} {op.path}"


def timeline(trace: Trace, violation: Violation, *, last: int = 14) -> list[str]:
    """The ops up to the crash (the last ``last`` of them), workload steps and client acks
    interleaved, then the crash and what was lost."""
    n = violation.state.after_ops
    start = max(0, n - last)
    lines: list[str] = []
    if start:
        lines.append(f"   ... {start} earlier ops")
    events = [e for e in trace.events if start <= e.after_ops <= n]
    ei = 0
    for i in range(start, n + 1):
        while ei < len(events) and events[ei].after_ops == i:
            lines.append(f"        {events[ei].text}")
            ei += 1
        if i < n:
            lines.append(f"  #{i:<3} {describe_op(trace.ops[i])}")
    lines.append(f"  ** {violation.state.describe()}")
    lines.append(f"  => {violation.kind}: {violation.detail}")
    return lines


def format_table(rows: Sequence[dict[str, object]]) -> str:
    """A plain-text table (the CLI's terminal output)."""
    if not rows:
        return "(no rows)"
    headers = list(rows[0])
    cells = [[str(r.get(h, "")) for h in headers] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out.extend("  ".join(c.ljust(w) for c, w in zip(cl, widths, strict=True)) for cl in cells)
    return "\n".join(out)


def report_lines(result: ExploreResult) -> list[str]:
    """The table, then per variant its smallest crash state and what it lost."""
    lines = [format_table(result.rows())]
    for v in result.variants:
        lines.append("")
        sampled = (
            f" (a seeded sample: {v.states_explored:,} of {v.states_possible:,} states)"
            if v.sampled
            else f" (all {v.states_possible:,} states)"
        )
        lines.append(f"{v.variant}: {v.summary}{sampled}")
        first = v.first
        if first is None:
            lines.append("  no violation found")
            continue
        kinds = ", ".join(f"{k} {c}" for k, c in v.violations.items() if c)
        lines.append(f"  violations: {kinds}; the smallest crash state that shows one:")
        lines.extend(timeline(v.trace, first))
    return lines
