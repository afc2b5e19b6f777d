"""DurableQueue: acknowledged means durable, group commit, fsync failure, snapshots, close."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from phase1.clock import ManualClock
from phase1.config import Config
from phase1.core import Completed, QueueCore, Step
from phase1.disk import OsDisk
from phase1.errors import DurabilityError
from phase1.jobs import Job, JobState
from phase1.recovery import recover
from phase1.runtime import durable as durable_module
from phase1.runtime.durable import DurableQueue
from phase1.sim.disk import SimDisk
from phase1.wal import read_wal

WAL = "data/wal.log"
SNAP = "data/snapshot.json"
T0_S = 1_704_103_200.0


def sim_config(policy: str = "batch", **changes: object) -> Config:
    settings: dict[str, object] = {
        "wal_path": WAL,
        "snapshot_path": SNAP,
        "commit_policy": policy,
        "max_retry": 3,
        "task_timeout_s": 5.0,
    }
    return Config().replace(**(settings | changes))


class ThreadSafeSimDisk(SimDisk):
    """SimDisk with one mutex around every call.  SimDisk is single-threaded by design;
    DurableQueue fsyncs outside its lock while other threads append."""

    def __init__(self, **kwargs: object) -> None:
        self.mutex = threading.RLock()
        super().__init__(**kwargs)  # type: ignore[arg-type]


def _locked(name: str) -> Callable[..., object]:
    plain = getattr(SimDisk, name)

    def method(self: ThreadSafeSimDisk, *args: object, **kwargs: object) -> object:
        with self.mutex:
            return plain(self, *args, **kwargs)

    method.__name__ = name
    return method


for _name in (
    "exists size listdir makedirs read write append write_at truncate fsync fsync_dir rename "
    "unlink close copy crash"
).split():
    setattr(ThreadSafeSimDisk, _name, _locked(_name))


class CountingDisk(OsDisk):
    """OsDisk counting file fsyncs; ``fail_after`` makes every later fsync raise EIO."""

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        self.fsyncs = 0
        self.fail_after = fail_after
        self._count_lock = threading.Lock()

    def fsync(self, path: str) -> None:
        with self._count_lock:
            self.fsyncs += 1
            failing = self.fail_after is not None and self.fsyncs > self.fail_after
        if failing:
            raise OSError(5, "Input/output error (injected)", path)
        super().fsync(path)


def recovered(disk: SimDisk, config: Config, kind: str = "power") -> QueueCore:
    """The core a restart would see after a crash of ``kind`` (on a copy of ``disk``)."""
    copy = disk.copy()
    copy.crash(kind)  # type: ignore[arg-type]
    core, _ = recover(copy, config, now_s=T0_S)
    return core


def hammer(
    q: DurableQueue, threads: int, per_thread: int, acked: list[str] | None = None
) -> list[str]:
    """``threads`` producers each submitting ``per_thread`` single-job batches; appends to
    ``acked`` the id of every submit that returned (as it returns) and returns the list;
    re-raises the first error a producer hit."""
    acked = [] if acked is None else acked
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def produce(t: int) -> None:
        barrier.wait()
        try:
            for i in range(per_thread):
                job_id = f"t{t:02d}-{i:03d}"
                q.submit([Job(job_id, {"t": t, "i": i})])
                acked.append(job_id)  # list.append is atomic under the GIL
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)

    workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return acked


# == acknowledged means durable ==========================================================
@pytest.mark.parametrize("policy", ["always", "batch"])
def test_submit_ack_and_fail_return_only_when_durable(policy: str) -> None:
    cfg = sim_config(policy)
    disk = SimDisk()
    q = DurableQueue(cfg, disk=disk, clock=ManualClock(T0_S))
    for i in range(5):
        q.submit([Job(f"j{i}", priority=i)])
        core = recovered(disk, cfg)
        assert all(core.knows(f"j{n}") for n in range(i + 1)), f"power loss after submit {i}"
    send = q.dispatch(limit=2).effects  # j4, j3
    assert isinstance(q.ack("j4", 1).effects[0], Completed)
    q.fail("j3", 1, "boom")
    for seed in range(20):  # a power loss keeping a random prefix of what was unsynced
        copy = disk.copy()
        copy.crash("power", random.Random(seed))
        core, _ = recover(copy, cfg, now_s=T0_S)
        assert core.state_of("j4") is JobState.COMPLETED, f"seed {seed}"
        assert core.get("j3").attempt == 1  # type: ignore[union-attr]
        assert all(core.knows(f"j{n}") for n in range(5))
    assert len(send) == 2


@pytest.mark.parametrize("policy", ["always", "batch"])
def test_concurrent_submits_survive_a_power_loss_after_any_disk_operation(policy: str) -> None:
    cfg = sim_config(policy)
    disk = ThreadSafeSimDisk()
    q = DurableQueue(cfg, disk=disk)
    acked: list[str] = []
    moments: list[tuple[set[str], SimDisk]] = []
    # After every disk operation (inside the disk's mutex): what had been acknowledged,
    # and the disk as a power loss at that instant would find it.
    disk.on_op = lambda _op: moments.append((set(acked), disk.copy()))
    hammer(q, threads=8, per_thread=25, acked=acked)
    disk.on_op = None
    moments.append((set(acked), disk.copy()))
    # (a write and an fsync per group commit at least; batch writes once per fsync)
    assert len(acked) == 200 and len(moments) > 2 * q.fsyncs > 0
    for n, (seen, copy) in enumerate(moments[::3] + moments[-1:]):
        copy.crash("power")
        core, _ = recover(copy, cfg, now_s=T0_S)
        lost = sorted(j for j in seen if not core.knows(j))
        assert not lost, f"moment {n}: {len(lost)} acknowledged jobs lost, e.g. {lost[:3]}"
    assert len(seen) == 200 and core.counts()["pending"] == 200


def test_policy_never_survives_a_process_crash_not_a_power_loss() -> None:
    cfg = sim_config("never")
    disk = SimDisk()
    q = DurableQueue(cfg, disk=disk, clock=ManualClock(T0_S))
    q.submit([Job("a"), Job("b")])
    q.dispatch()
    q.ack("a", 1)
    assert disk.fsync_count == 0  # acknowledged without any fsync
    after_process = recovered(disk, cfg, "process")
    assert after_process.state_of("a") is JobState.COMPLETED and after_process.knows("b")
    after_power = recovered(disk, cfg, "power")
    assert not after_power.knows("a") and not after_power.knows("b")  # the price of never


# == group commit =========================================================================
def test_group_commit_shares_fsyncs_between_16_threads(tmp_config: Config) -> None:
    cfg = tmp_config.replace(commit_policy="batch", batch_interval_s=0.0)
    q = DurableQueue(cfg)
    acked = hammer(q, threads=16, per_thread=50)
    assert len(acked) == len(set(acked)) == 800
    assert 0 < q.fsyncs < 800 and q.records_synced == 800
    q.close()
    read = read_wal(OsDisk(), cfg.wal_path)
    assert [r.type for r in read.records] == ["ENQUEUE"] * 800
    assert sorted(r.job_id for r in read.records) == sorted(acked)


def test_policy_always_fsyncs_every_submit(tmp_config: Config) -> None:
    cfg = tmp_config.replace(commit_policy="always")
    disk = CountingDisk()
    seen: list[int] = []
    q = DurableQueue(cfg, disk=disk, on_fsync=lambda _s, records: seen.append(records))
    acked = hammer(q, threads=16, per_thread=50)
    assert len(acked) == 800 and disk.fsyncs >= 800
    # The fsyncs made inside append are counted for metrics too (one record each).
    assert q.fsyncs == 800 and q.records_synced == 800 and seen == [1] * 800
    q.close()
    assert len(read_wal(OsDisk(), cfg.wal_path).records) == 800


def test_batch_interval_with_size_cap_grows_records_per_fsync() -> None:
    """With a disk whose fsync is instant, leader/follower alone gets about one record per
    fsync; waiting up to batch_interval for batch_size records gets close to batch_size."""

    def per_fsync(interval_s: float) -> tuple[float, list[int]]:
        sizes: list[int] = []
        cfg = sim_config("batch", batch_interval_s=interval_s, batch_size=8)
        q = DurableQueue(cfg, disk=ThreadSafeSimDisk(), on_fsync=lambda _s, n: sizes.append(n))
        assert len(hammer(q, threads=16, per_thread=20)) == 320
        assert sum(sizes) == q.records_synced == 320
        return q.records_synced / q.fsyncs, sizes

    eager, _ = per_fsync(0.0)
    patient, sizes = per_fsync(0.05)
    assert patient > eager
    assert patient >= 4, f"records per fsync {patient:.1f} with interval, sizes {sizes}"


# == a failed fsync is fatal ==============================================================
@pytest.mark.parametrize("policy", ["always", "batch"])
def test_failed_fsync_raises_to_the_submitter_and_poisons_the_queue(policy: str) -> None:
    cfg = sim_config(policy)
    disk = SimDisk(fail_fsync_after=2)
    clock = ManualClock(T0_S)
    q = DurableQueue(cfg, disk=disk, clock=clock)
    q.submit([Job("a")])
    q.submit([Job("b")])
    with pytest.raises(DurabilityError, match="fsync failed"):
        q.submit([Job("c")])
    calls: dict[str, Callable[[], object]] = {
        "submit": lambda: q.submit([Job("d")]),
        "dispatch": lambda: q.dispatch(limit=3),
        "dispatch nothing": lambda: q.dispatch(limit=0),
        "ack": lambda: q.ack("a", 1),
        "stale ack": lambda: q.ack("zzz", 7),
        "fail": lambda: q.fail("a", 1),
        "tick": q.tick,
        "cancel": lambda: q.cancel("b"),
        "snapshot": q.snapshot,
    }
    for name, call in calls.items():
        with pytest.raises(DurabilityError):
            call()
            pytest.fail(f"{name} after a failed fsync did not raise")
    q.close()
    q.close()

    # restart on the same files with a healthy disk
    disk.fail_fsync_after = None
    disk.crash("power")
    again = DurableQueue(cfg, disk=disk, clock=clock)
    assert again.core.knows("a") and again.core.knows("b")
    assert not again.core.knows("c")  # never acknowledged, never durable
    assert again.counts()["pending"] == 2
    again.submit([Job("c")])
    assert recovered(disk, cfg).knows("c")


def test_failed_fsync_raises_to_every_waiting_submitter(tmp_config: Config) -> None:
    cfg = tmp_config.replace(commit_policy="batch")
    disk = CountingDisk()
    q = DurableQueue(cfg, disk=disk)
    q.submit([Job("before")])
    disk.fail_after = disk.fsyncs  # from now on every fsync fails
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def produce(t: int) -> None:
        barrier.wait()
        try:
            q.submit([Job(f"t{t}")])
            outcomes.append("acknowledged")
        except DurabilityError:
            outcomes.append("DurabilityError")

    workers = [threading.Thread(target=produce, args=(t,)) for t in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert outcomes == ["DurabilityError"] * 8
    with pytest.raises(DurabilityError):
        q.submit([Job("later")])
    q.close()

    again = DurableQueue(cfg, disk=OsDisk())  # a healthy disk on the same files
    assert again.core.knows("before")
    assert again.recovery.torn is None
    again.submit([Job("after")])
    again.close()
    read = read_wal(OsDisk(), cfg.wal_path)
    assert read.torn is None and read.records[-1].job_id == "after"


# == snapshots, rotation, close ===========================================================
def test_snapshots_rotate_the_wal_and_drop_segments_the_oldest_snapshot_covers(
    tmp_config: Config,
) -> None:
    cfg = tmp_config.replace(snapshots_kept=2, commit_policy="batch")
    folder = Path(cfg.wal_path).parent
    q = DurableQueue(cfg)
    seqs: list[int] = []
    for round_ in range(4):
        q.submit([Job(f"r{round_}-{i}", priority=i) for i in range(3)])
        q.dispatch(limit=2)
        q.ack(f"r{round_}-2", 1)
        seqs.append(q.snapshot().last_seq)
        segments = sorted(p.name for p in folder.glob("wal.log.*"))
        # the segment ending at the newest snapshot stays while the older snapshot is kept
        expected = [f"wal.log.{seqs[-1]:012d}"] if round_ else []
        assert segments == expected, f"after snapshot {round_ + 1}"
        assert (folder / "snapshot.json.1").exists() == (round_ > 0)
    q.submit([Job("tail")])
    before = q.core.export()
    q.close()
    q.close()  # idempotent
    with pytest.raises(DurabilityError, match="closed"):
        q.submit([Job("x")])
    with pytest.raises(DurabilityError, match="closed"):
        q.dispatch()
    with pytest.raises((DurabilityError, ValueError), match="closed"):
        q.snapshot()

    again = DurableQueue(cfg)
    report = again.recovery
    assert report.snapshot_used == cfg.snapshot_path and report.snapshot_last_seq == seqs[-1]
    assert report.records_replayed == 1
    expected_core = QueueCore.restore(before, max_retry=cfg.max_retry)
    expected_core.settle(0.0)
    assert again.core.export() == expected_core.export()
    assert again.core.counts()["completed"] == 4 and again.core.counts()["pending"] == 9
    again.close()


def test_run_makes_a_custom_command_durable_and_read_sees_the_core() -> None:
    cfg = sim_config("always")
    disk = SimDisk()
    with DurableQueue(cfg, disk=disk, clock=ManualClock(T0_S)) as q:
        step = q.run(lambda core, now: core.enqueue([Job("x", scheduled_at=now + 10)], now))
        assert [r.type for r in step.records] == ["ENQUEUE"]
        assert q.read(lambda core: core.counts()["delayed"]) == 1
        assert recovered(disk, cfg).knows("x")
    with pytest.raises(DurabilityError):
        q.tick()


# == the syncer thread, step by step ======================================================
class GatedDisk(ThreadSafeSimDisk):
    """ThreadSafeSimDisk whose file fsyncs wait for the test: ``entered`` is set when one
    starts (its thread name noted), and it proceeds once ``gate`` is set.  ``fail_from``:
    the fsync with that 1-based number and every later one raise EIO."""

    def __init__(self, fail_from: int | None = None) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.fsync_threads: list[str] = []
        self.fail_from = fail_from

    def fsync(self, path: str) -> None:
        self.fsync_threads.append(threading.current_thread().name)
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"
        if self.fail_from is not None and len(self.fsync_threads) >= self.fail_from:
            raise OSError(5, "Input/output error (injected)", path)
        super().fsync(path)


def _submit_in_thread(
    q: DurableQueue, job_id: str, outcomes: dict[str, str]
) -> tuple[threading.Thread, threading.Event]:
    """Submit ``job_id`` from a new thread; the event is set once the job is in the core
    (under the queue's lock, just before its record is appended)."""
    in_core = threading.Event()

    def command(core: QueueCore, now: float) -> Step:
        step = core.enqueue([Job(job_id)], now)
        in_core.set()
        return step

    def body() -> None:
        try:
            q.run(command)
            outcomes[job_id] = "acknowledged"
        except DurabilityError:
            outcomes[job_id] = "DurabilityError"

    th = threading.Thread(target=body)
    th.start()
    return th, in_core


def _appended(q: DurableQueue, in_core: threading.Event) -> None:
    """Wait until the submit behind ``in_core`` has appended (its lock hold is over)."""
    assert in_core.wait(30)
    q.read(lambda core: None)  # takes the lock: the append that followed is done


def test_a_lone_caller_fsyncs_inline_and_later_waiters_go_to_the_syncer_thread() -> None:
    cfg = sim_config("batch", batch_interval_s=0.0)
    disk = GatedDisk()
    synced: list[int] = []
    q = DurableQueue(cfg, disk=disk, on_fsync=lambda _s, n: synced.append(n))
    disk.gate.set()
    q.submit([Job("alone")])  # no other caller: its own thread fsyncs, no syncer thread
    assert disk.fsync_threads == [threading.current_thread().name]
    assert q._syncer is None
    disk.gate.clear()
    disk.entered.clear()

    outcomes: dict[str, str] = {}
    lead, lead_in = _submit_in_thread(q, "lead", outcomes)
    assert disk.entered.wait(30)  # "lead" fsyncs inline, held at the gate
    waiting = [_submit_in_thread(q, f"w{i}", outcomes) for i in range(3)]
    for _, in_core in waiting:
        _appended(q, in_core)
    # Appended while an fsync was in flight: not acknowledged yet.
    assert q._stashed_seq == 5 and q.writer.appended_seq == 2 and q.writer.durable_seq == 1
    assert outcomes == {}
    disk.gate.set()
    for th in [lead] + [th for th, _ in waiting]:
        th.join(30)
    assert outcomes == {
        "lead": "acknowledged",
        "w0": "acknowledged",
        "w1": "acknowledged",
        "w2": "acknowledged",
    }
    # One fsync for "lead", then one by the syncer thread for the three that waited (woken
    # as a chain: the syncer releases the first, each releases the next).
    assert synced == [1, 1, 3] and q.fsyncs == 3 and q.records_synced == 5
    assert not q._to_wake
    assert disk.fsync_threads[2].startswith("phase1-fsync")
    core = recovered(disk, cfg)
    assert all(core.knows(j) for j in ("alone", "lead", "w0", "w1", "w2"))
    syncer = q._syncer
    q.close()
    assert syncer is not None and not syncer.is_alive()


def test_a_failed_fsync_in_the_syncer_thread_raises_to_its_waiters_only() -> None:
    cfg = sim_config("batch", batch_interval_s=0.0)
    disk = GatedDisk(fail_from=2)
    q = DurableQueue(cfg, disk=disk)
    outcomes: dict[str, str] = {}
    lead, _ = _submit_in_thread(q, "lead", outcomes)
    assert disk.entered.wait(30)
    waiting = [_submit_in_thread(q, f"w{i}", outcomes) for i in range(2)]
    for _, in_core in waiting:
        _appended(q, in_core)
    disk.gate.set()
    for th in [lead] + [th for th, _ in waiting]:
        th.join(30)
    assert outcomes == {"lead": "acknowledged", "w0": "DurabilityError", "w1": "DurabilityError"}
    with pytest.raises(DurabilityError, match="fsync failed"):
        q.submit([Job("later")])
    q.close()
    # (w0 and w1 may survive: their bytes were written before lead's fsync ran.  They were
    # never acknowledged, which is all the contract promises.)
    assert recovered(disk, cfg).knows("lead")


def _lead_in_fsync_and_a_waiter_appended() -> tuple[
    Config, GatedDisk, DurableQueue, dict[str, str], threading.Thread, threading.Thread
]:
    """A caller ("lead") held inside its fsync by the gate, and a second ("waiter") whose
    record is appended and waits to be covered by the next fsync."""
    cfg = sim_config("batch", batch_interval_s=0.0)
    disk = GatedDisk()
    q = DurableQueue(cfg, disk=disk)
    outcomes: dict[str, str] = {}
    lead, _ = _submit_in_thread(q, "lead", outcomes)
    assert disk.entered.wait(30)
    waiter, in_core = _submit_in_thread(q, "waiter", outcomes)
    _appended(q, in_core)
    return cfg, disk, q, outcomes, lead, waiter


def test_close_makes_waiting_submits_durable_and_releases_them() -> None:
    cfg, disk, q, outcomes, lead, waiter = _lead_in_fsync_and_a_waiter_appended()
    closer = threading.Thread(target=q.close)
    closer.start()  # waits for the fsync in flight, then syncs "waiter" itself
    disk.gate.set()
    for th in (lead, waiter, closer):
        th.join(30)
    assert outcomes == {"lead": "acknowledged", "waiter": "acknowledged"}
    assert recovered(disk, cfg).knows("waiter")
    q.close()  # idempotent


def test_snapshot_rotation_releases_records_waiting_for_an_fsync() -> None:
    cfg, disk, q, outcomes, lead, waiter = _lead_in_fsync_and_a_waiter_appended()
    taken: list[int] = []
    snapper = threading.Thread(target=lambda: taken.append(q.snapshot().last_seq))
    snapper.start()
    disk.gate.set()
    for th in (lead, waiter, snapper):
        th.join(30)
    assert outcomes == {"lead": "acknowledged", "waiter": "acknowledged"}
    assert taken == [2]
    core = recovered(disk, cfg)
    assert core.knows("lead") and core.knows("waiter")
    q.close()


def test_a_record_the_wal_cannot_encode_poisons_the_queue_like_a_failed_fsync() -> None:
    """Policy batch writes stashed records at the next fsync: one that cannot be encoded is
    already in the core, so every later call refuses (nothing half-logged is acknowledged)."""
    cfg = sim_config("batch", batch_interval_s=0.0)
    disk = SimDisk()
    q = DurableQueue(cfg, disk=disk, clock=ManualClock(T0_S))
    q.submit([Job("fine")])
    with pytest.raises(DurabilityError, match="could not log records 2..2"):
        q.submit([Job("bad", payload={1, 2})])  # a set: not JSON
    with pytest.raises(DurabilityError, match="could not log"):
        q.submit([Job("later")])
    with pytest.raises(DurabilityError):
        q.snapshot()
    q.close()
    core = recovered(disk, cfg)
    assert core.knows("fine") and not core.knows("bad") and not core.knows("later")


class TurnstileDisk(ThreadSafeSimDisk):
    """ThreadSafeSimDisk whose file fsyncs each wait for a permit from the test
    (``allow``); ``wait_fsyncs(n)`` returns once n fsyncs have started.  ``fail_append_from``:
    the WAL write (append, or write_at into preallocated padding) with that 1-based number
    and every later one raise EIO."""

    def __init__(self, fail_append_from: int | None = None) -> None:
        super().__init__()
        self.permits = threading.Semaphore(0)
        self.turn = threading.Condition()
        self.fsyncs_started = 0
        self.fsync_threads: list[str] = []
        self.appends = 0
        self.fail_append_from = fail_append_from

    def fsync(self, path: str) -> None:
        with self.turn:
            self.fsyncs_started += 1
            self.fsync_threads.append(threading.current_thread().name)
            self.turn.notify_all()
        assert self.permits.acquire(timeout=30), "the test never allowed this fsync"
        super().fsync(path)

    def _count_write(self, path: str) -> None:
        with self.turn:
            self.appends += 1
            failing = self.fail_append_from is not None and self.appends >= self.fail_append_from
        if failing:
            raise OSError(5, "Input/output error (injected)", path)

    def append(self, path: str, data: bytes) -> None:
        self._count_write(path)
        super().append(path, data)

    def write_at(self, path: str, offset: int, data: bytes) -> None:
        self._count_write(path)
        super().write_at(path, offset, data)

    def allow(self, fsyncs: int = 1) -> None:
        self.permits.release(fsyncs)

    def wait_fsyncs(self, started: int) -> None:
        with self.turn:
            assert self.turn.wait_for(lambda: self.fsyncs_started >= started, 30)


def test_a_failed_write_in_the_syncer_still_releases_the_callers_the_last_fsync_covered() -> None:
    """The syncer writes the next batch before it wakes the callers the previous fsync
    covered; if that write fails they are still released, acknowledged."""
    cfg = sim_config("batch", batch_interval_s=0.0)
    disk = TurnstileDisk(fail_append_from=3)  # the lead's append, the syncer's, then EIO
    q = DurableQueue(cfg, disk=disk)
    outcomes: dict[str, str] = {}
    lead, _ = _submit_in_thread(q, "lead", outcomes)
    disk.wait_fsyncs(1)  # the lead's own fsync, inline
    w0, in_core = _submit_in_thread(q, "w0", outcomes)
    _appended(q, in_core)
    disk.allow()
    disk.wait_fsyncs(2)  # the syncer thread's fsync covering w0
    w1, in_core = _submit_in_thread(q, "w1", outcomes)
    _appended(q, in_core)
    disk.allow()  # w0 is durable; the syncer's write of w1 fails
    for th in (lead, w0, w1):
        th.join(30)
    assert outcomes == {"lead": "acknowledged", "w0": "acknowledged", "w1": "DurabilityError"}
    with pytest.raises(DurabilityError, match="write or fsync failed"):
        q.submit([Job("later")])
    q.close()
    core = recovered(disk, cfg)
    assert core.knows("lead") and core.knows("w0") and not core.knows("w1")


def test_callers_leave_the_fsyncs_to_the_syncer_thread_once_it_is_awake() -> None:
    """A caller that finds no fsync in flight leads one inline only while the syncer thread
    is idle: once woken, the syncer does every fsync (a caller leading while the syncer
    waits for the GIL would take its batch and release its callers all at once)."""
    cfg = sim_config("batch", batch_interval_s=0.0)
    disk = TurnstileDisk()
    outcomes: dict[str, str] = {}
    late: list[tuple[threading.Thread, threading.Event]] = []

    def on_fsync(_elapsed: float, _records: int) -> None:
        # Under the lock, as the lead's fsync ends and before it wakes the syncer: "c"
        # queues for the lock, and may get it before the syncer with no fsync in flight.
        if not late:
            late.append(_submit_in_thread(q, "c", outcomes))

    q = DurableQueue(cfg, disk=disk, on_fsync=on_fsync)
    lead, _ = _submit_in_thread(q, "lead", outcomes)
    disk.wait_fsyncs(1)
    w0, in_core = _submit_in_thread(q, "w0", outcomes)
    _appended(q, in_core)
    disk.allow()  # the lead's fsync ends: the syncer is woken for w0
    lead.join(30)
    c, in_core = late[0]
    _appended(q, in_core)  # (held while the syncer's first fsync waits for its permit)
    disk.allow(10)
    for th in (w0, c):
        th.join(30)
    assert outcomes == {"lead": "acknowledged", "w0": "acknowledged", "c": "acknowledged"}
    assert disk.fsync_threads[0] == lead.name
    assert all(name.startswith("phase1-fsync") for name in disk.fsync_threads[1:])
    q.close()


def test_a_wake_up_chain_broken_by_a_caller_that_stopped_waiting_is_finished_by_the_syncer() -> (
    None
):
    """Each woken caller wakes the next; one that stopped waiting (an exception in its
    acquire, e.g. KeyboardInterrupt) never passes on.  The idle syncer thread notices the
    chain did not move and wakes everyone left."""
    cfg = sim_config("batch", batch_interval_s=0.0)
    disk = TurnstileDisk()
    q = DurableQueue(cfg, disk=disk)
    outcomes: dict[str, str] = {}
    lead, _ = _submit_in_thread(q, "lead", outcomes)
    disk.wait_fsyncs(1)
    w0, in_core = _submit_in_thread(q, "w0", outcomes)
    _appended(q, in_core)
    gone = threading.Lock()  # the caller that stopped waiting: nobody acquires it again
    gone.acquire()
    with q._lock:
        q._waiters.appendleft((q._stashed_seq, gone))  # woken first, passes nothing on
    disk.allow(10)
    for th in (lead, w0):
        th.join(30)
    assert outcomes == {"lead": "acknowledged", "w0": "acknowledged"}
    assert not q._to_wake
    q.close()


def test_an_unexpected_error_in_an_inline_fsync_reaches_its_caller_and_stops_the_queue() -> None:
    """Not an OSError (the writer's poison): a bug or an injected crash.  It propagates as
    itself, and the queue refuses further work, as after the syncer thread fails."""

    class BrokenDisk(SimDisk):
        def fsync(self, path: str) -> None:
            raise RuntimeError("disk driver bug")

    q = DurableQueue(sim_config("batch", batch_interval_s=0.0), disk=BrokenDisk())
    with pytest.raises(RuntimeError, match="driver bug"):
        q.submit([Job("a")])
    with pytest.raises(DurabilityError, match="an fsync failed"):
        q.submit([Job("b")])


@pytest.mark.parametrize("one_cpu", [True, False])
def test_on_one_cpu_the_syncer_leaves_the_callers_it_releases_to_a_chain_still_running(
    one_cpu: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Callers an fsync covered join the end of the wake-up chain.  On one CPU, while
    earlier callers are still queued on it, the chain reaches them and the syncer wakes
    nobody itself; with more CPUs it wakes the chain's next caller as before."""
    monkeypatch.setattr(durable_module, "_runs_on_one_cpu", lambda: one_cpu)
    cfg = sim_config("batch", batch_interval_s=0.0)
    disk = TurnstileDisk()
    q = DurableQueue(cfg, disk=disk)
    outcomes: dict[str, str] = {}
    lead, _ = _submit_in_thread(q, "lead", outcomes)
    disk.wait_fsyncs(1)
    w0, in_core = _submit_in_thread(q, "w0", outcomes)
    _appended(q, in_core)
    queued = threading.Lock()  # a caller of an earlier chain, not woken yet
    queued.acquire()
    with q._lock:
        w0_waiter = q._waiters[0][1]
        q._to_wake.append(queued)
    disk.allow()  # the lead's fsync ends; the syncer's covers w0
    disk.wait_fsyncs(2)
    lead.join(30)
    x, in_core = _submit_in_thread(q, "x", outcomes)
    _appended(q, in_core)
    disk.allow()  # w0 is durable: queued behind the earlier chain; the syncer fsyncs x
    disk.wait_fsyncs(3)
    assert "w0" not in outcomes
    if one_cpu:
        assert list(q._to_wake) == [queued, w0_waiter]
        q._wake_next()  # the chain moves on: the queued caller is woken ...
    else:
        assert list(q._to_wake) == [w0_waiter]  # the syncer woke the queued caller
    assert queued.acquire(blocking=False)
    q._wake_next()  # ... and, as it would, wakes the next: w0
    w0.join(30)
    assert outcomes == {"lead": "acknowledged", "w0": "acknowledged"}
    disk.allow(10)
    x.join(30)
    assert outcomes["x"] == "acknowledged" and not q._to_wake
    q.close()


def test_on_one_cpu_a_busy_syncer_finishes_a_chain_broken_by_a_caller_that_stopped_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On one CPU the syncer leaves released callers to a chain still running; if that
    chain stopped (its caller stopped waiting), a syncer kept busy by new work must still
    notice, not leave the callers queued behind it until the load ends."""
    monkeypatch.setattr(durable_module, "_runs_on_one_cpu", lambda: True)
    monkeypatch.setattr(durable_module, "_CHAIN_CHECK_S", 0.0)  # check on every fsync
    cfg = sim_config("batch", batch_interval_s=0.0)
    disk = TurnstileDisk()
    q = DurableQueue(cfg, disk=disk)
    outcomes: dict[str, str] = {}
    lead, _ = _submit_in_thread(q, "lead", outcomes)
    disk.wait_fsyncs(1)
    w0, in_core = _submit_in_thread(q, "w0", outcomes)
    _appended(q, in_core)
    gone = threading.Lock()  # the caller that stopped waiting: nobody acquires it again
    gone.acquire()
    with q._lock:
        q._to_wake.append(gone)
    disk.allow()  # fsync 1 ends (lead); the syncer's fsync 2 covers w0
    disk.wait_fsyncs(2)
    x, in_core = _submit_in_thread(q, "x", outcomes)
    _appended(q, in_core)
    disk.allow()  # w0 durable, queued behind `gone`; fsync 3 (x) starts: first look
    disk.wait_fsyncs(3)
    y, in_core = _submit_in_thread(q, "y", outcomes)
    _appended(q, in_core)
    disk.allow()  # x durable, queued too; second look: the chain did not move
    disk.wait_fsyncs(4)  # the syncer is busy in fsync 4 (y), not idle
    for th in (lead, w0, x):
        th.join(30)
    assert outcomes == {"lead": "acknowledged", "w0": "acknowledged", "x": "acknowledged"}
    disk.allow(10)
    y.join(30)
    assert outcomes["y"] == "acknowledged" and not q._to_wake
    q.close()
