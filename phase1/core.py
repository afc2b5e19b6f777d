"""The queue's rules, and nothing else: a sans-I/O state machine.

Owns: the transition table (``TRANSITIONS``), ``Record`` (what the WAL stores), ``Step``
(records to make durable + effects to perform once they are), the effects, the commands
(``enqueue``, ``dispatch``, ``ack``, ``fail``, ``tick``, ``cancel``, ``settle``), the only
mutator ``apply(record)``, and ``check()`` (the seed's ``Validate``).

Must not know: files, clocks, threads, randomness.  Time arrives as ``now_s`` (seconds on
the caller's clock: epoch seconds in the runtime, virtual seconds in the simulator).

How a shell uses it (etcd-raft's "persist before acting")::

    step = core.dispatch(now_s, worker_id=3)   # decides and applies in memory
    wal.append(step.records); wait until durable
    perform(step.effects)                       # only now hand the job to worker 3

Invariants kept (``check()`` verifies all of them):

* every known job is in exactly one ``JobState``; the pending indices (ready heap,
  delayed heap, blocked table) hold each pending job exactly once;
* an in-flight job has ``attempt >= 1`` and a deadline; the dispatch count *is* the
  attempt count (a DISPATCH carries ``attempt = previous + 1``);
* a blocked job's unmet-dependency count equals its dependencies not yet completed, and no
  pending job depends on a dead job once a command (or ``settle``) has finished;
* ``apply`` is idempotent by sequence number: a record with ``seq <= last_seq`` is already
  reflected and returns ``False``; a gap in ``seq`` raises ``IllegalTransition``.

Commands never raise for expected weather: an ACK for an attempt no longer in flight is a
``LateAck`` effect and changes nothing (attempts are fencing tokens).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from marshal import dumps as _dumps
from marshal import loads as _loads
from operator import eq, itemgetter
from typing import Any, NamedTuple, NoReturn

from phase1.errors import IllegalTransition, InvalidJobError, InvariantViolation
from phase1.jobs import PRIORITY_MAX, Job, JobState

try:  # the optional C accelerator (setup.py) of replay's common moves; same answers
    from phase1._replay import replay_rows as _c_replay
except ImportError:  # pragma: no cover - built wherever a C compiler was at install
    _c_replay = None

__all__ = [
    "TRANSITIONS",
    "RECORD_TYPES",
    "Record",
    "Step",
    "SendToWorker",
    "LateAck",
    "Completed",
    "Retried",
    "DeadLettered",
    "TimedOut",
    "Effect",
    "InFlight",
    "CoreState",
    "QueueCore",
    "PACK_ABOVE",
]

P, F, C, D, R = (  # R: "running" (in flight)
    JobState.PENDING,
    JobState.FAILED,
    JobState.COMPLETED,
    JobState.DEAD,
    JobState.IN_FLIGHT,
)

# The single source of the state machine: record type -> (states it may leave, state it
# enters).  ``None`` stands for "not known yet".  Diagrams and tests are drawn from it.
TRANSITIONS: dict[str, tuple[frozenset[JobState | None], JobState]] = {
    "ENQUEUE": (frozenset({None}), P),
    "DISPATCH": (frozenset({P}), R),
    "ACK": (frozenset({R}), C),
    "FAIL": (frozenset({R}), F),
    "TIMEOUT": (frozenset({R}), F),
    # RETRY from IN_FLIGHT happens only at recovery: the process died mid-attempt.
    "RETRY": (frozenset({F, R}), P),
    "DEAD": (frozenset({P, F, R}), D),
}
RECORD_TYPES = tuple(TRANSITIONS)

# Hot paths build NamedTuples with ``tuple.__new__`` (no Python-level ``__new__`` frame,
# about 2.5x cheaper than ``Record(...)``, 7x cheaper than ``job._replace(...)``) and use
# the states' values as plain strings (``JobState.X.value`` is a property call).
_new = tuple.__new__
_PENDING, _IN_FLIGHT, _FAILED = P.value, R.value, F.value
PACK_ABOVE = 1 << 18  # pack_payloads="auto": pack once 262,144 jobs are waiting
_get_type = itemgetter(1)
_get_id = itemgetter(2)


class Record(NamedTuple):
    """One WAL record.  Field names are the seed's (``wal.py`` frames them as JSON).

    ``attempt`` is the attempt the record is about (DISPATCH: the new attempt).  A
    ``NamedTuple`` rather than a frozen dataclass: equally immutable, and built about five
    times faster, which matters when recovery decodes a million of them.
    """

    seq: int
    type: str
    job_id: str
    timestamp_ms: int
    attempt: int = 0
    worker_id: int | None = None
    deadline_ms: int | None = None
    reason: str | None = None
    job: Job | None = None


# -- effects: what the shell performs once the step's records are durable ---------------
# (NamedTuples, like Record: immutable and cheap to build on the hot path.)
class SendToWorker(NamedTuple):
    job: Job
    worker_id: int
    attempt: int
    deadline_s: float


class LateAck(NamedTuple):
    """An ACK/FAIL for an attempt that is no longer in flight: ignored, counted."""

    job_id: str
    attempt: int
    kind: str  # "ack" or "fail"
    state: str  # the job's state when it arrived ("unknown" if never seen)
    current_attempt: int


class Completed(NamedTuple):
    job_id: str
    attempt: int


class TimedOut(NamedTuple):
    job_id: str
    attempt: int


class Retried(NamedTuple):
    job_id: str
    attempt: int
    cause: str  # "fail", "timeout" or "recovered"


class DeadLettered(NamedTuple):
    job_id: str
    reason: str


Effect = SendToWorker | LateAck | Completed | TimedOut | Retried | DeadLettered


@dataclass(frozen=True, slots=True)
class Step:
    """What a command decided: ``records`` to make durable, then ``effects`` to perform."""

    records: tuple[Record, ...] = ()
    effects: tuple[Effect, ...] = ()

    def __add__(self, other: Step) -> Step:
        return Step(self.records + other.records, self.effects + other.effects)


# ``Step(records, effects)`` on the commands' paths: the frozen dataclass's ``__init__``
# sets each slot through ``object.__setattr__``; setting the slots directly is the same
# object at about a third of the cost (one Step per command, several per simulated job).
_set_records = Step.__dict__["records"].__set__
_set_effects = Step.__dict__["effects"].__set__
_object_new = object.__new__


def _step(records: tuple[Record, ...], effects: tuple[Effect, ...]) -> Step:
    step: Step = _object_new(Step)
    _set_records(step, records)
    _set_effects(step, effects)
    return step


class InFlight(NamedTuple):
    worker_id: int
    attempt: int
    deadline_ms: int


@dataclass(slots=True)
class CoreState:
    """Plain data for a snapshot: everything ``QueueCore.restore`` needs.

    ``pending`` is in dispatch order (priority high first, then FIFO), so FIFO order
    survives a snapshot.
    """

    last_seq: int = 0
    pending: list[Job] = field(default_factory=list)
    in_flight: list[tuple[Job, InFlight]] = field(default_factory=list)
    failed: list[Job] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    dead: dict[str, str] = field(default_factory=dict)


def _pack(job: Job) -> Job:
    """A waiting job's dict or list payload is held packed (``marshal`` bytes, which no
    valid payload is): a queue never reads payloads, and a million small dicts cost ~180
    bytes each more than packed.  ``_public`` unpacks it on the way out.  ``marshal``
    rather than JSON: exact for every payload type, and 3-6x cheaper here than
    ``orjson.dumps`` when the results are kept (measured)."""
    payload = job[1]
    if type(payload) is dict or type(payload) is list:
        return _new(Job, (job[0], _dumps(payload), job[2], job[3], job[4], job[5], job[6]))
    return job


def _unpack(payload: Any) -> Any:
    return _loads(payload) if type(payload) is bytes else payload


def _public(job: Job, attempt: int, status: str) -> Job:
    """The job as callers see it: payload decoded, attempt and status current."""
    return _new(Job, (job[0], _unpack(job[1]), attempt, status, job[4], job[5], job[6]))


class _Entry:
    """Mutable per-job bookkeeping (one small object per live job).  ``replay`` and
    ``restore`` build one inline (every slot set, no ``__init__`` frame): a new slot must
    be set there too."""

    __slots__ = ("job", "state", "attempt", "order", "flight", "unmet", "copies")

    def __init__(self, job: Job) -> None:
        self.job = job
        self.state = P
        self.attempt = job.attempt
        self.order = 0
        self.flight: InFlight | None = None
        self.unmet = 0
        self.copies = 0  # occurrences in a ready FIFO; only the newest one is live


def _ms(now_s: float) -> int:
    ms = round(now_s * 1000)  # an int already for a float (or int) now_s
    return ms if type(ms) is int else int(ms)


class QueueCore:
    """The queue: pending (priority heap, delayed, blocked), in flight, completed, dead.

    >>> core = QueueCore(max_retry=2, task_timeout_s=1.0)
    >>> step = core.enqueue([Job("a")], now_s=0.0)
    >>> [r.type for r in step.records]
    ['ENQUEUE']
    >>> send = core.dispatch(now_s=0.0, worker_id=1).effects[0]
    >>> (send.job.id, send.attempt, send.deadline_s)
    ('a', 1, 1.0)
    >>> [r.type for r in core.tick(now_s=1.0).records]
    ['TIMEOUT', 'RETRY']
    >>> core.ack("a", attempt=1, now_s=1.1).effects[0].kind     # a late ACK: fenced off
    'ack'
    >>> core.counts()["pending"]
    1
    """

    def __init__(
        self,
        *,
        max_retry: int = 3,
        task_timeout_s: float = 3.0,
        pack_payloads: bool | str = "auto",
        pack_above: int = PACK_ABOVE,
    ) -> None:
        """``pack_payloads`` holds waiting jobs' dict/list payloads packed: ~180 bytes less
        per small job for ~20-30% more enqueue CPU.  ``True``: always; ``False``: never;
        ``"auto"`` (default): once ``pack_above`` jobs are already waiting, i.e. only in a
        deep backlog, where memory is what runs out (1,000,000 pending small jobs: ~460 MB
        instead of 596 MB; all packed, 414 MB).  Payloads come back unchanged either way."""
        if pack_payloads is not True and pack_payloads is not False and pack_payloads != "auto":
            raise ValueError(f"pack_payloads must be True, False or 'auto', not {pack_payloads!r}")
        if max_retry < 1:
            raise ValueError("max_retry must be >= 1")
        if task_timeout_s <= 0:
            raise ValueError("task_timeout_s must be > 0")
        self.max_retry = max_retry
        self.task_timeout_s = task_timeout_s
        self.pack_payloads = pack_payloads
        # pack a waiting job's payload once this many jobs wait (None: never)
        self._pack_above: int | None = (
            0 if pack_payloads is True else pack_above if pack_payloads == "auto" else None
        )
        self.last_seq = 0
        self._jobs: dict[str, _Entry] = {}
        self._completed: dict[str, None] = {}  # insertion-ordered set
        self._dead: dict[str, str] = {}  # id -> reason
        # Ready jobs: one FIFO per priority holding entries (8 bytes a job; a heap of
        # tuples cost ~70 more), plus a small heap for delayed jobs that came due, which
        # keep their enqueue order.  Stale entries (jobs no longer pending) are skipped.
        self._ready: list[deque[_Entry]] = [deque() for _ in range(PRIORITY_MAX + 1)]
        self._ready_desc = self._ready[::-1]  # the same FIFOs, highest priority first
        self._due: list[tuple[int, int, str]] = []  # (-priority, order, id)
        self._delayed: list[tuple[float, int, str]] = []  # (scheduled_at, order, id)
        self._blocked: dict[str, None] = {}
        self._waiters: dict[str, list[str]] = {}  # dependency id -> waiting job ids
        self._deadlines: list[tuple[int, str, int]] = []  # (deadline_ms, id, attempt)
        self._in_flight: dict[str, _Entry] = {}
        self._failed: dict[str, None] = {}
        self._next_order = 0
        self._counts = {s: 0 for s in (P, R, F)}

    # == queries =========================================================================
    def state_of(self, job_id: str) -> JobState | None:
        if job_id in self._completed:
            return C
        if job_id in self._dead:
            return D
        entry = self._jobs.get(job_id)
        return entry.state if entry is not None else None

    def knows(self, job_id: str) -> bool:
        return job_id in self._jobs or job_id in self._completed or job_id in self._dead

    def get(self, job_id: str) -> Job | None:
        """The job as it is now (attempt and status current); ``None`` once completed or
        dead, since only the id of a finished job is kept (as in the seed's snapshot)."""
        entry = self._jobs.get(job_id)
        if entry is None:
            return None
        return _public(entry.job, entry.attempt, entry.state.value)

    def counts(self) -> dict[str, int]:
        """Counts by state, plus the pending breakdown (ready / delayed / blocked)."""
        return {
            "pending": self._counts[P],
            "in_flight": self._counts[R],
            "completed": len(self._completed),
            "dead": len(self._dead),
            "failed": self._counts[F],
            "blocked": len(self._blocked),
            "delayed": sum(1 for _, o, j in self._delayed if self._live(j, o)),
        }

    def in_flight(self) -> dict[str, InFlight]:
        return {job_id: e.flight for job_id, e in self._in_flight.items() if e.flight is not None}

    def completed_ids(self) -> list[str]:
        return list(self._completed)

    def not_completed(self, ids: set[str]) -> set[str]:
        """The ids in ``ids`` this core has not completed (``ids`` minus ``completed_ids()``,
        without copying the completed ids: the simulator's ledger asks it at every crash)."""
        return ids.difference(self._completed)

    def dead_reasons(self) -> dict[str, str]:
        return dict(self._dead)

    def pending_jobs(self) -> list[Job]:
        """Pending jobs in the order they would be dispatched if all were due and unblocked."""
        entries = [e for e in self._jobs.values() if e.state is P]
        entries.sort(key=lambda e: (-e.job.priority, e.order))
        return [_public(e.job, e.attempt, P.value) for e in entries]

    def is_idle(self) -> bool:
        """Nothing pending, in flight or failed: every known job is completed or dead."""
        return not (self._counts[P] or self._counts[R] or self._counts[F])

    def next_wakeup_s(self) -> float | None:
        """The earliest time at which ``tick`` or ``dispatch`` could change something on its
        own (a deadline or a delayed job coming due); shells sleep until then."""
        times: list[float] = []
        while self._deadlines and not self._flying(self._deadlines[0]):
            heapq.heappop(self._deadlines)
        if self._deadlines:
            times.append(self._deadlines[0][0] / 1000.0)
        while self._delayed and not self._live(self._delayed[0][2], self._delayed[0][1]):
            heapq.heappop(self._delayed)
        if self._delayed:
            times.append(self._delayed[0][0])
        return min(times) if times else None

    def has_ready(self, now_s: float) -> bool:
        """Whether ``dispatch(now_s)`` would hand out a job (a query: nothing is taken)."""
        self._promote(now_s)
        return self._next_ready(take=False) is not None

    # == commands: decide, apply in memory, return the Step ============================
    def enqueue(self, jobs: Sequence[Job], now_s: float) -> Step:
        """Accept a batch of validated jobs atomically: all are enqueued or none.

        Raises ``InvalidJobError`` for an id already known or repeated in the batch.
        A job depending on a job already dead is dead-lettered in the same step.
        """
        known = self._jobs
        completed = self._completed
        dead = self._dead
        if len(jobs) == 1:  # the threaded shell's one-job-per-call case: no id list
            job_id = jobs[0][0]
            if job_id in known or job_id in completed or job_id in dead:
                self._refuse_enqueue([job_id])
        else:
            ids = [job[0] for job in jobs]
            if (
                len(set(ids)) != len(ids)
                or any(map(known.__contains__, ids))
                or (completed and any(map(completed.__contains__, ids)))
                or (dead and any(map(dead.__contains__, ids)))
            ):
                self._refuse_enqueue(ids)
        ts = round(now_s * 1000)  # _ms(now_s), inline
        if type(ts) is not int:
            ts = int(ts)
        records: list[Record] = []
        effects: list[Effect] = []
        append = records.append
        max_retry = self.max_retry
        counts = self._counts
        ready = self._ready
        above = self._pack_above
        entry_type = _Entry
        for job in jobs:
            if job[3] != _PENDING:
                job = job._replace(status=_PENDING)
            # The batch was checked above (unknown ids, no repeats), so this is the one legal
            # move: ENQUEUE's half of apply(), skipping the generic checks.
            seq = self.last_seq + 1
            job_id = job[0]
            rec = _new(Record, (seq, "ENQUEUE", job_id, ts, job[2], None, None, None, job))
            append(rec)
            if job[6] or job[5] is not None or job[2] >= max_retry:
                self._apply_enqueue(rec)
                self.last_seq = seq
                dead_dep = next((d for d in job[6] if d in dead), None)
                if dead_dep is not None:
                    self._kill(job_id, ts, f"dependency {dead_dep!r} is dead", records, effects)
                elif job[2] >= max_retry:
                    reason = f"enqueued with attempt {job[2]} >= max_retry {max_retry}"
                    self._kill(job_id, ts, reason, records, effects)
                continue
            # A plain ready job (no dependencies, no schedule): _apply_enqueue and _place's
            # common case, inlined.
            entry = entry_type(_pack(job) if above is not None and counts[P] >= above else job)
            known[job_id] = entry
            counts[P] += 1
            entry.order = self._next_order
            self._next_order += 1
            ready[job[4]].append(entry)
            entry.copies = 1
            self.last_seq = seq
        step: Step = _object_new(Step)  # _step(...), inline
        _set_records(step, tuple(records))
        _set_effects(step, tuple(effects))
        return step

    def _refuse_enqueue(self, ids: list[str]) -> NoReturn:
        """Raise ``InvalidJobError`` for the first id that is repeated or already known."""
        seen: set[str] = set()
        for job_id in ids:
            if job_id in seen:
                raise InvalidJobError(
                    f"job {job_id!r}: id is a duplicate in this batch", job_id=job_id, field="id"
                )
            if self.knows(job_id):
                raise InvalidJobError(
                    f"job {job_id!r}: id is already known (state {self.state_of(job_id)})",
                    job_id=job_id,
                    field="id",
                )
            seen.add(job_id)
        raise AssertionError("unreachable: _refuse_enqueue found nothing to refuse")

    def dispatch(self, now_s: float, worker_id: int = 0, limit: int = 1) -> Step:
        """Hand up to ``limit`` ready jobs (due, unblocked, highest priority first, FIFO
        within a priority) to ``worker_id``; each DISPATCH counts one attempt."""
        ts = round(now_s * 1000)  # _ms(now_s), inline (one command per simulated job)
        if type(ts) is not int:
            ts = int(ts)
        deadline_ms = _ms(now_s + self.task_timeout_s)
        records: list[Record] = []
        effects: list[Effect] = []
        delayed = self._delayed
        if delayed and delayed[0][0] <= now_s:  # _promote's test, inline
            self._promote(now_s)
        deadline_s = deadline_ms / 1000.0
        counts = self._counts
        in_flight = self._in_flight
        deadlines = self._deadlines
        flight_worker = worker_id if worker_id is not None else 0
        while len(effects) < limit:
            entry = self._next_ready()
            if entry is None:
                break
            job = entry.job
            job_id = job[0]
            attempt = entry.attempt + 1
            # A ready entry is pending and known: DISPATCH is the one legal move, so this
            # is its half of apply() (_apply_dispatch) inline, as enqueue does, without
            # the generic checks (the attempt is entry.attempt + 1 by construction).
            seq = self.last_seq + 1
            rec = _new(
                Record, (seq, "DISPATCH", job_id, ts, attempt, worker_id, deadline_ms, None, None)
            )
            if self._blocked:
                self._blocked.pop(job_id, None)
            entry.order = -1  # _unplace: heap entries go stale lazily
            counts[entry.state] -= 1
            counts[R] += 1
            entry.state = R
            entry.attempt = attempt
            entry.flight = _new(InFlight, (flight_worker, attempt, deadline_ms))
            in_flight[job_id] = entry
            heapq.heappush(deadlines, (deadline_ms, job_id, attempt))
            self.last_seq = seq
            records.append(rec)
            payload = job[1]  # _public(job, attempt, _IN_FLIGHT), inline
            if type(payload) is bytes:
                payload = _loads(payload)
            sent = _new(Job, (job[0], payload, attempt, _IN_FLIGHT, job[4], job[5], job[6]))
            effects.append(_new(SendToWorker, (sent, worker_id, attempt, deadline_s)))
        step: Step = _object_new(Step)  # _step(...), inline
        _set_records(step, tuple(records))
        _set_effects(step, tuple(effects))
        return step

    def ack(self, job_id: str, attempt: int, now_s: float) -> Step:
        """Complete ``attempt`` of ``job_id``; a stale attempt is a ``LateAck``."""
        entry = self._in_flight.get(job_id)  # _fence's test, inline
        if entry is None or entry.attempt != attempt:
            late = self._fence(job_id, attempt, "ack")
            assert late is not None
            return Step((), (late,))
        # attempt ``attempt`` is in flight: ACK is legal, apply its half directly.
        seq = self.last_seq + 1
        ts = round(now_s * 1000)  # _ms(now_s), inline
        if type(ts) is not int:
            ts = int(ts)
        rec = _new(Record, (seq, "ACK", job_id, ts, attempt, None, None, None, None))
        self._apply_ack(rec)
        self.last_seq = seq
        step: Step = _object_new(Step)  # _step(...), inline
        _set_records(step, (rec,))
        _set_effects(step, (_new(Completed, (job_id, attempt)),))
        return step

    def fail(self, job_id: str, attempt: int, now_s: float, reason: str = "failed") -> Step:
        """Attempt ``attempt`` failed: FAIL, then RETRY or (at ``max_retry``) DEAD."""
        late = self._fence(job_id, attempt, "fail")
        if late is not None:
            return Step((), (late,))
        ts = _ms(now_s)
        records = [self._emit("FAIL", job_id, ts, attempt=attempt, reason=reason)]
        effects: list[Effect] = []
        self._retry_or_kill(job_id, ts, "fail", reason, records, effects)
        return Step(tuple(records), tuple(effects))

    def tick(self, now_s: float) -> Step:
        """Expire in-flight attempts whose deadline has passed (the seed's timeoutLoop)."""
        ts = _ms(now_s)
        records: list[Record] = []
        effects: list[Effect] = []
        while self._deadlines and self._deadlines[0][0] <= ts:
            item = heapq.heappop(self._deadlines)
            if not self._flying(item):
                continue
            _, job_id, attempt = item
            records.append(self._emit("TIMEOUT", job_id, ts, attempt=attempt))
            effects.append(TimedOut(job_id, attempt))
            reason = f"timed out on attempt {attempt}"
            self._retry_or_kill(job_id, ts, "timeout", reason, records, effects)
        return Step(tuple(records), tuple(effects))

    def cancel(self, job_id: str, now_s: float, reason: str = "cancelled") -> Step:
        """Dead-letter a pending job on request; in-flight, finished and unknown jobs are
        left alone (returns an empty step) so a cancel can never lose a running result."""
        entry = self._jobs.get(job_id)
        if entry is None or entry.state is not P:
            return Step()
        records: list[Record] = []
        effects: list[Effect] = []
        self._kill(job_id, _ms(now_s), reason, records, effects)
        return Step(tuple(records), tuple(effects))

    def settle(self, now_s: float) -> Step:
        """Resolve what a crash left half-done; recovery calls it once after replay.

        In-flight jobs are re-queued (their attempt was already counted by DISPATCH, so a
        job that keeps killing the process is dead-lettered at ``max_retry``); FAILED jobs
        get their RETRY-or-DEAD decision; jobs blocked on a dead dependency die too.
        """
        ts = _ms(now_s)
        records: list[Record] = []
        effects: list[Effect] = []
        for job_id in list(self._in_flight):
            reason = f"process stopped during attempt {self._jobs[job_id].attempt}"
            self._retry_or_kill(job_id, ts, "recovered", reason, records, effects)
        for job_id in list(self._failed):
            reason = f"attempt {self._jobs[job_id].attempt} failed before a crash"
            self._retry_or_kill(job_id, ts, "recovered", reason, records, effects)
        for dead_id in list(self._dead):
            self._cascade(dead_id, ts, records, effects)
        return Step(tuple(records), tuple(effects))

    # == the only mutator =================================================================
    def apply(self, record: Record) -> bool:
        """Apply one record; ``False`` if it is already reflected (``seq <= last_seq``).

        Raises ``IllegalTransition`` for a gap in ``seq`` or a move the table forbids; the
        core is unchanged after the exception.
        """
        seq = record.seq
        last = self.last_seq
        if seq != last + 1:
            if seq <= last:
                return False
            raise IllegalTransition(
                f"record seq {record.seq} follows seq {self.last_seq}: "
                f"records {self.last_seq + 1}..{record.seq - 1} are missing",
                job_id=record.job_id,
                record_type=record.type,
                state=None,
            )
        rule = TRANSITIONS.get(record.type)
        if rule is None:
            raise IllegalTransition(
                f"seq {record.seq}: unknown record type {record.type!r}",
                job_id=record.job_id,
                record_type=record.type,
                state=None,
            )
        entry = self._jobs.get(record.job_id)  # live jobs are never completed or dead
        state = entry.state if entry is not None else self.state_of(record.job_id)
        if state not in rule[0]:
            raise IllegalTransition(
                f"seq {record.seq}: {record.type} of job {record.job_id!r} "
                f"is illegal in state {state.value if state else 'unknown'}",
                job_id=record.job_id,
                record_type=record.type,
                state=state.value if state else None,
            )
        _APPLY[record.type](self, record)
        self.last_seq = seq
        return True

    def replay(
        self,
        records: Iterable[Record] | Iterable[Any],
        *,
        to_record: Callable[[Any], Record] | None = None,
        enqueue_ids: list[str] | None = None,
    ) -> int:
        """``apply`` each record in order; returns how many changed the core.

        Recovery's bulk path, with the same result as calling ``apply`` one by one (tested
        against it): the moves a busy log is made of (a plain ENQUEUE, a DISPATCH, an ACK
        nobody waits on) are done inline with the same checks, anything else goes through
        ``apply``; in-flight deadlines are indexed once at the end instead of one heap push
        per DISPATCH (most are acknowledged a few records later).  On ``IllegalTransition``
        the core holds every record before the bad one (``last_seq`` names the last).

        ``records`` may also be plain tuples in a Record's field order (the WAL reader's
        rows); the moves above never read the timestamp or the reason, and any other row
        goes through ``to_record`` (which gives its Record) before ``apply``.

        ``enqueue_ids``, if given, holds the job id of every ENQUEUE in ``records`` (the WAL
        reader's ``WalRead.enqueue_ids``; extra ids only make the check below stricter), so
        that check need not pass over every record to find them.
        """
        jobs = self._jobs
        in_flight = self._in_flight
        completed = self._completed
        dead = self._dead
        waiters = self._waiters  # the dicts are never replaced, only changed in place
        blocked = self._blocked
        counts = self._counts
        ready = self._ready
        apply = self.apply
        above = self._pack_above
        never = 1 << 62
        # local pending count at which ENQUEUE starts packing (re-derived after any apply)
        pack_at = never if above is None else above - counts[P]
        new = _new
        flight_type = InFlight
        entry_type = _Entry
        new_entry = object.__new__
        pending, running = P, R
        last = first_last = self.last_seq
        order = self._next_order
        # State counts move by local deltas, folded in before any apply() and at the end.
        d_pending = d_running = 0
        # An ENQUEUE must name an unknown job: three lookups in dicts of every job, each
        # likely a cache miss.  When every ENQUEUE in ``records`` names a distinct job that
        # was unknown before replay, none can be known at its turn either (a job becomes
        # known only by its ENQUEUE), so one set built up front answers for all of them.
        fresh = type(records) is list and _fresh_enqueues(
            records, jobs, completed, dead, enqueue_ids
        )
        r: Any
        try:
            if _c_replay is not None and type(records) is list:
                # The same moves in C (phase1/_replay.c), on these same objects: it stops
                # at each row that is not one of them, which goes through apply here.
                st = [last, order, 0, 0, pack_at]
                ctx = (
                    *(jobs, in_flight, completed, dead, waiters, blocked),
                    tuple(fifo.append for fifo in ready),
                    *(entry_type, pending, running, _pack, fresh),
                )
                pos = 0
                while True:
                    try:
                        pos = _c_replay(records, pos, st, ctx)
                    finally:
                        last, order, d_pending, d_running = st[0], st[1], st[2], st[3]
                    if pos >= len(records):
                        break
                    r = records[pos]
                    pos += 1
                    self._fold(last, order, d_pending, d_running)
                    d_pending = d_running = 0
                    apply(r if to_record is None else to_record(r))
                    last, order = self.last_seq, self._next_order
                    pack_at = never if above is None else above - counts[pending]
                    st[:] = (last, order, 0, 0, pack_at)
            else:
                for r in records:
                    # Unpacked at once: a plain tuple (the C reader's rows) unpacks several
                    # times faster than its fields are read by name.
                    seq, rtype, job_id, _, attempt, worker_id, deadline_ms, _, job = r
                    if seq - last == 1:  # (a small int: no new int object per record)
                        if rtype == "ACK":
                            entry = jobs.get(job_id)
                            if (
                                entry is not None
                                and entry.state is running
                                and entry.attempt == attempt
                                and not waiters
                            ):
                                del jobs[job_id]
                                entry.flight = None
                                del in_flight[job_id]
                                d_running -= 1
                                completed[job_id] = None
                                last = seq
                                continue
                        elif rtype == "DISPATCH":
                            entry = jobs.get(job_id)
                            if (
                                entry is not None
                                and entry.state is pending
                                and attempt == entry.attempt + 1
                                and deadline_ms is not None
                                and not blocked
                            ):
                                entry.order = -1
                                d_pending -= 1
                                d_running += 1
                                entry.state = running
                                entry.attempt = attempt
                                # the row stands in for its InFlight (most are acknowledged a
                                # few records later): the finally below builds the rest's
                                entry.flight = r
                                in_flight[job_id] = entry
                                last = seq
                                continue
                        elif (
                            rtype == "ENQUEUE"
                            and job is not None
                            and job[0] == job_id
                            and not job[6]
                            and job[5] is None
                            and (
                                fresh
                                or (
                                    job_id not in jobs
                                    and job_id not in completed
                                    and (not dead or job_id not in dead)
                                )
                            )
                        ):
                            # _Entry(job) with its order and copy set, without an __init__ frame
                            entry = new_entry(entry_type)
                            entry.job = _pack(job) if d_pending >= pack_at else job
                            entry.state = pending
                            entry.attempt = job[2]
                            entry.order = order
                            entry.flight = None
                            entry.unmet = 0
                            entry.copies = 1
                            jobs[job_id] = entry
                            d_pending += 1
                            order += 1
                            ready[job[4]].append(entry)
                            last = seq
                            continue
                    self._fold(last, order, d_pending, d_running)
                    d_pending = d_running = 0
                    apply(r if to_record is None else to_record(r))
                    last, order = self.last_seq, self._next_order
                    pack_at = never if above is None else above - counts[pending]
        finally:
            self._fold(last, order, d_pending, d_running)
            deadlines = []
            for job_id, e in in_flight.items():
                f: Any = e.flight
                if type(f) is not flight_type:  # a DISPATCH row, from the fast path above
                    w = f[5]
                    f = e.flight = new(flight_type, (w if w is not None else 0, f[4], f[6]))
                deadlines.append((f.deadline_ms, job_id, e.attempt))
            heapq.heapify(deadlines)
            self._deadlines = deadlines
        # every record applied moved last_seq on by one; the others (already reflected)
        # left it alone
        return self.last_seq - first_last

    def _fold(self, last: int, order: int, d_pending: int, d_running: int) -> None:
        """Store ``replay``'s locals in the core: the last seq applied, the next FIFO order,
        and the moves of the pending and in-flight counts since the last fold."""
        self.last_seq = last
        self._next_order = order
        counts = self._counts
        counts[P] += d_pending
        counts[R] += d_running

    def _apply_enqueue(self, r: Record) -> None:
        if r.job is None or r.job.id != r.job_id:
            raise IllegalTransition(
                f"seq {r.seq}: ENQUEUE of {r.job_id!r} carries "
                + ("no job" if r.job is None else f"job {r.job.id!r}"),
                job_id=r.job_id,
                record_type=r.type,
                state=None,
            )
        job = r.job
        entry = _Entry(self._held(job))
        self._jobs[r.job_id] = entry
        self._counts[P] += 1
        if job.depends_on:
            for dep in job.depends_on:
                if dep not in self._completed:
                    entry.unmet += 1
                    self._waiters.setdefault(dep, []).append(r.job_id)
        elif job.scheduled_at is None:  # _place's common case, inlined
            entry.order = self._next_order
            self._next_order += 1
            self._ready[job.priority].append(entry)
            entry.copies = 1
            return
        self._place(entry)

    def _apply_dispatch(self, r: Record) -> None:
        entry = self._jobs[r.job_id]
        if r.attempt != entry.attempt + 1 or r.deadline_ms is None:
            raise IllegalTransition(
                f"seq {r.seq}: DISPATCH of {r.job_id!r} has attempt {r.attempt}, "
                f"expected {entry.attempt + 1}",
                job_id=r.job_id,
                record_type=r.type,
                state=entry.state.value,
            )
        if self._blocked:
            self._blocked.pop(r.job_id, None)
        entry.order = -1  # _unplace: heap entries go stale lazily
        counts = self._counts
        counts[entry.state] -= 1
        counts[R] += 1
        entry.state = R
        attempt = r.attempt
        entry.attempt = attempt
        worker_id = r.worker_id
        entry.flight = _new(
            InFlight, (worker_id if worker_id is not None else 0, attempt, r.deadline_ms)
        )
        self._in_flight[r.job_id] = entry
        heapq.heappush(self._deadlines, (r.deadline_ms, r.job_id, attempt))

    def _check_attempt(self, r: Record) -> None:
        # Fencing holds in replay too: an attempt end names the attempt in flight.
        entry = self._jobs[r.job_id]
        if r.attempt != entry.attempt:
            raise IllegalTransition(
                f"seq {r.seq}: {r.type} of {r.job_id!r} is for attempt {r.attempt}, "
                f"but attempt {entry.attempt} is in flight",
                job_id=r.job_id,
                record_type=r.type,
                state=entry.state.value,
            )

    def _apply_ack(self, r: Record) -> None:
        job_id = r.job_id
        if r.attempt != self._jobs[job_id].attempt:
            self._check_attempt(r)  # raises, with the message
        self._jobs.pop(job_id).flight = None
        self._in_flight.pop(job_id, None)
        self._counts[R] -= 1
        self._completed[job_id] = None
        if not self._waiters:
            return
        for waiter_id in self._waiters.pop(job_id, ()):
            waiter = self._jobs.get(waiter_id)
            if waiter is not None and waiter.unmet > 0:
                waiter.unmet -= 1
                if waiter.unmet == 0 and waiter.state is P:
                    self._blocked.pop(waiter_id, None)
                    self._place(waiter)

    def _apply_end(self, r: Record) -> None:
        self._check_attempt(r)
        entry = self._jobs[r.job_id]
        self._leave_flight(entry)
        self._move(entry, F)
        self._failed[r.job_id] = None

    def _apply_retry(self, r: Record) -> None:
        entry = self._jobs[r.job_id]
        if entry.state is R:
            self._leave_flight(entry)
        self._failed.pop(r.job_id, None)
        self._move(entry, P)
        self._place(entry)

    def _apply_dead(self, r: Record) -> None:
        entry = self._jobs.pop(r.job_id)
        if entry.state is R:
            self._leave_flight(entry)
        elif entry.state is P:
            self._unplace(entry)
        self._failed.pop(r.job_id, None)
        self._counts[entry.state] -= 1
        self._dead[r.job_id] = r.reason or ""
        for dep in entry.job.depends_on:
            waiting = self._waiters.get(dep)
            if waiting is not None and r.job_id in waiting:
                waiting.remove(r.job_id)
                if not waiting:
                    del self._waiters[dep]

    # == invariants ========================================================================
    def check(self, *, settled: bool = True) -> None:
        """Verify every invariant; raise ``InvariantViolation`` naming the first broken one.

        ``settled=False`` allows what a crash may leave before ``settle`` runs (FAILED jobs,
        pending jobs blocked on a dead dependency).
        """

        def fail(msg: str) -> None:
            raise InvariantViolation(f"check(): {msg}")

        both = self._completed.keys() & self._dead.keys()
        if both:
            fail(f"job {sorted(both)[0]!r} is both completed and dead")
        for job_id in self._jobs:
            if job_id in self._completed or job_id in self._dead:
                fail(f"job {job_id!r} is live and finished at once")
        by_state = {s: 0 for s in (P, R, F)}
        for job_id, e in self._jobs.items():
            if e.state not in by_state:
                fail(f"job {job_id!r} has live state {e.state}")
            by_state[e.state] += 1
            if e.attempt < 0:
                fail(f"job {job_id!r} has attempt {e.attempt}")
            if (e.state is R) != (job_id in self._in_flight):
                fail(f"job {job_id!r} in state {e.state.value} disagrees with the in-flight table")
            if e.state is R and (
                e.flight is None or e.flight.attempt != e.attempt or e.attempt < 1
            ):
                fail(f"in-flight job {job_id!r} has no deadline or a wrong attempt")
            if (e.state is F) != (job_id in self._failed):
                fail(f"job {job_id!r} in state {e.state.value} disagrees with the failed table")
            unmet = sum(1 for d in e.job.depends_on if d not in self._completed)
            if e.state is P and e.unmet != unmet:
                fail(f"job {job_id!r} counts {e.unmet} unmet dependencies, really {unmet}")
            if settled and e.state is P:
                dead = [d for d in e.job.depends_on if d in self._dead]
                if dead:
                    fail(f"pending job {job_id!r} depends on dead job {dead[0]!r}")
        if by_state != self._counts:
            fail(f"state counters {self._counts} disagree with the jobs {by_state}")
        if settled and self._failed:
            fail(f"job {next(iter(self._failed))!r} is FAILED after a finished command")
        placed: dict[str, int] = {}
        seen: dict[int, tuple[_Entry, int]] = {}
        for fifo in self._ready:
            for queued in fifo:
                n = seen.get(id(queued), (queued, 0))[1] + 1
                seen[id(queued)] = (queued, n)
                if n == queued.copies and queued.state is P and queued.order >= 0:
                    job_id = queued.job.id
                    placed[job_id] = placed.get(job_id, 0) + 1
        for queued, n in seen.values():
            if n != queued.copies:
                fail(
                    f"job {queued.job.id!r} is indexed {n} times in its ready FIFO "
                    f"but counts {queued.copies}"
                )
        for _, order, job_id in self._due:
            if self._live(job_id, order):
                placed[job_id] = placed.get(job_id, 0) + 1
        for _, order, job_id in self._delayed:
            if self._live(job_id, order):
                placed[job_id] = placed.get(job_id, 0) + 1
        for job_id in self._blocked:
            blocked = self._jobs.get(job_id)
            if blocked is None or blocked.state is not P or blocked.unmet == 0:
                fail(f"job {job_id!r} is in the blocked table but not blocked")
            placed[job_id] = placed.get(job_id, 0) + 1
        for job_id, e in self._jobs.items():
            if e.state is P and placed.get(job_id, 0) != 1:
                fail(f"pending job {job_id!r} is indexed {placed.get(job_id, 0)} times")
        for job_id, n in placed.items():
            if n and self._jobs[job_id].state is not P:
                fail(f"job {job_id!r} is indexed as pending in state {self._jobs[job_id].state}")
        timed = {(job_id, attempt) for _, job_id, attempt in self._deadlines}
        for job_id, e in self._in_flight.items():
            if (job_id, e.attempt) not in timed:
                fail(f"in-flight job {job_id!r} has no deadline entry: it would never time out")
        for job_id in self._blocked:
            deps = self._jobs[job_id].job.depends_on
            if not any(
                job_id in self._waiters.get(d, ()) for d in deps if d not in self._completed
            ):
                fail(f"blocked job {job_id!r} waits on no dependency: it would never unblock")
        if self.last_seq < 0:
            fail(f"last_seq is {self.last_seq}")

    # == snapshots ===========================================================================
    def export(self) -> CoreState:
        """Everything a snapshot stores, as plain data (dispatch order for pending)."""
        in_flight: list[tuple[Job, InFlight]] = []
        for e in self._in_flight.values():
            assert e.flight is not None
            in_flight.append((_public(e.job, e.attempt, R.value), e.flight))
        return CoreState(
            last_seq=self.last_seq,
            pending=self.pending_jobs(),
            in_flight=in_flight,
            failed=[
                _public(self._jobs[j].job, self._jobs[j].attempt, F.value) for j in self._failed
            ],
            completed=list(self._completed),
            dead=dict(self._dead),
        )

    @classmethod
    def restore(
        cls,
        state: CoreState,
        *,
        max_retry: int = 3,
        task_timeout_s: float = 3.0,
        pack_payloads: bool | str = "auto",
        pack_above: int = PACK_ABOVE,
    ) -> QueueCore:
        """Rebuild a core from ``export()`` output (FIFO order within a priority kept)."""
        core = cls(
            max_retry=max_retry,
            task_timeout_s=task_timeout_s,
            pack_payloads=pack_payloads,
            pack_above=pack_above,
        )
        core._completed = dict.fromkeys(state.completed)
        core._dead = dict(state.dead)
        jobs = core._jobs
        ready = core._ready
        above = core._pack_above
        new_entry = object.__new__
        for job in state.pending:
            if job[6] or job[5] is not None:
                core._restore_entry(job, P)
                continue
            # A plain ready job (most of a snapshot): _restore_entry and _place inlined.
            pending = core._counts[P]
            entry = new_entry(_Entry)
            entry.job = _pack(job) if above is not None and pending >= above else job
            entry.state = P
            entry.attempt = job[2]
            entry.order = core._next_order
            core._next_order += 1
            entry.flight = None
            entry.unmet = 0
            entry.copies = 1
            jobs[job[0]] = entry
            core._counts[P] = pending + 1
            ready[job[4]].append(entry)
        for job, flight in state.in_flight:
            entry = core._restore_entry(job, R)
            entry.flight = flight
            core._in_flight[job.id] = entry
            heapq.heappush(core._deadlines, (flight.deadline_ms, job.id, flight.attempt))
        for job in state.failed:
            core._restore_entry(job, F)
            core._failed[job.id] = None
        core.last_seq = state.last_seq
        return core

    def _held(self, job: Job) -> Job:
        """The job as a new waiting entry holds it: payload packed once ``_pack_above`` jobs
        wait (``replay`` makes the same decision inline, from its local counts)."""
        above = self._pack_above
        return _pack(job) if above is not None and self._counts[P] >= above else job

    def _restore_entry(self, job: Job, st: JobState) -> _Entry:
        entry = _Entry(self._held(job))
        entry.attempt = job.attempt
        entry.state = st
        self._jobs[job.id] = entry
        self._counts[st] += 1
        for dep in job.depends_on:
            if dep not in self._completed:
                entry.unmet += 1
                self._waiters.setdefault(dep, []).append(job.id)
        if st is P:
            self._place(entry)
        return entry

    # == helpers =================================================================================
    def _emit(self, rtype: str, job_id: str, ts: int, **fields: Any) -> Record:
        rec = Record(self.last_seq + 1, rtype, job_id, ts, **fields)
        self.apply(rec)
        return rec

    def _fence(self, job_id: str, attempt: int, kind: str) -> LateAck | None:
        entry = self._in_flight.get(job_id)
        if entry is not None and entry.attempt == attempt:
            return None
        state = self.state_of(job_id)
        current = self._jobs[job_id].attempt if job_id in self._jobs else 0
        return LateAck(job_id, attempt, kind, state.value if state else "unknown", current)

    def _retry_or_kill(
        self,
        job_id: str,
        ts: int,
        cause: str,
        reason: str,
        records: list[Record],
        effects: list[Effect],
    ) -> None:
        attempt = self._jobs[job_id].attempt
        if attempt >= self.max_retry:
            why = f"{reason}; max_retry {self.max_retry} reached"
            self._kill(job_id, ts, why, records, effects)
        else:
            records.append(self._emit("RETRY", job_id, ts, attempt=attempt, reason=reason))
            effects.append(Retried(job_id, attempt, cause))

    def _kill(
        self, job_id: str, ts: int, reason: str, records: list[Record], effects: list[Effect]
    ) -> None:
        attempt = self._jobs[job_id].attempt
        records.append(self._emit("DEAD", job_id, ts, attempt=attempt, reason=reason))
        effects.append(DeadLettered(job_id, reason))
        self._cascade(job_id, ts, records, effects)

    def _cascade(self, dead_id: str, ts: int, records: list[Record], effects: list[Effect]) -> None:
        """Jobs waiting on a dead job can never run: dead-letter them, with the reason.

        In id order: the waiter lists of a core restored from a snapshot are built in
        dispatch order, not enqueue order, and the records must not depend on which."""
        for waiter_id in sorted(self._waiters.get(dead_id, ())):
            waiter = self._jobs.get(waiter_id)
            if waiter is not None and waiter.state is P:
                self._kill(waiter_id, ts, f"dependency {dead_id!r} is dead", records, effects)

    def _move(self, entry: _Entry, new: JobState) -> None:
        self._counts[entry.state] -= 1
        self._counts[new] += 1
        entry.state = new

    def _place(self, entry: _Entry) -> None:
        """Index a pending job: blocked on dependencies, delayed until due, or ready."""
        entry.order = self._next_order
        self._next_order += 1
        job = entry.job
        if entry.unmet:
            self._blocked[job.id] = None
        elif job.scheduled_at is not None:
            heapq.heappush(self._delayed, (job.scheduled_at, entry.order, job.id))
        else:
            self._ready[job.priority].append(entry)
            entry.copies += 1

    def _unplace(self, entry: _Entry) -> None:
        # Heap entries are invalidated lazily: a new order number makes old ones stale.
        self._blocked.pop(entry.job.id, None)
        entry.order = -1

    def _live(self, job_id: str, order: int) -> bool:
        entry = self._jobs.get(job_id)
        return entry is not None and entry.state is P and entry.order == order and not entry.unmet

    def _flying(self, item: tuple[int, str, int]) -> bool:
        entry = self._in_flight.get(item[1])
        return entry is not None and entry.attempt == item[2]

    def _leave_flight(self, entry: _Entry) -> None:
        self._in_flight.pop(entry.job.id, None)
        entry.flight = None

    def _promote(self, now_s: float) -> None:
        """Move delayed jobs that are due into the ready heap (index work, not state)."""
        while self._delayed and self._delayed[0][0] <= now_s:
            _, order, job_id = heapq.heappop(self._delayed)
            if self._live(job_id, order):
                entry = self._jobs[job_id]
                heapq.heappush(self._due, (-entry.job.priority, order, job_id))

    def _next_ready(self, take: bool = True) -> _Entry | None:
        """The ready job to dispatch next: highest priority, then lowest enqueue order,
        across the per-priority FIFOs and the heap of delayed jobs that came due.  With
        ``take`` it is removed from its index (stale entries are dropped either way)."""
        best: _Entry | None = None
        for fifo in self._ready_desc:
            while fifo:
                head = fifo[0]
                if head.copies > 1:  # an older copy left by a dispatch replayed from the WAL
                    fifo.popleft()
                    head.copies -= 1
                elif head.state is not P or head.order < 0:  # dispatched or dead since
                    fifo.popleft()
                    head.copies = 0
                else:
                    best = head
                    break
            if best is not None:
                break
        due = self._due
        while due and not self._live(due[0][2], due[0][1]):
            heapq.heappop(due)
        if not due:  # the common case: no delayed job came due
            if best is not None and take:
                self._ready[best.job.priority].popleft()
                best.copies = 0
            return best
        if due and (best is None or (due[0][0], due[0][1]) < (-best.job.priority, best.order)):
            return self._jobs[heapq.heappop(due)[2] if take else due[0][2]]
        if best is not None and take:
            self._ready[best.job.priority].popleft()
            best.copies = 0
        return best


# record type -> its half of ``apply``: plain functions, not bound methods kept on each core,
# so a core holds no reference cycle and a dropped one (every crash in the simulator) is
# freed at once instead of waiting for the cyclic GC
_APPLY: dict[str, Callable[[QueueCore, Record], None]] = {
    "ENQUEUE": QueueCore._apply_enqueue,
    "DISPATCH": QueueCore._apply_dispatch,
    "ACK": QueueCore._apply_ack,
    "FAIL": QueueCore._apply_end,
    "TIMEOUT": QueueCore._apply_end,
    "RETRY": QueueCore._apply_retry,
    "DEAD": QueueCore._apply_dead,
}


def _fresh_enqueues(
    records: list[Any],
    jobs: dict[str, Any],
    completed: dict[str, None],
    dead: dict[str, str],
    ids: list[str] | None = None,
) -> bool:
    """Do the ENQUEUEs of ``records`` (Records or tuples of their fields) name distinct jobs,
    none of them in ``jobs``, ``completed`` or ``dead``?  (C-speed passes: no Python loop.)
    ``ids``: their job ids if the caller has them (a superset answers no less safely)."""
    if ids is None:
        is_enqueue = map(eq, map(_get_type, records), repeat("ENQUEUE"))
        ids = list(compress(map(_get_id, records), is_enqueue))
    fresh = set(ids)
    if len(fresh) != len(ids):
        return False
    for known in (jobs, completed, dead):
        # iterate the smaller side: a set lookup is cheaper than a lookup in a big dict
        if len(known) <= len(fresh):
            if not fresh.isdisjoint(known):
                return False
        elif any(map(known.__contains__, fresh)):
            return False
    return True


def replay(core: QueueCore, records: Iterable[Record]) -> int:
    """Apply ``records`` in order; returns how many changed the core (idempotent)."""
    return core.replay(records)
