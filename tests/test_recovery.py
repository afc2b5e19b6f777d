"""Recovery: snapshot + WAL replay, torn tails vs corruption, every-byte cuts, crashes
during a snapshot, damaged snapshots, gaps, and jobs that kill the process."""

from __future__ import annotations

from pathlib import Path

import pytest

from phase1.clock import ManualClock
from phase1.config import Config
from phase1.core import CoreState, QueueCore, Record, replay
from phase1.disk import OsDisk
from phase1.errors import WalCorruptionError
from phase1.jobs import Job, JobState
from phase1.recovery import open_writer, recover
from phase1.runtime.durable import DurableQueue
from phase1.sim.disk import DiskOp, SimDisk
from phase1.snapshot import write_snapshot
from phase1.wal import encode_records, read_wal

WAL = "data/wal.log"
SNAP = "data/snapshot.json"
T0_S = 1_704_103_200.0  # 2024-01-01T10:00:00Z
NOW_S = T0_S + 100.0  # when recovery runs
MAX_RETRY = 3
TIMEOUT_S = 5.0


def sim_config(**changes: object) -> Config:
    settings: dict[str, object] = {
        "wal_path": WAL,
        "snapshot_path": SNAP,
        "max_retry": MAX_RETRY,
        "task_timeout_s": TIMEOUT_S,
    }
    return Config().replace(**(settings | changes))


def new_core() -> QueueCore:
    return QueueCore(max_retry=MAX_RETRY, task_timeout_s=TIMEOUT_S)


def sim_disk() -> SimDisk:
    disk = SimDisk()
    disk.makedirs("data")
    return disk


def put_durable(disk: SimDisk, path: str, data: bytes) -> None:
    """Create ``path`` holding ``data``, bytes and name durable."""
    disk.write(path, data)
    disk.fsync(path)
    disk.fsync_dir("data")


def settled(state: CoreState, now_s: float, config: Config) -> CoreState:
    """What recovery must rebuild from ``state``: the same jobs, in-flight ones settled."""
    core = QueueCore.restore(
        state, max_retry=config.max_retry, task_timeout_s=config.task_timeout_s
    )
    core.settle(now_s)
    core.check()
    return core.export()


def busy_records() -> list[Record]:
    """18 records: three jobs and a late one through ENQUEUE/DISPATCH/ACK/FAIL/RETRY/TIMEOUT,
    a dependency, and one job left in flight at the end."""
    core = new_core()
    out: list[Record] = []
    t = T0_S
    out += core.enqueue(
        [Job("a", {"n": 1}), Job("b", priority=3), Job("c", depends_on=("a",))], t
    ).records
    out += core.dispatch(t, worker_id=1, limit=2).records  # b, then a (c is blocked)
    out += core.ack("b", 1, t + 1).records
    out += core.fail("a", 1, t + 1, "boom").records  # FAIL, RETRY
    out += core.dispatch(t + 2, worker_id=2).records  # a, attempt 2
    out += core.ack("a", 2, t + 3).records  # unblocks c
    out += core.enqueue([Job("d", [1, "x"])], t + 3).records
    out += core.dispatch(t + 4, limit=2).records  # c, d
    out += core.tick(t + 20).records  # TIMEOUT + RETRY for c and d
    out += core.dispatch(t + 21).records  # c, attempt 2, left in flight
    assert [r.seq for r in out] == list(range(1, len(out) + 1))
    assert {r.type for r in out} == {"ENQUEUE", "DISPATCH", "ACK", "FAIL", "RETRY", "TIMEOUT"}
    return out


def replayed(records: list[Record], base: CoreState | None = None) -> QueueCore:
    core = (
        new_core()
        if base is None
        else QueueCore.restore(base, max_retry=MAX_RETRY, task_timeout_s=TIMEOUT_S)
    )
    replay(core, records)
    return core


# == fresh start, snapshot + WAL =========================================================
def test_fresh_start_gives_an_empty_core_and_reports_no_snapshot(tmp_config: Config) -> None:
    folder = Path(tmp_config.wal_path).parent
    before = sorted(folder.iterdir())
    core, report = recover(OsDisk(), tmp_config, now_s=NOW_S)
    assert core.last_seq == 0 and core.is_idle()
    assert set(core.counts().values()) == {0}
    assert report.snapshot_used is None and report.snapshot_last_seq == 0
    assert report.snapshot_jobs == 0 and report.snapshot_damaged == ()
    assert report.wal_segments == () and report.records_read == report.records_replayed == 0
    assert report.torn is None and report.torn_bytes_truncated == 0
    assert report.settle_records == () and report.last_seq == 0
    assert report.summary().startswith("recovered from no snapshot + 0 WAL records")
    assert sorted(folder.iterdir()) == before  # recovery created nothing


def test_snapshot_plus_wal_replays_only_records_after_the_snapshot(tmp_config: Config) -> None:
    cfg = tmp_config.replace(max_retry=MAX_RETRY, task_timeout_s=TIMEOUT_S)
    disk = OsDisk()
    records = busy_records()
    at = 10
    snap = replayed(records[:at]).export()
    write_snapshot(disk, cfg.snapshot_path, snap)
    Path(cfg.wal_path).write_bytes(encode_records(records))  # the WAL still holds 1..at too
    clock = iter([5.0, 5.25])
    core, report = recover(disk, cfg, now_s=NOW_S, timer=lambda: next(clock))
    live = replayed(records)
    assert core.export() == settled(live.export(), NOW_S, cfg)
    assert report.snapshot_used == cfg.snapshot_path
    assert report.snapshot_last_seq == at
    assert report.snapshot_jobs == len(snap.pending) + len(snap.in_flight) + len(snap.completed)
    assert report.snapshot_finished == len(snap.completed) + len(snap.dead) > 0
    assert report.wal_segments == (cfg.wal_path,)
    assert report.records_read == report.records_replayed == len(records) - at
    assert report.wal_last_seq == len(records)
    assert [(r.type, r.job_id, r.attempt) for r in report.settle_records] == [("RETRY", "c", 2)]
    assert report.requeued == 1 and report.dead_lettered == 0
    assert report.last_seq == len(records) + 1 == core.last_seq
    assert report.counts == core.counts()
    assert report.counts["completed"] == 2 and report.counts["pending"] == 2
    assert report.duration_s == pytest.approx(0.25)
    assert f"snapshot {cfg.snapshot_path} (seq {at}" in report.summary()


def test_seed_q1_timeline_snapshot_then_dispatch_ack_dispatch_then_crash(
    tmp_config: Config,
) -> None:
    """T0 snapshot (100 jobs completed), T1 DISPATCH task-101, T2 ACK task-101,
    T3 DISPATCH task-102, T4 crash, T5 recover: snapshot + replay of T1..T3."""
    cfg = tmp_config.replace(max_retry=3, task_timeout_s=TIMEOUT_S)
    disk = OsDisk()
    core = QueueCore(max_retry=3, task_timeout_s=TIMEOUT_S)
    core.enqueue([Job(f"task-{i:03d}", {"i": i}) for i in range(1, 103)], T0_S)
    for i in range(1, 101):
        core.dispatch(T0_S)
        core.ack(f"task-{i:03d}", 1, T0_S)
    write_snapshot(disk, cfg.snapshot_path, core.export())  # T0
    t0_seq = core.last_seq
    wal = list(core.dispatch(T0_S + 1).records)  # T1
    wal += core.ack("task-101", 1, T0_S + 2).records  # T2
    wal += core.dispatch(T0_S + 3).records  # T3
    assert [(r.type, r.job_id) for r in wal] == [
        ("DISPATCH", "task-101"),
        ("ACK", "task-101"),
        ("DISPATCH", "task-102"),
    ]
    Path(cfg.wal_path).write_bytes(encode_records(wal))  # the WAL was emptied at T0
    files = {p.name: p.read_bytes() for p in Path(cfg.wal_path).parent.iterdir()}

    got, report = recover(disk, cfg, now_s=NOW_S)  # T5
    assert report.snapshot_last_seq == t0_seq and report.records_replayed == 3
    assert got.state_of("task-101") is JobState.COMPLETED
    assert got.counts()["completed"] == 101
    assert got.state_of("task-102") is JobState.PENDING
    assert got.get("task-102").attempt == 1  # type: ignore[union-attr]
    assert [(r.type, r.job_id, r.attempt) for r in report.settle_records] == [
        ("RETRY", "task-102", 1)
    ]
    # Replaying the same WAL again (nothing was written in between) gives the same state.
    again, report2 = recover(disk, cfg, now_s=NOW_S)
    assert again.export() == got.export()
    assert report2.records_replayed == 3 and report2.settle_records == report.settle_records
    assert {p.name: p.read_bytes() for p in Path(cfg.wal_path).parent.iterdir()} == files


# == torn tail vs corruption =============================================================
TORN_TAILS = {
    "half a line": lambda line: line[: len(line) // 2],
    "line without its newline": lambda line: line[:-1],
    "zeros from a power loss": lambda line: bytes(len(line)),
    "garbage": lambda line: b"\xff\xfe not json\n",
}


@pytest.mark.parametrize("tail", sorted(TORN_TAILS))
def test_torn_tail_is_truncated_and_the_next_append_reads_clean(
    tmp_config: Config, tail: str
) -> None:
    cfg = tmp_config.replace(max_retry=MAX_RETRY, task_timeout_s=TIMEOUT_S)
    records = busy_records()
    good = encode_records(records[:8])
    torn = TORN_TAILS[tail](encode_records(records[8:9]))
    wal = Path(cfg.wal_path)
    wal.write_bytes(good + torn)
    disk = OsDisk()

    # truncate=False reports the tail and changes no byte
    _, looked = recover(disk, cfg, now_s=NOW_S, truncate=False)
    assert looked.torn is not None and looked.torn_bytes_truncated == 0
    assert wal.read_bytes() == good + torn

    core, report = recover(disk, cfg, now_s=NOW_S)
    assert report.torn is not None
    assert report.torn.offset == len(good) and report.torn.line == 9
    assert report.torn_bytes_truncated == len(torn)
    assert wal.stat().st_size == len(good)
    assert report.records_replayed == 8 and report.wal_last_seq == 8
    assert "torn tail" in report.summary()
    assert core.export() == settled(replayed(records[:8]).export(), NOW_S, cfg)

    writer = open_writer(disk, cfg, report)
    step = core.enqueue([Job("after-crash")], NOW_S)
    writer.append(step.records)
    writer.sync()
    writer.close()
    read = read_wal(disk, cfg.wal_path)
    assert read.torn is None
    assert [r.seq for r in read.records] == list(range(1, core.last_seq + 1))
    assert read.records[-1].job_id == "after-crash"


def test_bad_middle_line_is_corruption_with_location_and_changes_nothing(
    tmp_config: Config,
) -> None:
    records = busy_records()
    lines = [encode_records([r]) for r in records]
    bad = bytearray(lines[4])
    bad[20] ^= 0x01  # one flipped bit in line 5
    lines[4] = bytes(bad)
    wal = Path(tmp_config.wal_path)
    wal.write_bytes(b"".join(lines))
    write_snapshot(OsDisk(), tmp_config.snapshot_path, replayed(records[:2]).export())
    before = {p.name: p.read_bytes() for p in wal.parent.iterdir()}
    with pytest.raises(WalCorruptionError) as info:
        recover(OsDisk(), tmp_config, now_s=NOW_S)
    err = info.value
    assert err.path == str(wal) and err.line == 5
    assert err.offset == sum(len(x) for x in lines[:4])
    assert f"{wal}: line 5, byte offset {err.offset}" in str(err)
    assert {p.name: p.read_bytes() for p in wal.parent.iterdir()} == before


def test_gap_between_snapshot_and_wal_names_the_missing_records() -> None:
    disk = sim_disk()
    cfg = sim_config()
    records = busy_records()
    write_snapshot(disk, SNAP, replayed(records[:5]).export())
    put_durable(disk, WAL, encode_records(records[7:]))  # 6 and 7 are lost
    before = disk.snapshot_files()
    with pytest.raises(WalCorruptionError, match=r"records 6\.\.7 are missing") as info:
        recover(disk, cfg, now_s=NOW_S)
    assert info.value.seq == 8 and info.value.path == WAL
    assert disk.snapshot_files() == before


# == every byte boundary =================================================================
@pytest.mark.parametrize("snapshot_at", [0, 6])
def test_cutting_the_wal_at_every_byte_loses_no_complete_record(snapshot_at: int) -> None:
    """A crash can leave any prefix of the WAL's bytes.  Recovery never raises, applies
    every record whose whole line survived, cuts the rest, and the next append is clean."""
    cfg = sim_config()
    records = busy_records()
    base = replayed(records[:snapshot_at]).export() if snapshot_at else None
    tail = records[snapshot_at:]
    data = encode_records(tail)
    ends = [0]
    for r in tail:
        ends.append(ends[-1] + len(encode_records([r])))
    expected = [
        settled(replayed(tail[:n], base).export(), NOW_S, cfg) for n in range(len(tail) + 1)
    ]
    for cut in range(len(data) + 1):
        disk = sim_disk()
        if base is not None:
            write_snapshot(disk, SNAP, base)
        put_durable(disk, WAL, data[:cut])
        core, report = recover(disk, cfg, now_s=NOW_S)
        whole = data[:cut].count(b"\n")  # records whose full line survived
        where = f"cut at byte {cut} of {len(data)}"
        assert report.records_replayed == whole, where
        assert report.wal_last_seq == snapshot_at + whole, where
        assert core.export() == expected[whole], where
        assert (report.torn is None) == (cut == ends[whole]), where
        assert report.torn_bytes_truncated == cut - ends[whole], where
        assert disk.size(WAL) == ends[whole], where
        core.check()
        writer = open_writer(disk, cfg, report)
        writer.append(core.enqueue([Job("next")], NOW_S).records)
        writer.sync()
        read = read_wal(disk, WAL)
        assert read.torn is None, where
        assert read.last_seq == core.last_seq, where
        assert read.records[-1].job_id == "next", where


# == crash while a snapshot is written ===================================================
class CrashNow(Exception):
    """The process dies here (raised from SimDisk's op hook, after the op happened)."""


def busy_queue(disk: SimDisk, clock: ManualClock, cfg: Config) -> DurableQueue:
    """A queue with two snapshots behind it, closed WAL segments, and work in every state."""
    q = DurableQueue(cfg, disk=disk, clock=clock)
    q.submit([Job(f"j{i}", {"i": i}, priority=i % 3) for i in range(6)])
    q.dispatch(worker_id=1, limit=2)  # j2, j5
    q.ack("j2", 1)
    q.snapshot()
    clock.advance(1.0)
    q.fail("j5", 1, "boom")
    q.submit([Job("k0", depends_on=("j2",)), Job("k1", depends_on=("j5",))])
    q.dispatch(worker_id=2, limit=3)
    q.snapshot()
    clock.advance(1.0)
    q.submit([Job("late", scheduled_at=clock.wall_s() + 60.0)])
    q.dispatch(worker_id=3, limit=2)
    q.ack("j5", 2)
    q.dispatch(worker_id=3, limit=1)  # something is in flight at the crash
    assert q.counts()["in_flight"] >= 1 and q.counts()["completed"] >= 2
    return q


@pytest.mark.parametrize("kind", ["process", "power"])
def test_crash_at_every_step_of_a_snapshot_recovers_the_same_state(kind: str) -> None:
    cfg = sim_config(commit_policy="always")
    probe_disk = sim_disk()
    probe = busy_queue(probe_disk, ManualClock(T0_S), cfg)
    start = len(probe_disk.op_log)
    written = probe.snapshot()
    steps = len(probe_disk.op_log) - start
    assert steps >= 6  # rotate, write, fsync, renames, fsync_dir, drop
    used: set[int] = set()
    for k in range(steps + 1):
        disk = sim_disk()
        clock = ManualClock(T0_S)
        q = busy_queue(disk, clock, cfg)
        before = q.core.export()
        crash_at = start + k

        def die(op: DiskOp, crash_at: int = crash_at) -> None:
            if op.index == crash_at:
                raise CrashNow(op)

        disk.on_op = die
        try:
            q.snapshot()
            assert k == steps
        except CrashNow:
            assert k < steps
        disk.on_op = None
        disk.crash(kind)  # type: ignore[arg-type]
        where = f"{kind} crash after op {k} of the snapshot"
        again = DurableQueue(cfg, disk=disk, clock=clock)
        assert again.core.export() == settled(before, clock.wall_s(), cfg), where
        used.add(again.recovery.snapshot_last_seq)
        # the queue works on: a new job and a new snapshot survive another power loss
        again.submit([Job("after")])
        again.snapshot()
        expect = again.core.export()
        disk.crash("power")
        third, _ = recover(disk, cfg, now_s=clock.wall_s())
        assert third.export() == settled(expect, clock.wall_s(), cfg), where
    assert written.last_seq in used and len(used) == 2  # crashes before and after the rename


# == damaged snapshots ===================================================================
def test_damaged_newest_snapshot_falls_back_and_its_wal_segments_are_still_there() -> None:
    cfg = sim_config(snapshots_kept=2)
    disk = sim_disk()
    clock = ManualClock(T0_S)
    q = busy_queue(disk, clock, cfg)
    older = q.snapshot().last_seq
    q.submit([Job("after-older")])
    q.dispatch(limit=2)
    newest = q.snapshot().last_seq
    q.submit([Job("after-newest")])
    before = q.core.export()
    assert older < newest
    data = bytearray(disk.read(SNAP))
    data[len(data) // 2] ^= 0x20
    put_durable(disk, SNAP, bytes(data))
    disk.crash("power")

    core, report = recover(disk, cfg, now_s=clock.wall_s())
    assert [path for path, _ in report.snapshot_damaged] == [SNAP]
    assert "checksum" in report.snapshot_damaged[0][1]
    assert report.snapshot_used == SNAP + ".1" and report.snapshot_last_seq == older
    assert report.wal_segments[0] == f"{WAL}.{newest:012d}"  # records older+1..newest
    assert report.records_replayed == before.last_seq - older
    assert "1 damaged snapshot(s) skipped" in report.summary()
    assert core.export() == settled(before, clock.wall_s(), cfg)


# == jobs that kill the process ==========================================================
def test_poison_job_is_dead_lettered_after_max_retry_crashes_others_unaffected() -> None:
    cfg = sim_config(max_retry=3)
    disk = sim_disk()
    clock = ManualClock(T0_S)
    q = DurableQueue(cfg, disk=disk, clock=clock)
    q.submit([Job("poison", priority=9), Job("ok-1", priority=5), Job("ok-2")])
    q.dispatch(limit=1)  # poison
    q.dispatch(limit=1)  # ok-1
    q.ack("ok-1", 1)
    for attempt in range(1, 4):
        assert q.core.in_flight()["poison"].attempt == attempt
        disk.crash("process")  # the worker took the whole process down
        clock.advance(1.0)
        q = DurableQueue(cfg, disk=disk, clock=clock)
        if attempt < 3:
            assert q.recovery.requeued == 1 and q.recovery.dead_lettered == 0
            assert q.core.state_of("poison") is JobState.PENDING
            assert [e.job.id for e in q.dispatch(limit=1).effects] == ["poison"]  # type: ignore[union-attr]
    assert q.recovery.dead_lettered == 1
    reason = q.core.dead_reasons()["poison"]
    assert "process stopped during attempt 3" in reason and "max_retry 3" in reason
    assert q.core.state_of("ok-1") is JobState.COMPLETED
    assert q.core.get("ok-2") is not None and q.core.get("ok-2").attempt == 0  # type: ignore[union-attr]
    assert [e.job.id for e in q.dispatch(limit=5).effects] == ["ok-2"]  # type: ignore[union-attr]


def test_in_flight_at_max_retry_is_dead_at_settle_and_stays_dead() -> None:
    cfg = sim_config(max_retry=2)
    disk = sim_disk()
    core = QueueCore(max_retry=2, task_timeout_s=TIMEOUT_S)
    records = list(core.enqueue([Job("x"), Job("child", depends_on=("x",))], T0_S).records)
    records += core.dispatch(T0_S).records
    records += core.fail("x", 1, T0_S + 1, "boom").records  # RETRY: attempt 1 < 2
    records += core.dispatch(T0_S + 2).records  # attempt 2 == max_retry, then the crash
    put_durable(disk, WAL, encode_records(records))

    got, report = recover(disk, cfg, now_s=NOW_S)
    assert [(r.type, r.job_id) for r in report.settle_records] == [
        ("DEAD", "x"),
        ("DEAD", "child"),
    ]
    assert report.dead_lettered == 2 and report.requeued == 0
    assert "process stopped during attempt 2" in got.dead_reasons()["x"]
    assert got.dead_reasons()["child"] == "dependency 'x' is dead"
    open_writer(disk, cfg, report).close()  # recovery's decisions are made durable first
    disk.crash("power")
    again, report2 = recover(disk, cfg, now_s=NOW_S + 1)
    assert report2.settle_records == () and again.export() == got.export()


def test_restore_cascades_like_replay() -> None:
    """Recovering from a snapshot must decide what recovering from the WAL decides: the
    same DEAD records, in the same order, with the same reasons."""
    core = new_core()
    core.enqueue(
        [
            Job("a"),
            Job("x", depends_on=("a",)),
            Job("y", priority=5, depends_on=("a",)),
            Job("z", depends_on=("x", "y")),
        ],
        T0_S,
    )
    restored = QueueCore.restore(core.export(), max_retry=MAX_RETRY, task_timeout_s=TIMEOUT_S)
    replayed_step = core.cancel("a", T0_S + 1)
    restored_step = restored.cancel("a", T0_S + 1)
    assert restored_step.records == replayed_step.records
    assert restored.dead_reasons() == core.dead_reasons()


def test_pack_payloads_from_the_config_reaches_the_recovered_core(tmp_path: Path) -> None:
    from phase1.disk import OsDisk
    from phase1.runtime.durable import DurableQueue

    cfg = Config().replace(
        wal_path=str(tmp_path / "wal.log"),
        snapshot_path=str(tmp_path / "snapshot.json"),
        pack_payloads=True,
    )
    payload = {"n": 1, "xs": [1, 2]}
    with DurableQueue(cfg) as q:
        q.submit([Job("a", payload)])
        assert q.core.pack_payloads and q.core.get("a").payload == payload
        q.snapshot()
        q.submit([Job("b", payload)])
    core, _ = recover(OsDisk(), cfg)
    assert core.pack_payloads
    assert core.get("a").payload == payload and core.get("b").payload == payload
