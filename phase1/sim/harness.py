"""The SimPy harness: the real core, WAL, snapshots and recovery on a virtual clock.

Owns: ``Workload`` (producers, job mix, service times), ``FaultPlan`` (every fault a named
probability or rate), ``Simulation`` (the shell that drives ``QueueCore`` + ``WalWriter`` on a
``SimDisk`` in SimPy virtual time), ``Ledger`` (Jepsen's terms: ok, lost, duplicated,
unexpected, recovered) and ``RunResult`` (ledger, trace, DataFrames).

Must not know: the queue's rules (``core.py`` decides everything), the file formats
(``wal.py`` / ``snapshot.py``), wall-clock time (only the separate ``wall_s`` columns read
``time.perf_counter``; they never enter the trace or the ledger).

Seed discipline (TigerBeetle's VOPR): one ``random.Random(seed)`` draws the scenario (which
workers are slow or stuck) and hands a derived seed (``rng.getrandbits(64)``) to every part:
each producer, each worker, the crash schedule, the disk's torn writes, fsync latencies.
The same seed gives the identical trace and ledger; a failure names the seed.

The four beats (DESIGN.md), in virtual time.  SimPy is single-threaded, so every callback
is the core's only caller: it calls a command with ``now_s = env.now``, appends
``step.records`` with one ``WalWriter.append``, and performs ``step.effects`` only once the
records are acknowledgeable:

* ``always``: the writer fsyncs inside ``append``; each append is charged one fsync latency,
  and appends' fsyncs run one after another (the runtime holds its lock while fsyncing);
* ``batch``: leader/follower group commit as in ``runtime/durable.py``: when records are
  unsynced and no fsync runs, one starts (after waiting up to ``batch_interval_s`` for
  ``batch_size`` records when that is > 0); when its latency has passed,
  ``fsync_upto()`` + ``mark_durable(target)`` with ``target`` = ``appended_seq`` when it
  started, and every waiter up to ``target`` is released at once;
* ``never``: acknowledged after ``append``; bytes reach the disk only at snapshot rotation.

A crash drops the core, the writer and every worker's current task, crashes the ``SimDisk``
(``process`` keeps unsynced bytes, ``power`` keeps a seeded prefix, maybe torn), runs the
real ``recover`` + ``open_writer`` and charges the virtual downtime from the config's cost
model (``recovery_cost_fixed_s + per_snapshot_job * waiting + per_finished_job * finished +
per_wal_record * records``, the snapshot's jobs split into waiting ones and finished ids).
Clients whose submission was not acknowledged resubmit after recovery (at-least-once).
"""

from __future__ import annotations

import gc
import math
import random
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace
from functools import partial
from heapq import heappop, heappush
from typing import Any, NamedTuple

import simpy

from phase1.config import Config
from phase1.core import (
    Completed,
    DeadLettered,
    LateAck,
    QueueCore,
    Retried,
    SendToWorker,
    Step,
    TimedOut,
)
from phase1.errors import InvariantViolation
from phase1.jobs import Job
from phase1.recovery import open_writer, recover
from phase1.sim.clock import SimClock
from phase1.sim.disk import SimDisk
from phase1.snapshot import oldest_kept_last_seq, write_snapshot
from phase1.wal import WalWriter, drop_segments_upto

__all__ = [
    "JobKind",
    "Workload",
    "FaultPlan",
    "SimConfig",
    "Simulation",
    "Ledger",
    "RunResult",
    "SimulationError",
    "run_simulation",
]

_EMPTY = Step()
_new_tuple = tuple.__new__
_PENDING = Job._field_defaults["status"]
_NO_AUTO_ROTATION = 1 << 62  # as in runtime/durable.py: rotation only at snapshot time
_DISTS = ("exponential", "lognormal", "fixed")
_NV_MAGICCONST = random.NV_MAGICCONST  # type: ignore[attr-defined]


# == inputs ==================================================================================
@dataclass(frozen=True, slots=True)
class JobKind:
    """One kind of job in the mix: how often, how long a worker takes, which priorities."""

    name: str = "default"
    weight: float = 1.0
    service_s_mean: float = 0.002
    service_dist: str = "exponential"  # exponential | lognormal | fixed
    service_sigma: float = 0.5  # lognormal only
    priority_min: int = 0  # drawn uniformly in priority_min..priority_max (0-10)
    priority_max: int = 0


@dataclass(frozen=True, slots=True)
class Workload:
    """What the producers submit, how the workers take it, and how long the work takes.

    ``jobs`` ids are submitted in total (``j000000``...); arrivals are Poisson at
    ``rate_per_s`` split evenly over ``producers``; bursts (Poisson at
    ``burst_rate_per_s``) add ``burst_size`` jobs at one instant, submitted as one batch.

    Batching, as the runtime offers it (both 1 by default, the runtime's defaults):

    * ``submit_batch``: each producer call submits this many jobs at once, as a client
      calling ``Controller.enqueue_jobs`` with a list does (one ENQUEUE step, one
      acknowledgment for all); calls arrive at ``rate_per_s / submit_batch``, so the job
      rate stays ``rate_per_s``;
    * ``prefetch``: tasks a worker may hold, as ``Controller(prefetch=...)``: the
      dispatcher hands a worker up to its free places in one DISPATCH step; the worker
      runs them one after another and its result and the refill go in one step; a queued
      task's deadline runs while it waits, and a queued task whose attempt timed out is
      skipped (its context was cancelled).
    """

    jobs: int = 1000
    rate_per_s: float = 1000.0
    producers: int = 1
    burst_rate_per_s: float = 0.0
    burst_size: int = 0
    mix: tuple[JobKind, ...] = (JobKind(),)
    delayed_probability: float = 0.0  # scheduled_at = now + Exp(delay_s_mean)
    delay_s_mean: float = 0.05
    depends_probability: float = 0.0  # depends_on one of the last depends_window acked ids
    depends_window: int = 32
    sample_interval_s: float = 0.05  # queue-depth sampling
    max_duration_s: float = 3600.0  # run() stops here when no until_s is given
    submit_batch: int = 1  # jobs per producer call (Controller.enqueue_jobs)
    prefetch: int = 1  # tasks a worker may hold (Controller(prefetch=...))

    def __post_init__(self) -> None:
        if self.jobs < 0 or self.rate_per_s <= 0 or self.producers < 1:
            raise ValueError("Workload: jobs >= 0, rate_per_s > 0 and producers >= 1 required")
        if self.submit_batch < 1 or self.prefetch < 1:
            raise ValueError("Workload: submit_batch >= 1 and prefetch >= 1 required")
        if not self.mix or any(k.weight < 0 for k in self.mix):
            raise ValueError("Workload.mix needs at least one JobKind with weight >= 0")
        for k in self.mix:
            if k.service_dist not in _DISTS:
                raise ValueError(f"JobKind {k.name!r}: service_dist must be one of {_DISTS}")
            if not 0 <= k.priority_min <= k.priority_max <= 10:
                raise ValueError(f"JobKind {k.name!r}: priorities must be 0 <= min <= max <= 10")


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Every fault the harness can inject, each a named probability, rate or time.

    Crashes: at ``crash_at_s`` (``(time_s, "process" | "power")`` pairs) and Poisson at
    ``crash_rate_per_s`` inside ``crash_window_s`` (a drawn crash is a power loss with
    ``power_loss_probability``), at most ``max_crashes`` drawn ones.  A power loss tears the
    last kept write with ``torn_write_probability`` and zero-fills the lost part with
    ``zero_fill_probability``.  Workers: ``slow_worker_fraction`` of them take
    ``slow_factor`` times longer; ``stuck_worker_fraction`` of them hang on a job with
    ``stuck_probability`` (never answering; with ``stuck_release="deadline"`` the worker's
    cancellation token frees it at the attempt's deadline, with ``"never"`` only a process
    restart does); each worker dies at ``worker_death_rate_per_s`` (its task is lost) and
    comes back after ``worker_restart_s``; a handler fails with ``job_fail_probability``.
    fsync latency: ``fsync_latency_dist`` with mean ``fsync_latency_s_mean`` (``None``: the
    config's ``fsync_latency_s_mean``).
    """

    crash_at_s: tuple[tuple[float, str], ...] = ()
    crash_rate_per_s: float = 0.0
    power_loss_probability: float = 0.0
    crash_window_s: tuple[float, float] = (0.0, math.inf)
    max_crashes: int = 1_000_000
    torn_write_probability: float = 0.5
    zero_fill_probability: float = 0.25
    slow_worker_fraction: float = 0.0
    slow_factor: float = 10.0
    stuck_worker_fraction: float = 0.0
    stuck_probability: float = 1.0
    stuck_release: str = "deadline"  # deadline | never
    worker_death_rate_per_s: float = 0.0
    worker_restart_s: float = 1.0
    job_fail_probability: float = 0.0
    fsync_latency_dist: str = "lognormal"  # lognormal | exponential | fixed
    fsync_latency_sigma: float = 0.5
    fsync_latency_s_mean: float | None = None

    def __post_init__(self) -> None:
        for t, kind in self.crash_at_s:
            if kind not in ("process", "power") or t < 0:
                raise ValueError(f"FaultPlan.crash_at_s: ({t!r}, {kind!r}) is not (t>=0, kind)")
        if self.fsync_latency_dist not in _DISTS:
            raise ValueError(f"FaultPlan.fsync_latency_dist must be one of {_DISTS}")
        if self.stuck_release not in ("deadline", "never"):
            raise ValueError("FaultPlan.stuck_release must be 'deadline' or 'never'")
        for f in fields(self):
            if f.name.endswith("_probability") or f.name.endswith("_fraction"):
                p = getattr(self, f.name)
                if not 0.0 <= p <= 1.0:
                    raise ValueError(f"FaultPlan.{f.name}={p!r} is not in 0..1")


class SimConfig(NamedTuple):
    """What a scenario returns: the queue's config, the faults and the workload."""

    config: Config
    plan: FaultPlan
    workload: Workload


class SimulationError(AssertionError):
    """A failure inside a simulation run; the message ends with ``reproduce with seed=S``."""


# == per-job bookkeeping =======================================================================
class _Track:
    """What the harness observed about one job id (the ledger's raw material)."""

    __slots__ = (
        "id",
        "kind",
        "job",
        "submit_t",
        "acked_t",
        "enq_seq",
        "enq_epoch",
        "deliveries",
        "finished",
        "done_t",
        "dead_reason",
        "lost_enqueue_at",
        "lost_completion_at",
        "crashed_in_flight",
        "waiting",
    )

    def __init__(self, job: Job, kind: int, submit_t: float) -> None:
        self.id = job.id
        self.kind = kind
        self.job = job
        self.submit_t = submit_t
        self.acked_t = -1.0  # enqueue acknowledged to the producer
        self.enq_seq = 0
        self.enq_epoch = -1
        self.deliveries = 0  # handed to a worker (started executing)
        self.finished = 0  # executions that ran to the end (ack or fail sent)
        self.done_t = -1.0  # completion (ACK) acknowledged
        self.dead_reason: str | None = None
        self.lost_enqueue_at = -1  # crash index after which the acked ENQUEUE was gone
        self.lost_completion_at = -1  # crash index after which an acked ACK was gone
        self.crashed_in_flight = False
        self.waiting = False  # a submission not yet acknowledged


class _Worker:
    """One worker slot.  It holds ``held`` tasks (dispatched and not finished: in delivery,
    queued in ``inbox`` or running), at most ``Workload.prefetch``; ``running``: one of
    them executes (or hangs) now."""

    __slots__ = (
        "wid", "rng", "factor", "stuck", "held", "running", "inbox", "alive", "task", "deaths",
    )  # fmt: skip

    def __init__(self, wid: int, rng: random.Random, factor: float, stuck: bool) -> None:
        self.wid = wid
        self.rng = rng
        self.factor = factor
        self.stuck = stuck
        self.held = 0
        self.running = False
        self.inbox: deque[SendToWorker] = deque()  # delivered, not started
        self.alive = True
        self.task = 0  # bumped to abandon the current task (death, cancellation, crash)
        self.deaths = 0


_NORMAL = simpy.events.NORMAL


def _fire_with(sim_ref: Callable[[], Any]) -> list[Callable[[_Call], None]]:
    """The ``callbacks`` list of a simulation's timed callbacks, for ``Environment.step``
    (``TraceWorld`` steps a run by hand; ``Simulation._loop`` calls ``fn`` itself).  It
    holds the simulation weakly, so the event heap holds no reference back to it."""

    def fire(call: _Call) -> None:
        call.fn(sim_ref(), *call.args)

    return [fire]


_new_call = object.__new__


class _Call:
    """A timed callback as ``Environment.step`` sees an event: ``callbacks`` (run in
    order with the event) and ``_ok`` (True: it never fails).  ``fn`` is the plain
    function of a ``Simulation`` method, called with the simulation first: no bound
    method in the heap, so a finished simulation is not kept alive by a reference cycle
    through its own pending events and is freed as soon as it is dropped."""

    __slots__ = ("callbacks", "fn", "args")
    _ok = True
    callbacks: list[Callable[[_Call], None]] | None
    fn: Callable[..., None]
    args: tuple[Any, ...]


_log = math.log


def _randbelow(rng: random.Random, n: int) -> int:
    """``rng.randrange(n)`` for ``n > 0``: CPython's ``_randbelow_with_getrandbits``
    (the same ``getrandbits`` calls, so the same draws) without randrange's checks."""
    getrandbits = rng.getrandbits
    k = n.bit_length()
    r = getrandbits(k)
    while r >= n:
        r = getrandbits(k)
    return r


def _draw(rng: random.Random, dist: str, mean: float, sigma: float) -> float:
    if mean <= 0:
        return 0.0
    if dist == "exponential":
        return rng.expovariate(1.0 / mean)
    if dist == "lognormal":
        return rng.lognormvariate(math.log(mean) - sigma * sigma / 2.0, sigma)
    return mean


def _drawer(rng: random.Random, dist: str, mean: float, sigma: float) -> Callable[[], float]:
    """``lambda: _draw(rng, dist, mean, sigma)``, with the parameters computed once and
    ``random.Random``'s own formulas inlined (the same arithmetic on the same ``random()``
    values, so the same draws; one call per draw instead of two or three)."""
    if mean <= 0:
        return lambda: 0.0
    if dist == "exponential":
        return _expo(rng, 1.0 / mean)
    if dist == "lognormal":
        return _lognormal(rng, math.log(mean) - sigma * sigma / 2.0, sigma)
    return lambda: mean


def _expo(rng: random.Random, lambd: float) -> Callable[[], float]:
    """``partial(rng.expovariate, lambd)`` (CPython 3.11's formula)."""
    rand = rng.random
    log = math.log

    def draw() -> float:
        return -log(1.0 - rand()) / lambd

    return draw


def _lognormal(rng: random.Random, mu: float, sigma: float) -> Callable[[], float]:
    """``partial(rng.lognormvariate, mu, sigma)``: CPython 3.11's ``normalvariate``
    (Kinderman-Monahan) and ``exp``, in one frame."""
    rand = rng.random
    log = math.log
    exp = math.exp
    magic = _NV_MAGICCONST

    def draw() -> float:
        while True:
            u1 = rand()
            u2 = 1.0 - rand()
            z = magic * (u1 - 0.5) / u2
            zz = z * z / 4.0
            if zz <= -log(u2):
                break
        return exp(mu + z * sigma)

    return draw


# == the simulation ==============================================================================
class Simulation:
    """One seeded run of the real queue modules under a fault plan.

    >>> from phase1.config import Config
    >>> sim = Simulation(Config(), FaultPlan(crash_at_s=((0.2, "power"),)),
    ...                  Workload(jobs=200, rate_per_s=1000), seed=7)
    >>> result = sim.run()
    >>> result.ledger["lost"], result.ledger["acknowledged"]
    (0, 200)
    """

    def __init__(
        self,
        config: Config,
        plan: FaultPlan | None = None,
        workload: Workload | None = None,
        seed: int = 0,
        debug_check: bool = False,
    ) -> None:
        self.config = config
        self.plan = plan if plan is not None else FaultPlan()
        self.workload = workload if workload is not None else Workload()
        self.seed = seed
        self.debug_check = debug_check
        self.env = simpy.Environment()
        # _at pushes onto the environment's heap directly, as Environment.schedule does
        self._queue: list[Any] = self.env._queue
        self._eid = self.env._eid
        self._fire = _fire_with(weakref.ref(self))
        self.clock = SimClock(self.env)
        self.disk = SimDisk(log_ops=False)  # nothing here reads op_log: the WAL calls skip it
        self._ran = False

        # -- the seed discipline: draw every part's seed in a fixed order -----------------
        rng = random.Random(seed)
        wl, plan_ = self.workload, self.plan
        self._producer_rngs = [random.Random(rng.getrandbits(64)) for _ in range(wl.producers)]
        self._burst_rng = random.Random(rng.getrandbits(64))
        self._mix_rng = random.Random(rng.getrandbits(64))
        n_workers = config.worker_count
        worker_seeds = [rng.getrandbits(64) for _ in range(n_workers)]
        self._crash_rng = random.Random(rng.getrandbits(64))
        self._disk_rng = random.Random(rng.getrandbits(64))
        self._fsync_rng = random.Random(rng.getrandbits(64))
        self._death_rng = random.Random(rng.getrandbits(64))
        n_slow = round(plan_.slow_worker_fraction * n_workers)
        n_stuck = round(plan_.stuck_worker_fraction * n_workers)
        order = list(range(n_workers))
        rng.shuffle(order)
        stuck_ids = set(order[:n_stuck])
        slow_ids = set(order[n_stuck : n_stuck + n_slow])
        self.workers = [
            _Worker(
                w,
                random.Random(worker_seeds[w]),
                plan_.slow_factor if w in slow_ids else 1.0,
                w in stuck_ids,
            )
            for w in range(n_workers)
        ]
        self.slow_workers = sorted(slow_ids)
        # per worker, per kind: _draw(w.rng, dist, mean, sigma) with its parameters worked out
        # once (the same arithmetic, so the same draws)
        self._service: list[list[Callable[[], float]]] = [
            [_drawer(w.rng, k.service_dist, k.service_s_mean, k.service_sigma) for k in wl.mix]
            for w in self.workers
        ]
        self._rate_each_s = wl.rate_per_s / wl.producers
        # rng.expovariate(calls per second) per producer (the same draws)
        self._gap = [_expo(r, self._rate_each_s / wl.submit_batch) for r in self._producer_rngs]
        self._prefetch = wl.prefetch
        self._cancelled: set[tuple[str, int]] = set()  # timed-out attempts (prefetch > 1)
        self.stuck_workers = sorted(stuck_ids)

        self._never = config.commit_policy == "never"
        self._gather_s = config.batch_interval_s  # batch: a leader waits this long first
        self._fsync_mean = (
            plan_.fsync_latency_s_mean
            if plan_.fsync_latency_s_mean is not None
            else config.fsync_latency_s_mean
        )
        # _draw(self._fsync_rng, dist, mean, sigma) with its parameters worked out once
        # (the same arithmetic, so the same draws): one call per fsync
        self._fsync_latency = _drawer(
            self._fsync_rng, plan_.fsync_latency_dist, self._fsync_mean, plan_.fsync_latency_sigma
        )
        # per kind: (name, priority_min, width of the priority range or 0, its bit length)
        self._kinds = [
            (
                k.name,
                k.priority_min,
                0 if k.priority_min == k.priority_max else k.priority_max - k.priority_min + 1,
                (k.priority_max - k.priority_min + 1).bit_length(),
            )
            for k in wl.mix
        ]
        # rng.expovariate(1.0 / delay_s_mean)'s rate (None: 0, which raises there, as before)
        self._delay_lambd = 1.0 / wl.delay_s_mean if wl.delay_s_mean else None
        weights = [k.weight for k in wl.mix]
        total = sum(weights) or 1.0
        acc = 0.0
        self._mix_cum: list[float] = []
        for w in weights:
            acc += w / total
            self._mix_cum.append(acc)

        # -- state -----------------------------------------------------------------------------
        self.trace_events: list[tuple[Any, ...]] = []
        self._tr = self.trace_events.append
        self.tracks: dict[str, _Track] = {}
        self.completions: list[tuple[float, str, float]] = []  # (t, id, latency_s)
        self.samples: list[tuple[float, int, int, int, int, bool]] = []
        self.crashes: list[dict[str, Any]] = []
        self.recoveries: list[dict[str, Any]] = []
        self.wall_recovery_s: list[float] = []  # kept apart: never compared for determinism
        self.counters = {
            "fsyncs": 0,
            "records": 0,
            "snapshots": 0,
            "late_acks": 0,
            "timeouts": 0,
            "retries": 0,
            "dead": 0,
            "worker_deaths": 0,
            "stuck_hangs": 0,
            "handler_failures": 0,
            "resubmitted": 0,
        }
        self._next_job = 0
        self._producers_left = wl.producers
        self._unacked: dict[str, _Track] = {}  # submissions waiting for acknowledgment
        # the crash-time ledger check's candidates, kept as sets so a crash compares them
        # with the recovered core in C instead of walking every track in Python:
        # _done_open: ids whose completion was acknowledged and not yet lost (done_t >= 0,
        # lost_completion_at < 0); _acked_open: the other ids acknowledged and not yet lost
        # (acked_t >= 0, lost_enqueue_at < 0, not in _done_open), so it stays small
        self._acked_open: set[str] = set()
        self._done_open: set[str] = set()
        self._acked_ids: deque[str] = deque(maxlen=max(1, wl.depends_window))
        self._epoch = 0  # recoveries so far
        self._gen = 0  # bumped by every crash: stale callbacks compare and return
        self._up = False
        self._idle: deque[_Worker] = deque()
        self._maybe_ready = True
        self._waiters: deque[tuple[int, int, Any]] = deque()  # (seq, kind, payload)
        self._syncing = False
        self._leader_waiting = False
        self._leader_token = 0
        self._sync_free_at = 0.0  # always: when the previous append's fsync ends
        self._durable_at = 0.0  # virtual time durable_seq last advanced
        self._snapshot_due = False
        self._snapshot_seqs: list[int] = []  # last_seq of the copies written, oldest first
        self._drained = False
        self._stop: simpy.Event | None = None
        self.core: QueueCore | None = None
        self.writer: WalWriter | None = None

    # -- public --------------------------------------------------------------------------------
    def run(self, until_s: float | None = None) -> RunResult:
        """Run until every submitted job is finished (or ``until_s``, or the workload's
        ``max_duration_s``); returns the ``RunResult``.  A failure raises with the seed."""
        if self._ran:
            raise RuntimeError("a Simulation runs once; build a new one with the same seed")
        self._ran = True
        wall0 = time.perf_counter()
        limit = until_s if until_s is not None else self.workload.max_duration_s
        # The cyclic GC is paused for the run, as recover() pauses it: a run keeps every
        # track, trace event and completion alive to the end, so collections only walk
        # them again (~1.6% of a 20,000-job crash-storm run's instructions).  At the end
        # the objects it made are moved to the oldest generation (freeze + unfreeze, O(1))
        # instead of being walked by the first young collection after it: that pass over
        # a 20,000-job run's ~210,000 live objects, cache-cold, cost about 10% of the
        # run's wall time.  A run leaves almost no cyclic garbage for later: a dropped
        # core or simulation holds no reference cycle and is freed by reference counting
        # (only its SimPy environment, a few dozen objects, waits for a full collection).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            self._start()
            stop = self._stop = self.env.event()
            self.env.timeout(limit).callbacks.append(partial(_succeed, stop))
            self._loop(stop)
        except InvariantViolation as exc:
            raise InvariantViolation(
                f"{exc} (t={self.env.now:.6f}s); reproduce with seed={self.seed}"
            ) from exc
        except Exception as exc:
            raise SimulationError(
                f"{type(exc).__name__}: {exc} (t={self.env.now:.6f}s); "
                f"reproduce with seed={self.seed}"
            ) from exc
        finally:
            if gc_was_enabled:
                if gc.get_freeze_count() == 0:  # never unfreeze what the caller froze
                    gc.freeze()
                    gc.unfreeze()
                gc.enable()
        return RunResult(self, time.perf_counter() - wall0)

    # -- start-up ---------------------------------------------------------------------------------
    def _start(self) -> None:
        self.core, report = recover(self.disk, self.config, now_s=0.0, check=self.debug_check)
        self.writer = open_writer(
            self.disk, self.config, report, segment_bytes=_NO_AUTO_ROTATION, preallocate_bytes=0
        )
        self._up = True
        self._idle.extend(self.workers)
        per = self.workload.jobs // self.workload.producers
        extra = self.workload.jobs - per * self.workload.producers
        for p in range(len(self._producer_rngs)):
            quota = per + (1 if p < extra else 0)
            self._at(self._gap[p](), self._arrive, p, quota)
        wl = self.workload
        if wl.burst_rate_per_s > 0 and wl.burst_size > 0:
            self._at(self._burst_rng.expovariate(wl.burst_rate_per_s), self._burst)
        for t, kind in sorted(self.plan.crash_at_s):
            self._at(t, self._crash, kind, "planned")
        if self.plan.crash_rate_per_s > 0:
            self._schedule_rate_crash(0.0)
        if self.plan.worker_death_rate_per_s > 0:
            for w in self.workers:
                self._schedule_death(w)
        self._at(self.config.timeout_check_interval_s, self._tick_loop, self._gen)
        self._at(self.config.snapshot_interval_s, self._snapshot_loop, self._gen)
        self._at(0.0, self._sample_loop)

    def _loop(self, stop: simpy.Event) -> None:
        """``env.run(until=stop)``: the same events in the same order (the environment's
        heap), with the harness's timed callbacks (``_Call``) called directly instead of
        through ``Environment.step`` and ``_fire``; other events as ``step`` does them."""
        env = self.env
        queue: list[Any] = env._queue
        call_type = _Call
        if stop.callbacks is None:
            return
        # Until ``stop`` has been processed: only this loop's SimPy branch processes an
        # event, so ``stop`` is looked at only there, not after every timed callback.
        while True:
            try:
                env._now, _, _, event = heappop(queue)
            except IndexError:
                raise RuntimeError(
                    f'No scheduled events left but "until" event was not triggered: {stop}'
                ) from None
            if type(event) is call_type:
                event.fn(self, *event.args)  # its callbacks list is never read again
                continue
            callbacks, event.callbacks = event.callbacks, None
            for callback in callbacks:
                callback(event)
            if not event._ok and not hasattr(event, "_defused"):
                exc = type(event._value)(*event._value.args)
                exc.__cause__ = event._value
                raise exc
            if stop.callbacks is None:
                return

    def _rate_each(self) -> float:
        return self._rate_each_s

    def _at(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        # What ``simpy.Timeout(env, delay)`` + a callback did (same heap entry: time,
        # NORMAL priority, the next event id), without building an Event and a closure.
        # ``_Call(fn, args)`` with its slots set here: no ``__init__`` frame per event.
        if delay < 0:
            raise ValueError(f"Negative delay {delay}")
        call = _new_call(_Call)
        call.callbacks = self._fire  # one shared list: Environment.step only reads it
        call.fn = fn.__func__  # type: ignore[attr-defined]  # always a method of self
        call.args = args
        heappush(self._queue, (self.env._now + delay, _NORMAL, next(self._eid), call))

    def _t(self, *event: Any) -> None:
        self.trace_events.append((self.env._now, *event))

    # -- producers ----------------------------------------------------------------------------------
    def _new_job(self, rng: random.Random) -> _Track:
        wl = self.workload
        now = self.env._now
        n = self._next_job
        self._next_job = n + 1
        job_id = "j%06d" % n  # noqa: UP031  # f"j{n:06d}" at 60% of its cost
        kind = 0
        mix_cum = self._mix_cum
        if len(mix_cum) > 1:
            r = self._mix_rng.random()
            last = len(mix_cum) - 1
            while kind < last and r >= mix_cum[kind]:
                kind += 1
        name, priority, width, bits = self._kinds[kind]
        if width:
            # rng.randint(priority_min, priority_max): randrange's _randbelow, inline
            # (CPython's formula, the same getrandbits calls, so the same draws)
            getrandbits = rng.getrandbits
            x = getrandbits(bits)
            while x >= width:
                x = getrandbits(bits)
            priority += x
        scheduled = None
        if wl.delayed_probability and rng.random() < wl.delayed_probability:
            # rng.expovariate(1.0 / delay_s_mean), inline (the same arithmetic)
            lambd = self._delay_lambd
            if lambd is None:
                scheduled = now + rng.expovariate(1.0 / wl.delay_s_mean)
            else:
                scheduled = now + -_log(1.0 - rng.random()) / lambd
        deps: tuple[str, ...] = ()
        acked_ids = self._acked_ids
        if wl.depends_probability and acked_ids and rng.random() < wl.depends_probability:
            deps = (acked_ids[_randbelow(rng, len(acked_ids))],)
        # Job(job_id, payload=..., priority=..., scheduled_at=..., depends_on=...), positionally
        job = _new_tuple(Job, (job_id, {"kind": name}, 0, _PENDING, priority, scheduled, deps))
        track = _Track(job, kind, now)
        self.tracks[job_id] = track
        return track

    def _arrive(self, p: int, quota: int) -> None:
        """Producer ``p``'s next call: ``submit_batch`` jobs (fewer for the last call)."""
        rng = self._producer_rngs[p]
        n = self.workload.submit_batch
        if n == 1:
            tracks = [self._new_job(rng)]
        else:
            n = min(n, quota)
            tracks = [self._new_job(rng) for _ in range(n)]
        self._submit(tracks, new=True)
        if quota > n:
            self._at(self._gap[p](), self._arrive, p, quota - n)
        else:
            self._producers_left -= 1
            self._check_drained()

    def _burst(self) -> None:
        if self._producers_left <= 0:
            return
        rng = self._burst_rng
        tracks = [self._new_job(rng) for _ in range(self.workload.burst_size)]
        self._submit(tracks, new=True)
        self._at(rng.expovariate(self.workload.burst_rate_per_s), self._burst)

    def _submit(self, tracks: list[_Track], new: bool = False) -> None:
        """Submit ``tracks``; ``new``: first submissions, whose ids no core can know yet."""
        now = self.env._now
        for tr in tracks:
            tr.waiting = True
            self._unacked[tr.id] = tr
            self._tr((now, "submit", tr.id))
        if not self._up:
            return  # the controller is down: resubmitted when it is up again
        core = self.core
        assert core is not None
        if new:
            fresh = tracks
        else:
            fresh = []
            for tr in tracks:
                if core.knows(tr.id):  # an at-least-once retry of a job that survived
                    self._acknowledge(tr, -1)
                else:
                    fresh.append(tr)
            if not fresh:
                return
        step = core.enqueue([tr.job for tr in fresh], now)
        epoch = self._epoch
        by_id = self.tracks
        for rec in step.records:
            if rec[1] == "ENQUEUE":  # rec.type (indexed: no field descriptor per record)
                tr = by_id[rec[2]]  # rec.job_id
                tr.enq_seq = rec[0]  # rec.seq
                tr.enq_epoch = epoch
        for tr in fresh:
            if tr.job.scheduled_at is not None:
                self._at(max(0.0, tr.job.scheduled_at - now), self._wake, self._gen)
        self._maybe_ready = True
        # one append for the ENQUEUEs and the DISPATCHes they allow (same fsync either way)
        self._pump(step, fresh)

    def _acknowledge(self, tr: _Track, seq: int) -> None:
        if not tr.waiting:
            return
        tr.waiting = False
        self._unacked.pop(tr.id, None)
        if tr.acked_t < 0:
            tr.acked_t = self.env._now
            if tr.lost_enqueue_at < 0 and not (tr.done_t >= 0 and tr.lost_completion_at < 0):
                self._acked_open.add(tr.id)
        self._acked_ids.append(tr.id)
        self._tr((self.env._now, "acked", tr.id, seq))

    # -- the durable path ---------------------------------------------------------------------------
    def _after_command(self, step: Step) -> None:
        if self.debug_check:
            assert self.core is not None
            self.core.check()

    def _append(self, records: Any) -> int:
        """Append ``step.records`` (one disk append); returns the last seq.  Starts an fsync
        (``batch``) or charges its latency (``always``) as the policy says."""
        writer = self.writer
        assert writer is not None
        if not records:
            return writer.appended_seq
        policy = writer.policy
        if policy == "always":
            before = self.disk.fsync_count + self.disk.fsync_dir_count
            seq = writer.append(records, self.env._now)
            n = self.disk.fsync_count + self.disk.fsync_dir_count - before
            self.counters["records"] += len(records)
            start = max(self.env._now, self._sync_free_at)
            done = start + sum(self._fsync_latency() for _ in range(max(n, 1)))
            self._sync_free_at = done
            self.counters["fsyncs"] += 1
            self._at(done - self.env._now, self._always_durable, seq, self._gen)
            return seq
        seq = writer.append(records, self.env._now)
        self.counters["records"] += len(records)
        if policy == "batch" and not self._syncing:
            if self._leader_waiting:
                if writer.unsynced >= self.config.batch_size:
                    self._start_fsync()  # the waiting leader has its batch_size records
            elif self._gather_s > 0:
                self._lead()
            else:
                # _lead() -> _start_fsync() without a batch to wait for, inline: records
                # were just appended, so there is something to sync
                self._syncing = True
                self._at(self._fsync_latency(), self._fsync_done, seq, self._gen)
        return seq

    def _lead(self) -> None:
        """Become the fsync leader (``batch``); wait for a batch first if configured."""
        writer = self.writer
        assert writer is not None
        interval = self._gather_s
        if interval > 0 and writer.unsynced < self.config.batch_size:
            self._leader_waiting = True
            self._leader_token += 1
            self._at(interval, self._leader_timeout, self._gen, self._leader_token)
            return
        self._start_fsync()

    def _leader_timeout(self, gen: int, token: int) -> None:
        if gen != self._gen or token != self._leader_token or not self._leader_waiting:
            return
        self._start_fsync()

    def _start_fsync(self) -> None:
        writer = self.writer
        assert writer is not None
        self._leader_waiting = False
        if writer.unsynced <= 0:
            return
        self._syncing = True
        target = writer.appended_seq
        self._at(self._fsync_latency(), self._fsync_done, target, self._gen)

    def _fsync_done(self, target: int, gen: int) -> None:
        if gen != self._gen:
            return  # the process died mid-fsync: nothing became durable by it
        writer = self.writer
        assert writer is not None
        writer.fsync_upto()
        writer.mark_durable(target)
        now = self.env._now
        self._durable_at = now
        self._syncing = False
        self.counters["fsyncs"] += 1
        self._tr((now, "fsync", target))
        waiters = self._waiters
        while waiters and waiters[0][0] <= target:  # _release(target), inline
            seq, kind, payload = waiters.popleft()
            if kind == 0:
                tracks, first = payload
                for tr in tracks:
                    self._acknowledge(tr, first)
            else:
                self._perform(payload)
        if self._snapshot_due:
            self._snapshot()
        elif writer.unsynced > 0 and not self._syncing and not self._leader_waiting:
            if self._gather_s > 0:
                self._lead()
            else:
                # _lead() -> _start_fsync() with no batch to wait for, inline (as _append)
                self._syncing = True
                self._at(self._fsync_latency(), self._fsync_done, writer.appended_seq, gen)

    def _always_durable(self, seq: int, gen: int) -> None:
        if gen != self._gen:
            return
        self._durable_at = self.env._now
        self._release(seq)

    def _wait(self, seq: int, kind: int, payload: Any) -> None:
        """Run ``payload`` (kind 0: acknowledge submissions, 1: perform effects) once record
        ``seq`` is acknowledgeable."""
        writer = self.writer
        assert writer is not None
        if self._never and seq <= writer.ack_seq:
            self._deliver(kind, payload, seq)
        else:
            self._waiters.append((seq, kind, payload))

    def _release(self, upto: int) -> None:
        waiters = self._waiters
        while waiters and waiters[0][0] <= upto:
            seq, kind, payload = waiters.popleft()
            self._deliver(kind, payload, seq)

    def _deliver(self, kind: int, payload: Any, seq: int) -> None:
        if kind == 0:
            tracks, first = payload
            for tr in tracks:
                self._acknowledge(tr, first)
        else:
            self._perform(payload)

    def _effects_after(self, seq: int, step: Step) -> None:
        if step.effects:
            self._wait(seq, 1, step.effects)

    # -- effects -----------------------------------------------------------------------------------
    def _perform(self, effects: Iterable[Any]) -> None:
        now = self.env._now
        tracks = self.tracks
        for eff in effects:
            cls = type(eff)
            if cls is SendToWorker:
                self._start_task(eff)
            elif cls is Completed:
                job_id = eff.job_id
                tr = tracks.get(job_id)
                if tr is not None and tr.done_t < 0:
                    tr.done_t = now
                    if tr.lost_completion_at < 0:
                        self._done_open.add(job_id)
                        self._acked_open.discard(job_id)
                    self.completions.append((now, job_id, now - tr.submit_t))
                self._tr((now, "completed", job_id, eff.attempt))
            elif cls is LateAck:
                self.counters["late_acks"] += 1
                self._t("late", eff.job_id, eff.attempt, eff.kind)
            elif cls is TimedOut:
                self.counters["timeouts"] += 1
                self._t("timeout", eff.job_id, eff.attempt)
                if self._prefetch > 1:  # a queued task of this attempt is cancelled
                    self._cancelled.add((eff.job_id, eff.attempt))
            elif cls is Retried:
                self.counters["retries"] += 1
                self._t("retry", eff.job_id, eff.attempt, eff.cause)
            elif cls is DeadLettered:
                self.counters["dead"] += 1
                tr = self.tracks.get(eff.job_id)
                if tr is not None:
                    tr.dead_reason = eff.reason
                self._t("dead", eff.job_id, eff.reason)
        if self._producers_left <= 0:  # _check_drained()'s first test, inline
            self._check_drained()

    # -- dispatch and workers -----------------------------------------------------------------------
    def _pump(self, extra: Step | None = None, submitted: list[_Track] | None = None) -> None:
        """Hand ready jobs to workers with free places (each worker all it can take, in
        one ``core.dispatch``): one append for every DISPATCH plus ``extra`` (a worker's
        ACK/FAIL that came with its request for the next job, or the ENQUEUEs of
        ``submitted``, acknowledged to their producers once durable)."""
        if not self._up:
            return
        records: tuple[Any, ...] | list[Any] = extra.records if extra is not None else ()
        effects: tuple[Any, ...] | list[Any] = extra.effects if extra is not None else ()
        idle = self._idle
        # Probe only when something may have become ready (an empty dispatch is not free).
        # core.has_ready() is a pure query too, but asking it first would scan the ready
        # FIFOs twice whenever a job is there, the common case.
        if idle and self._maybe_ready:
            core = self.core
            assert core is not None
            now = self.env._now
            prefetch = self._prefetch
            while idle:
                w = idle[0]
                if not w.alive:
                    idle.popleft()
                    continue
                free = prefetch - w.held
                if free <= 0:  # defensive: a full worker takes nothing
                    idle.popleft()
                    continue
                d = core.dispatch(now, w.wid, free)
                got = len(d.records)  # DISPATCH records only: one per job handed out
                if not got:
                    self._maybe_ready = False
                    break
                w.held += got
                if got == free:
                    idle.popleft()  # full
                records = [*records, *d.records]
                effects = [*effects, *d.effects]
                if got < free:
                    self._maybe_ready = False  # dispatch ran out of ready jobs
                    break
        if not records:
            if effects:
                self._perform(effects)
            return
        if self.debug_check:
            assert self.core is not None
            self.core.check()
        seq = self._append(records)
        if self._never:
            if submitted:
                self._wait(seq, 0, (submitted, seq))
            if effects:
                self._wait(seq, 1, effects)
        else:  # _wait(): always and batch acknowledge once an fsync covers seq
            if submitted:
                self._waiters.append((seq, 0, (submitted, seq)))
            if effects:
                self._waiters.append((seq, 1, effects))

    def _wake(self, gen: int) -> None:
        if gen == self._gen:
            self._maybe_ready = True
            self._pump()

    def _start_task(self, send: SendToWorker) -> None:
        """Deliver ``send`` (its DISPATCH is durable): the worker runs it now, or queues it
        behind the task it runs (``prefetch`` > 1)."""
        w = self.workers[send.worker_id]
        job_id = send.job.id
        tr = self.tracks.get(job_id)
        if tr is not None:
            tr.deliveries += 1
        self._tr((self.env._now, "deliver", job_id, w.wid, send.attempt))
        if not w.alive:
            return  # died between dispatch and delivery: the deadline rescues the job
        if w.running or w.inbox:
            w.inbox.append(send)
            return
        self._run_task(w, send, tr)

    def _next_task(self, w: _Worker) -> None:
        """The worker is free: start its oldest queued task, skipping those whose attempt
        timed out while they waited (cancelled: no result; the place is free again)."""
        inbox = w.inbox
        cancelled = self._cancelled
        while inbox and not w.running:
            send = inbox.popleft()
            key = (send.job.id, send.attempt)
            if key in cancelled:
                cancelled.discard(key)
                self._t("cancelled", send.job.id, w.wid, send.attempt)
                self._release_place(w)
                continue
            self._run_task(w, send, self.tracks.get(send.job.id))

    def _release_place(self, w: _Worker) -> None:
        """One of ``w``'s tasks is over: its place takes a job again (and ``w`` is back
        among the dispatcher's candidates if it was full)."""
        w.held -= 1
        if w.held == self._prefetch - 1:
            self._idle.append(w)
        self._maybe_ready = True

    def _run_task(self, w: _Worker, send: SendToWorker, tr: _Track | None) -> None:
        w.running = True
        w.task += 1
        task = w.task
        rng = w.rng
        plan = self.plan
        if w.stuck and rng.random() < plan.stuck_probability:
            self.counters["stuck_hangs"] += 1
            self._t("hang", send.job.id, w.wid)
            if plan.stuck_release == "deadline":
                delay = max(0.0, send.deadline_s - self.env._now)
                self._at(delay, self._abandon, w, task, self._gen)
            return
        service = self._service[w.wid][tr.kind if tr is not None else 0]()
        ok = not (plan.job_fail_probability and rng.random() < plan.job_fail_probability)
        self._at(service * w.factor, self._task_done, w, task, self._gen, send, ok)

    def _abandon(self, w: _Worker, task: int, gen: int) -> None:
        if gen != self._gen or task != w.task or not w.alive:
            return
        w.task += 1
        self._free(w)

    def _free(self, w: _Worker) -> None:
        w.running = False
        w.held -= 1
        if w.held == self._prefetch - 1:
            self._idle.append(w)
        self._next_task(w)
        self._pump()

    def _task_done(self, w: _Worker, task: int, gen: int, send: SendToWorker, ok: bool) -> None:
        if gen != self._gen or task != w.task or not w.alive:
            return  # the process crashed or the worker died: the result is gone
        core = self.core
        assert core is not None
        now = self.env._now
        job_id = send.job.id
        tr = self.tracks.get(job_id)
        if tr is not None:
            tr.finished += 1
        self._tr((now, "done", job_id, w.wid, send.attempt, ok))
        if ok:
            step = core.ack(job_id, send.attempt, now)
        else:
            self.counters["handler_failures"] += 1
            step = core.fail(job_id, send.attempt, now, "handler failed")
        w.running = False
        w.held -= 1  # _release_place(w), inline
        if w.held == self._prefetch - 1:
            self._idle.append(w)
        self._maybe_ready = True
        if w.inbox:
            self._next_task(w)  # the worker goes on at once; its result is the pump's
        self._pump(step)

    def _schedule_death(self, w: _Worker) -> None:
        delay = self._death_rng.expovariate(self.plan.worker_death_rate_per_s)
        self._at(delay, self._die, w)

    def _die(self, w: _Worker) -> None:
        if self._drained:
            return
        if w.alive:
            w.alive = False
            w.deaths += 1
            w.task += 1  # the current task is lost; its deadline rescues the job
            w.inbox.clear()  # so are the queued ones (prefetch > 1)
            if w in self._idle:
                self._idle.remove(w)
            self.counters["worker_deaths"] += 1
            self._t("worker_died", w.wid)
            self._at(self.plan.worker_restart_s, self._revive, w, w.deaths)
        self._schedule_death(w)

    def _revive(self, w: _Worker, deaths: int) -> None:
        if w.alive or w.deaths != deaths:
            return
        w.alive = True
        w.held = 0
        w.running = False
        self._t("worker_restarted", w.wid)
        if self._up:
            self._idle.append(w)
            self._pump()

    # -- periodic work ---------------------------------------------------------------------------------
    def _tick_loop(self, gen: int) -> None:
        if gen != self._gen:
            return
        if self._up:
            core = self.core
            assert core is not None
            step = core.tick(self.env.now)
            self._maybe_ready = True
            if step.records:
                self._after_command(step)
                seq = self._append(step.records)
                self._effects_after(seq, step)
            self._pump()
            self._check_drained(full=True)
        self._at(self.config.timeout_check_interval_s, self._tick_loop, gen)

    def _snapshot_loop(self, gen: int) -> None:
        if gen != self._gen:
            return
        if self._up:
            if self._syncing or self._leader_waiting:
                self._snapshot_due = True  # as the runtime: wait for the running fsync
            else:
                self._snapshot()
        self._at(self.config.snapshot_interval_s, self._snapshot_loop, gen)

    def _snapshot(self) -> None:
        """export + rotate now (the runtime does both under its lock, so no fsync runs
        meanwhile); the file is written when its virtual cost has passed."""
        self._snapshot_due = False
        self._leader_waiting = False
        core, writer = self.core, self.writer
        assert core is not None and writer is not None
        state = core.export()
        before = self.disk.fsync_count + self.disk.fsync_dir_count
        writer.rotate()
        writer.mark_durable(writer.appended_seq)
        n = self.disk.fsync_count + self.disk.fsync_dir_count - before
        rotate_s = sum(self._fsync_latency() for _ in range(n))
        if writer.policy == "always":  # after the fsyncs already queued
            start = max(self.env.now, self._sync_free_at)
            self._sync_free_at = start + rotate_s
            rotate_s = self._sync_free_at - self.env.now
        finished = len(state.completed) + len(state.dead)
        jobs = len(state.pending) + len(state.in_flight) + len(state.failed) + finished
        # the file's write + fsync + folder fsync, and serialising every job: a whole job
        # for each waiting one, an id for each finished one (the recovery rates, read back)
        cfg = self.config
        write_s = (
            rotate_s
            + 2 * self._fsync_mean
            + cfg.recovery_cost_per_snapshot_job_s * (jobs - finished)
            + cfg.recovery_cost_per_finished_job_s * finished
        )
        self._syncing = True  # the lock is held while rotating: no fsync leader meanwhile
        self._at(rotate_s, self._rotated, writer.appended_seq, self._gen)
        self._at(write_s, self._write_snapshot, state, jobs, self._gen)
        self._t("snapshot_start", state.last_seq, jobs)

    def _rotated(self, seq: int, gen: int) -> None:
        if gen != self._gen:
            return
        self._syncing = False
        self._durable_at = self.env.now
        self._release(seq)
        writer = self.writer
        assert writer is not None
        if writer.policy == "batch" and writer.unsynced > 0 and not self._leader_waiting:
            self._lead()

    def _write_snapshot(self, state: Any, jobs: int, gen: int) -> None:
        if gen != self._gen:
            return  # crashed while writing: the old snapshot and every segment remain
        cfg = self.config
        write_snapshot(self.disk, cfg.snapshot_path, state, keep=cfg.snapshots_kept)
        # write_snapshot returned, so this copy is durable; the seqs of the copies written
        # since start-up say which one is oldest without decoding them all again
        # (oldest_kept_last_seq reads every kept file: ~10% of a crash-storm run).
        kept = self._snapshot_seqs
        kept.append(state.last_seq)
        del kept[: -cfg.snapshots_kept]
        if len(kept) == cfg.snapshots_kept:
            oldest: int | None = kept[0]
        else:
            oldest = oldest_kept_last_seq(self.disk, cfg.snapshot_path, cfg.snapshots_kept)
        if oldest is not None:
            drop_segments_upto(self.disk, cfg.wal_path, oldest)
        self.disk.op_log.clear()  # bounded memory: the explorer, not the harness, needs it
        self.counters["snapshots"] += 1
        self._t("snapshot", state.last_seq, jobs)

    def _sample_loop(self) -> None:
        if self._stop is not None and self._stop.triggered:
            return
        core = self.core
        if core is not None and self._up:
            c = core.counts()
            self.samples.append(
                (self.env.now, c["pending"], c["in_flight"], c["completed"], c["dead"], True)
            )
        else:
            last = self.samples[-1] if self.samples else (0.0, 0, 0, 0, 0, False)
            self.samples.append((self.env.now, last[1], last[2], last[3], last[4], False))
        self._at(self.workload.sample_interval_s, self._sample_loop)

    # -- crashes ---------------------------------------------------------------------------------------
    def _schedule_rate_crash(self, now: float) -> None:
        plan = self.plan
        if len([c for c in self.crashes if c["cause"] == "rate"]) >= plan.max_crashes:
            return
        start, end = plan.crash_window_s
        t = max(now, start) + self._crash_rng.expovariate(plan.crash_rate_per_s)
        kind = "power" if self._crash_rng.random() < plan.power_loss_probability else "process"
        if t < end:
            self._at(t - now, self._rate_crash, kind)

    def _rate_crash(self, kind: str) -> None:
        if self._drained:
            return
        self._crash(kind, "rate")
        self._schedule_rate_crash(self.env.now)

    def _crash(self, kind: str, cause: str) -> None:
        if self._drained:
            return
        now = self.env.now
        core, writer = self.core, self.writer
        assert core is not None and writer is not None
        index = len(self.crashes)
        in_flight = list(core.in_flight()) if self._up else []
        for job_id in in_flight:
            tr = self.tracks.get(job_id)
            if tr is not None:
                tr.crashed_in_flight = True
        durable_seq = writer.durable_seq
        info = {
            "crash": index,
            "t": now,
            "kind": kind,
            "cause": cause,
            "epoch": self._epoch,
            "was_up": self._up,
            "appended_seq": writer.appended_seq,
            "durable_seq": durable_seq,
            "ack_seq": writer.ack_seq,
            "unsynced_records": writer.appended_seq - durable_seq,
            "loss_window_s": now - self._durable_at,
            "in_flight": len(in_flight),
            "unacked_submissions": len(self._unacked),
        }
        self.crashes.append(info)
        self._t("crash", index, kind, writer.appended_seq, durable_seq)
        # -- the process dies: core, writer, fsync, leader, waiters and every task -----------
        self._gen += 1
        self._up = False
        self._syncing = False
        self._leader_waiting = False
        self._snapshot_due = False
        self._waiters.clear()
        self._idle.clear()
        self._cancelled.clear()
        for w in self.workers:
            w.task += 1
            w.held = 0
            w.running = False
            w.inbox.clear()
            w.alive = True  # worker threads restart with the process
        self.core = None
        self.writer = None
        if kind == "power":
            crng = random.Random(self._disk_rng.getrandbits(64))
            torn = crng.random() < self.plan.torn_write_probability
            zero = crng.random() < self.plan.zero_fill_probability
            self.disk.crash("power", crng, torn=torn, zero_fill=zero)
        else:
            self.disk.crash("process")
        # -- the real recovery, on what the disk kept ------------------------------------------
        w0 = time.perf_counter()
        core, report = recover(self.disk, self.config, now_s=now, check=self.debug_check)
        writer = open_writer(
            self.disk, self.config, report, segment_bytes=_NO_AUTO_ROTATION, preallocate_bytes=0
        )
        wall = time.perf_counter() - w0
        self.core, self.writer = core, writer
        self._durable_at = now
        cfg = self.config
        downtime = (
            cfg.recovery_cost_fixed_s
            + cfg.recovery_cost_per_snapshot_job_s
            * (report.snapshot_jobs - report.snapshot_finished)
            + cfg.recovery_cost_per_finished_job_s * report.snapshot_finished
            + cfg.recovery_cost_per_wal_record_s * report.records_read
        )
        self._epoch += 1
        # -- the ledger's check: what was acknowledged must still be there ----------------------
        # Per track: an acknowledged enqueue (not lost before) the core does not know is a
        # lost enqueue; else an acknowledged completion (not lost before) the core has not
        # completed is a lost completion.  Set-based: the ids not yet completed are few and
        # checked one by one; only completions the recovered core does not hold are looked
        # at.  Each track's verdict is independent of the others, so the order is free.
        tracks = self.tracks
        acked_open, done_open = self._acked_open, self._done_open
        lost_enq_ids = {job_id for job_id in acked_open if not core.knows(job_id)}
        acked_open -= lost_enq_ids
        lost_ack = 0
        for job_id in core.not_completed(done_open):
            tr = tracks[job_id]
            open_enqueue = tr.acked_t >= 0 and tr.lost_enqueue_at < 0
            if open_enqueue and not core.knows(job_id):
                lost_enq_ids.add(job_id)  # stays in _done_open, as its done_t does
                continue
            tr.lost_completion_at = index
            tr.done_t = -1.0  # it has to complete again
            lost_ack += 1
            done_open.discard(job_id)
            if open_enqueue:
                acked_open.add(job_id)
        for job_id in lost_enq_ids:
            tracks[job_id].lost_enqueue_at = index
        lost_enq = len(lost_enq_ids)
        rec = {
            "crash": index,
            "t": now,
            "kind": kind,
            "downtime_s": downtime,
            "snapshot_jobs": report.snapshot_jobs,
            "snapshot_finished": report.snapshot_finished,
            "records_read": report.records_read,
            "records_replayed": report.records_replayed,
            "torn_bytes": report.torn_bytes_truncated,
            "requeued": report.requeued,
            "dead_lettered": report.dead_lettered,
            "last_seq": report.last_seq,
            "lost_enqueued": lost_enq,
            "lost_completions": lost_ack,
        }
        self.recoveries.append(rec)
        self.wall_recovery_s.append(wall)
        self._t("recover", index, report.records_read, report.snapshot_jobs, report.last_seq)
        if self.debug_check:
            core.check()
        self._at(downtime, self._recovered, self._gen)

    def _recovered(self, gen: int) -> None:
        if gen != self._gen:
            return  # crashed again while recovering
        self._up = True
        self._maybe_ready = True
        self._durable_at = self.env.now
        self._idle.extend(w for w in self.workers if w.alive)
        self._t("up", self._epoch)
        # clients resubmit what was not acknowledged, in submission order
        waiting = sorted(list(self._unacked.values()), key=lambda tr: (tr.submit_t, tr.id))
        if waiting:
            self.counters["resubmitted"] += len(waiting)
            for tr in waiting:
                tr.waiting = False
                self._unacked.pop(tr.id, None)
            self._submit(waiting)
        self._pump()
        gen = self._gen
        self._at(self.config.timeout_check_interval_s, self._tick_loop, gen)
        self._at(self.config.snapshot_interval_s, self._snapshot_loop, gen)
        self._check_drained(full=True)

    # -- the end -----------------------------------------------------------------------------------------
    def _check_drained(self, full: bool = False) -> None:
        if self._producers_left > 0 or self._unacked or not self._up or self._drained:
            return
        core = self.core
        assert core is not None
        if core.is_idle():
            self._finish_drained()
            return
        if full:
            c = core.counts()
            busy = any(w.held for w in self.workers)
            if not c["in_flight"] and not c["failed"] and c["pending"] == c["blocked"] and not busy:
                self._finish_drained()  # only jobs blocked on dependencies that never finish

    def _finish_drained(self) -> None:
        self._drained = True
        self._t("drained")
        if self._stop is not None:
            self._finish(self._stop)

    def _finish(self, stop: simpy.Event) -> None:
        _succeed(stop)


def _succeed(stop: simpy.Event, _event: Any = None) -> None:
    """Trigger the run's ``stop`` event once (also the ``until_s`` timeout's callback:
    a ``partial`` of this, not a closure over the simulation)."""
    if not stop.triggered:
        stop.succeed()


# == results ===========================================================================================
class Ledger:
    """The run's verdict in Jepsen's terms, built from the harness's observations and the
    final core (see ``Ledger.build``).  ``as_dict()`` is what ``RunResult.ledger`` holds."""

    @staticmethod
    def build(sim: Simulation) -> dict[str, Any]:
        core = sim.core
        assert core is not None
        completed = dict.fromkeys(core.completed_ids())
        dead = core.dead_reasons()
        ok = lost = lost_enq = lost_comp = recovered = unfinished = unacked = dup = 0
        dup_counts: dict[int, int] = {}
        lost_ids: list[str] = []
        lost_detail: list[dict[str, Any]] = []
        acknowledged = 0
        for tr in sim.tracks.values():
            if tr.deliveries > 1:
                dup += 1
                dup_counts[tr.deliveries] = dup_counts.get(tr.deliveries, 0) + 1
            if tr.acked_t < 0:
                unacked += 1
                continue
            acknowledged += 1
            is_lost = tr.lost_enqueue_at >= 0 or tr.lost_completion_at >= 0
            job_id = tr.id
            if (
                tr.lost_enqueue_at < 0
                and job_id not in completed
                and job_id not in dead
                and not core.knows(job_id)
            ):
                is_lost = True  # gone without a crash: a bug in the shell or the core
            if is_lost:
                lost += 1
                lost_enq += tr.lost_enqueue_at >= 0
                lost_comp += tr.lost_completion_at >= 0
                lost_ids.append(tr.id)
                lost_detail.append(
                    {
                        "job_id": tr.id,
                        "enqueue_seq": tr.enq_seq,
                        "enqueue_epoch": tr.enq_epoch,
                        "lost_enqueue_at_crash": tr.lost_enqueue_at,
                        "lost_completion_at_crash": tr.lost_completion_at,
                    }
                )
                continue
            if tr.id in completed or tr.id in dead:
                ok += 1
                if tr.crashed_in_flight and tr.id in completed:
                    recovered += 1
            else:
                unfinished += 1
        unexpected = len(completed.keys() - sim.tracks.keys())  # completed, never submitted
        c = sim.counters
        return {
            "seed": sim.seed,
            "policy": sim.config.commit_policy,
            "virtual_s": round(sim.env.now, 9),
            "submitted": len(sim.tracks),
            "acknowledged": acknowledged,
            "unacknowledged": unacked,
            "completed": len(completed),
            "dead": len(dead),
            "ok": ok,
            "lost": lost,
            "lost_enqueued": lost_enq,
            "lost_completions": lost_comp,
            "duplicated": dup,
            "duplicate_counts": {str(k): dup_counts[k] for k in sorted(dup_counts)},
            "unexpected": unexpected,
            "recovered": recovered,
            "unfinished": unfinished,
            "crashes": len(sim.crashes),
            "power_losses": sum(1 for x in sim.crashes if x["kind"] == "power"),
            "loss_window_s_max": max((x["loss_window_s"] for x in sim.crashes), default=0.0),
            "late_acks": c["late_acks"],
            "timeouts": c["timeouts"],
            "retries": c["retries"],
            "resubmitted": c["resubmitted"],
            "worker_deaths": c["worker_deaths"],
            "stuck_hangs": c["stuck_hangs"],
            "handler_failures": c["handler_failures"],
            "fsyncs": c["fsyncs"],
            "records": c["records"],
            "snapshots": c["snapshots"],
            "lost_ids": lost_ids,
            "lost_detail": lost_detail,
        }


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.9f}"
    return str(x)


class RunResult:
    """What one run produced.  ``ledger`` and ``trace`` are deterministic per seed;
    ``wall_s`` and the ``wall_s`` column of ``recoveries`` are measured, kept apart."""

    def __init__(self, sim: Simulation, wall_s: float) -> None:
        self.seed = sim.seed
        self.config = sim.config
        self.plan = sim.plan
        self.workload = sim.workload
        self.ledger: dict[str, Any] = Ledger.build(sim)
        self.wall_s = wall_s
        self.virtual_s = sim.env.now
        self.trace_events = sim.trace_events
        self._completions = sim.completions
        self._samples = sim.samples
        self._crashes = sim.crashes
        self._recoveries = sim.recoveries
        self._wall_recovery = sim.wall_recovery_s
        self.slow_workers = sim.slow_workers
        self.stuck_workers = sim.stuck_workers

    # -- text -------------------------------------------------------------------------------
    @property
    def trace(self) -> list[str]:
        """One line per event: ``"<t> <event> <fields...>"`` (virtual time only)."""
        return [" ".join(_fmt(x) for x in ev) for ev in self.trace_events]

    def summary(self) -> str:
        led = self.ledger
        dups = ",".join(f"{k}x:{v}" for k, v in led["duplicate_counts"].items()) or "-"
        lat = sorted(x[2] for x in self._completions)
        p95 = _pct(lat, 95) if lat else float("nan")
        return (
            f"seed={self.seed} policy={led['policy']} virtual={self.virtual_s:.3f}s "
            f"acknowledged={led['acknowledged']} ok={led['ok']} lost={led['lost']} "
            f"duplicated={led['duplicated']} ({dups}) unexpected={led['unexpected']} "
            f"recovered={led['recovered']} unfinished={led['unfinished']} "
            f"dead={led['dead']} crashes={led['crashes']} (power {led['power_losses']}) "
            f"p95={p95 * 1000:.2f}ms jobs/wall-s={self.jobs_per_wall_s():,.0f}"
        )

    def jobs_per_wall_s(self) -> float:
        return self.ledger["completed"] / self.wall_s if self.wall_s > 0 else float("nan")

    def assert_durable(self) -> None:
        """Raise ``SimulationError`` (with the seed) if any acknowledged job was lost or
        anything unexpected completed: the contract under ``always`` and ``batch``."""
        led = self.ledger
        if led["lost"] or led["unexpected"]:
            raise SimulationError(
                f"{led['lost']} acknowledged job(s) lost (e.g. {led['lost_ids'][:5]}), "
                f"{led['unexpected']} unexpected under policy {led['policy']}; "
                f"reproduce with seed={self.seed}"
            )

    # -- DataFrames ---------------------------------------------------------------------------
    @property
    def events(self) -> Any:
        """Every trace event: columns ``t``, ``event``, ``job_id``/``a``, ``b``, ``c``, ``d``."""
        import pandas as pd

        rows = []
        for ev in self.trace_events:
            rest = list(ev[2:]) + [None] * (4 - len(ev[2:]))
            rows.append((ev[0], ev[1], *rest[:4]))
        return pd.DataFrame(rows, columns=["t", "event", "a", "b", "c", "d"])

    def throughput(self, bucket_s: float | None = None) -> Any:
        """Completions per virtual second, in buckets of ``bucket_s`` (default: ~50 buckets)."""
        import pandas as pd

        end = max(self.virtual_s, 1e-9)
        if bucket_s is None:
            bucket_s = _nice_bucket(end / 50)
        n = int(math.ceil(end / bucket_s)) or 1
        counts = [0] * n
        for t, _, _ in self._completions:
            counts[min(int(t / bucket_s), n - 1)] += 1
        return pd.DataFrame(
            {
                "t": [i * bucket_s for i in range(n)],
                "completed": counts,
                "jobs_per_s": [c / bucket_s for c in counts],
            }
        )

    def latency(self) -> Any:
        """Submit -> completion-acknowledged latency percentiles (one row)."""
        import pandas as pd

        lat = sorted(x[2] for x in self._completions)
        if not lat:
            return pd.DataFrame(columns=["count", "mean_s", "p50_s", "p95_s", "p99_s", "max_s"])
        return pd.DataFrame(
            [
                {
                    "count": len(lat),
                    "mean_s": sum(lat) / len(lat),
                    "p50_s": _pct(lat, 50),
                    "p95_s": _pct(lat, 95),
                    "p99_s": _pct(lat, 99),
                    "max_s": lat[-1],
                }
            ]
        )

    def latencies(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self._completions, columns=["t", "job_id", "latency_s"])

    def depth(self) -> Any:
        """Queue depth sampled every ``Workload.sample_interval_s`` (``up`` False: down)."""
        import pandas as pd

        return pd.DataFrame(
            self._samples, columns=["t", "pending", "in_flight", "completed", "dead", "up"]
        )

    def crashes(self) -> Any:
        """Per crash: time, kind, the writer's appended/durable/ack seq, the loss window."""
        import pandas as pd

        cols = [
            "crash", "t", "kind", "cause", "epoch", "was_up", "appended_seq", "durable_seq",
            "ack_seq", "unsynced_records", "loss_window_s", "in_flight", "unacked_submissions",
        ]  # fmt: skip
        return pd.DataFrame(self._crashes, columns=cols)

    def recoveries(self) -> Any:
        """Per crash: virtual downtime from the cost model, what recovery read, and the
        measured ``wall_s`` of the real ``recover`` + ``open_writer`` (not deterministic)."""
        import pandas as pd

        df = pd.DataFrame(self._recoveries)
        if len(df):
            df["wall_s"] = self._wall_recovery
        return df

    def loss_window(self) -> Any:
        """Per crash: how long since the last durable point, and how many records were only
        in the page cache (what a power loss under ``never`` may take)."""
        import pandas as pd

        cols = ["crash", "t", "kind", "loss_window_s", "unsynced_records", "durable_seq"]
        return pd.DataFrame([{k: c[k] for k in cols} for c in self._crashes], columns=cols)


def _pct(sorted_values: list[float], q: float) -> float:
    k = max(0, min(len(sorted_values) - 1, int(math.ceil(q / 100.0 * len(sorted_values))) - 1))
    return sorted_values[k]


def _nice_bucket(x: float) -> float:
    for b in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0):
        if x <= b:
            return b
    return 10.0 * math.ceil(x / 10.0)


def run_simulation(
    config: Config,
    plan: FaultPlan | None = None,
    workload: Workload | None = None,
    seed: int = 0,
    *,
    until_s: float | None = None,
    debug_check: bool = False,
) -> RunResult:
    """``Simulation(config, plan, workload, seed, debug_check).run(until_s)``."""
    return Simulation(config, plan, workload, seed, debug_check).run(until_s)


def with_changes(obj: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` for a ``Workload``/``FaultPlan`` (``Config.replace`` for a
    ``Config``): the sweep helpers use it to apply one grid point."""
    if isinstance(obj, Config):
        return obj.replace(**changes)
    return replace(obj, **changes)
