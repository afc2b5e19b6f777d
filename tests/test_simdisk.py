"""SimDisk: what a process crash keeps, what a power loss may drop, and the explorer's hooks."""

from __future__ import annotations

import errno
import random
from itertools import product

import pytest
import simpy

from phase1.clock import Clock
from phase1.core import QueueCore, Record
from phase1.disk import Disk
from phase1.jobs import Job
from phase1.sim import SimClock, SimDisk
from phase1.sim.disk import DiskOp, PendingOp

WAL = "data/wal.log"


def disk_with_folder() -> SimDisk:
    disk = SimDisk()
    disk.makedirs("data")
    return disk


def durable_new_file(disk: SimDisk, path: str, data: bytes) -> None:
    """Create ``path`` with ``data`` and make both bytes and name durable."""
    disk.write(path, data)
    disk.fsync(path)
    disk.fsync_dir("data")


def three_appends() -> SimDisk:
    disk = disk_with_folder()
    durable_new_file(disk, WAL, b"")
    for chunk in (b"aaaa", b"bbbb", b"cccc"):
        disk.append(WAL, chunk)
    return disk


# -- the protocol --------------------------------------------------------------------------
def test_simdisk_and_simclock_satisfy_the_protocols() -> None:
    assert isinstance(SimDisk(), Disk)
    assert isinstance(SimClock(simpy.Environment()), Clock)


def test_os_errors_are_mirrored() -> None:
    disk = disk_with_folder()
    with pytest.raises(FileNotFoundError):
        disk.read("data/missing")
    with pytest.raises(FileNotFoundError):
        disk.size("data/missing")
    with pytest.raises(FileNotFoundError):
        disk.fsync("data/missing")
    with pytest.raises(FileNotFoundError):
        disk.truncate("data/missing", 0)
    with pytest.raises(FileNotFoundError):
        disk.unlink("data/missing")
    with pytest.raises(FileNotFoundError):
        disk.rename("data/missing", "data/other")
    with pytest.raises(FileNotFoundError):
        disk.append("nofolder/wal.log", b"x")  # the folder must exist, as on a real disk
    with pytest.raises(FileNotFoundError):
        disk.fsync_dir("nofolder")
    with pytest.raises(IsADirectoryError):
        disk.read("data")
    assert disk.listdir("nofolder") == []
    assert not disk.exists("data/missing")


def test_paths_are_normalised_and_listdir_is_sorted_names() -> None:
    disk = SimDisk()
    disk.makedirs("./data//sub/")
    disk.write("data/b.json", b"b")
    disk.append("./data/a.log", b"a")
    assert disk.exists("data/sub") and disk.exists("data")
    assert disk.listdir("data") == ["a.log", "b.json", "sub"]
    assert disk.listdir(".") == ["data"]
    assert disk.read("data/./a.log") == b"a"
    assert disk.size("data/b.json") == 1


def test_write_replaces_truncate_shrinks_and_grows_with_zeros() -> None:
    disk = disk_with_folder()
    disk.write("data/f", b"hello world")
    disk.write("data/f", b"bye")
    assert disk.read("data/f") == b"bye"
    disk.truncate("data/f", 1)
    assert disk.read("data/f") == b"b"
    disk.truncate("data/f", 3)
    assert disk.read("data/f") == b"b\0\0"
    disk.check()


# -- process crash ----------------------------------------------------------------------------
def test_append_then_process_crash_keeps_the_bytes_and_names() -> None:
    disk = disk_with_folder()
    disk.append(WAL, b"record\n")  # never fsynced, name never fsynced
    assert disk.open_handles == [WAL]
    crash = disk.crash("process")
    assert crash.kind == "process"
    assert disk.read(WAL) == b"record\n"
    assert disk.open_handles == []
    assert disk.snapshot_files() == {WAL: b"record\n"}


# -- power loss: data -------------------------------------------------------------------------
def test_append_then_power_loss_without_fsync_loses_the_bytes() -> None:
    disk = disk_with_folder()
    durable_new_file(disk, WAL, b"old\n")
    disk.append(WAL, b"new\n")
    disk.crash("power", rng=None)
    assert disk.read(WAL) == b"old\n"


def test_append_with_fsync_survives_power_loss() -> None:
    disk = disk_with_folder()
    durable_new_file(disk, WAL, b"old\n")
    disk.append(WAL, b"new\n")
    disk.fsync(WAL)
    disk.append(WAL, b"lost\n")
    assert disk.durable_files() == {WAL: b"old\nnew\n"}
    disk.crash("power")
    assert disk.read(WAL) == b"old\nnew\n"
    assert disk.pending_writes(WAL) == ()


def test_truncate_is_volatile_until_fsync() -> None:
    disk = disk_with_folder()
    durable_new_file(disk, WAL, b"good\ntorn")
    disk.truncate(WAL, 5)
    assert disk.apply_power_loss().read(WAL) == b"good\ntorn"
    disk.fsync(WAL)
    assert disk.apply_power_loss().read(WAL) == b"good\n"


# -- power loss: names ------------------------------------------------------------------------
def test_new_file_fsynced_but_folder_not_fsynced_vanishes() -> None:
    disk = disk_with_folder()
    disk.write("data/snap.json", b"{}")
    disk.fsync("data/snap.json")
    assert disk.durable_files() == {}
    disk.crash("power", rng=random.Random(1))
    assert not disk.exists("data/snap.json")
    assert disk.listdir("data") == []
    assert disk.exists("data")  # folders are durable at makedirs


def test_rename_without_fsync_dir_reverts_and_with_it_sticks() -> None:
    disk = disk_with_folder()
    durable_new_file(disk, "data/snap.json", b"old")
    durable_new_file(disk, "data/snap.json.tmp", b"")
    disk.write("data/snap.json.tmp", b"new")
    disk.fsync("data/snap.json.tmp")
    disk.rename("data/snap.json.tmp", "data/snap.json")
    assert disk.read("data/snap.json") == b"new"

    lost = disk.apply_power_loss()
    assert lost.snapshot_files() == {"data/snap.json": b"old", "data/snap.json.tmp": b"new"}

    disk.fsync_dir("data")
    kept = disk.apply_power_loss()
    assert kept.snapshot_files() == {"data/snap.json": b"new"}


def test_unlink_without_fsync_dir_reverts() -> None:
    disk = disk_with_folder()
    durable_new_file(disk, "data/wal.000001.log", b"closed segment")
    disk.unlink("data/wal.000001.log")
    assert not disk.exists("data/wal.000001.log")
    assert disk.apply_power_loss().read("data/wal.000001.log") == b"closed segment"
    disk.fsync_dir("data")
    assert not disk.apply_power_loss().exists("data/wal.000001.log")
    disk.check()


# -- torn writes and determinism -----------------------------------------------------------------
def test_torn_write_keeps_an_exact_prefix_of_the_last_kept_append() -> None:
    disk = three_appends()
    after = disk.apply_power_loss({WAL: 2}, {WAL: 3})
    assert after.read(WAL) == b"aaaabbb"
    # seeded power losses: every outcome is durable bytes + whole appends + a prefix
    full = b"aaaabbbbcccc"
    for seed in range(50):
        copy = disk.copy()
        crash = copy.crash("power", rng=random.Random(seed), torn=True)
        got = copy.read(WAL)
        assert full.startswith(got)
        if WAL in crash.cut_bytes:
            assert len(got) % 4 != 0 or crash.cut_bytes[WAL] == 0


def test_zero_fill_replaces_the_cut_with_zero_bytes() -> None:
    disk = three_appends()
    after = disk.apply_power_loss({WAL: 3}, {WAL: 1}, zero_fill=True)
    assert after.read(WAL) == b"aaaabbbbc\0\0\0"
    assert disk.apply_power_loss({WAL: 3}, {WAL: 1}).read(WAL) == b"aaaabbbbc"


def test_torn_replace_write_keeps_a_prefix_of_the_new_contents() -> None:
    disk = disk_with_folder()
    durable_new_file(disk, "data/f", b"old contents")
    disk.write("data/f", b"new!")
    assert disk.apply_power_loss({"data/f": 1}, {"data/f": 2}).read("data/f") == b"ne"


def test_the_same_seed_gives_the_same_crash_state() -> None:
    def run(seed: int) -> tuple[object, dict[str, bytes]]:
        disk = three_appends()
        disk.write("data/other", b"x" * 100)
        disk.fsync_dir("data")
        disk.append("data/other", b"y" * 100)
        crash = disk.crash("power", rng=random.Random(seed), zero_fill=True)
        return crash, disk.snapshot_files()

    assert run(7) == run(7)
    assert len({repr(run(s)) for s in range(20)}) > 1  # the seed matters


def test_crash_report_reproduces_the_state_with_apply_power_loss() -> None:
    disk = three_appends()
    expected = disk.copy()
    crash = expected.crash("power", rng=random.Random(3))
    again = disk.apply_power_loss(crash.keep, crash.cut_bytes, crash.zero_fill)
    assert again.snapshot_files() == expected.snapshot_files()


def test_enumerating_keep_counts_of_three_appends_gives_four_states() -> None:
    disk = three_appends()
    pending = disk.pending_at_power_loss()[WAL]
    assert [op.kind for op in pending] == ["append"] * 3
    whole = {disk.apply_power_loss({WAL: k}).read(WAL) for k in range(len(pending) + 1)}
    assert whole == {b"", b"aaaa", b"aaaabbbb", b"aaaabbbbcccc"}
    # plus every cut of the last kept append: 12 distinct prefixes + the empty file
    torn = {
        disk.apply_power_loss({WAL: k}, {WAL: cut}).read(WAL)
        for k in range(1, len(pending) + 1)
        for cut in range(len(pending[k - 1].data) + 1)
    }
    assert len(whole | torn) == 13
    assert disk.snapshot_files() == {WAL: b"aaaabbbbcccc"}  # the source is unchanged


def test_enumeration_over_two_files_is_a_product() -> None:
    disk = three_appends()
    durable_new_file(disk, "data/b", b"")
    disk.append("data/b", b"1")
    disk.append("data/b", b"2")
    choices = disk.pending_at_power_loss()
    states = {
        tuple(disk.apply_power_loss({WAL: i, "data/b": j}).snapshot_files().items())
        for i, j in product(range(len(choices[WAL]) + 1), range(len(choices["data/b"]) + 1))
    }
    assert len(states) == 4 * 3


def test_impossible_choices_are_refused() -> None:
    disk = three_appends()
    with pytest.raises(ValueError, match="3 pending ops"):
        disk.apply_power_loss({WAL: 4})
    with pytest.raises(ValueError, match="kept write/append"):
        disk.apply_power_loss({}, {WAL: 1})
    with pytest.raises(ValueError, match="not a file"):
        disk.apply_power_loss({"data/nope": 1})


# -- faults and counters -------------------------------------------------------------------------
def test_fail_fsync_after_raises_eio_and_keeps_data_volatile() -> None:
    disk = SimDisk(fail_fsync_after=1)
    disk.makedirs("data")
    disk.append(WAL, b"one\n")
    disk.fsync(WAL)
    disk.fsync_dir("data")
    disk.append(WAL, b"two\n")
    with pytest.raises(OSError) as info:
        disk.fsync(WAL)
    assert info.value.errno == errno.EIO
    assert disk.fsync_count == 2
    assert disk.op_log[-1].kind == "fsync" and not disk.op_log[-1].ok
    assert disk.read(WAL) == b"one\ntwo\n"
    assert disk.durable_files() == {WAL: b"one\n"}


def test_fail_fsync_dir_after_raises_eio() -> None:
    disk = SimDisk(fail_fsync_dir_after=0)
    disk.makedirs("data")
    disk.write("data/f", b"x")
    with pytest.raises(OSError) as info:
        disk.fsync_dir("data")
    assert info.value.errno == errno.EIO
    assert disk.durable_files() == {}


def test_op_log_records_ops_in_order_with_sizes_and_counters() -> None:
    seen: list[DiskOp] = []
    disk = SimDisk(on_op=seen.append)
    disk.makedirs("data")
    disk.write("data/s.tmp", b"12345")
    disk.fsync("data/s.tmp")
    disk.append(WAL, b"abc")
    disk.append(WAL, b"de")
    disk.truncate(WAL, 4)
    disk.rename("data/s.tmp", "data/s")
    disk.unlink("data/s")
    disk.fsync_dir("data")
    disk.read(WAL)  # reads are not logged
    assert [(op.index, op.kind, op.path, op.dst, op.size, op.offset) for op in disk.op_log] == [
        (0, "makedirs", "data", None, 0, 0),
        (1, "write", "data/s.tmp", None, 5, 0),
        (2, "fsync", "data/s.tmp", None, 5, 0),
        (3, "append", WAL, None, 3, 0),
        (4, "append", WAL, None, 2, 3),
        (5, "truncate", WAL, None, 4, 0),
        (6, "rename", "data/s.tmp", "data/s", 0, 0),
        (7, "unlink", "data/s", None, 0, 0),
        (8, "fsync_dir", "data", None, 1, 0),
    ]
    assert seen == disk.op_log
    assert disk.bytes_written == 10
    assert disk.fsync_count == 1 and disk.fsync_dir_count == 1
    assert disk.pending_writes(WAL) == (
        PendingOp("append", 0, b"abc"),
        PendingOp("append", 3, b"de"),
        PendingOp("truncate", 4),
    )


def test_log_ops_false_skips_only_the_log_of_appends_and_fsyncs() -> None:
    """The harness's disk (``log_ops=False``) keeps the same bytes, pending ops and power-loss
    outcome as a logging disk, and logs only the ops other than append/fsync."""
    disks = [SimDisk(), SimDisk(log_ops=False)]
    for disk in disks:
        disk.makedirs("data")
        disk.write(WAL, b"")
        disk.fsync(WAL)
        disk.fsync_dir("data")
        disk.append(WAL, b"abcd")
        disk.append(WAL, bytearray(b"ef"))
        disk.fsync(WAL)
        disk.truncate(WAL, 5)
        disk.append(WAL, b"ghij")
        disk.append(WAL, b"kl")
    logging, quiet = disks
    assert quiet.read(WAL) == logging.read(WAL) == b"abcdeghijkl"
    assert quiet.durable_files() == logging.durable_files() == {WAL: b"abcdef"}
    assert quiet.pending_writes(WAL) == logging.pending_writes(WAL)
    assert quiet.fsync_count == logging.fsync_count == 2
    assert quiet.bytes_written == logging.bytes_written == 12
    assert [op.kind for op in quiet.op_log] == ["makedirs", "write", "fsync_dir", "truncate"]
    assert [op.kind for op in logging.op_log].count("append") == 4
    quiet.check()
    for disk in disks:
        disk.crash("power", random.Random(5), torn=True, zero_fill=True)
    assert quiet.durable_files() == logging.durable_files()
    assert quiet.read(WAL) == logging.read(WAL)


def test_state_round_trips_and_is_a_deep_copy() -> None:
    disk = three_appends()
    state = disk.state()
    clone = SimDisk.from_state(state)
    assert clone.state() == state
    disk.append(WAL, b"more")
    disk.fsync(WAL)
    assert clone.read(WAL) == b"aaaabbbbcccc"
    assert clone.durable_files() == {WAL: b""}
    assert state == SimDisk.from_state(state).state()
    clone.check()


# -- SimClock --------------------------------------------------------------------------------------
def test_simclock_reads_env_now_and_refuses_to_sleep() -> None:
    env = simpy.Environment()
    clock = SimClock(env, epoch_s=1_700_000_000.0)

    def proc() -> simpy.events.ProcessGenerator:
        yield env.timeout(2.5)

    env.process(proc())
    env.run()
    assert clock.now_s() == clock.wall_s() == 1_700_000_002.5
    with pytest.raises(RuntimeError, match="env.timeout"):
        clock.sleep(1)


# -- integration with the real WAL --------------------------------------------------------------------
def _records(n: int) -> list[Record]:
    core = QueueCore()
    return list(core.enqueue([Job(id=f"job-{i}", payload={"i": i}) for i in range(n)], 1.0).records)


@pytest.mark.parametrize("batch", [False, True])
def test_wal_policy_always_survives_power_loss(batch: bool) -> None:
    from phase1.wal import WalWriter, read_wal

    disk = SimDisk()
    writer = WalWriter(disk, WAL, next_seq=1, policy="always")
    records = _records(5)
    if batch:
        writer.append(records, now_s=1.0)
    else:
        for rec in records:
            writer.append([rec], now_s=1.0)
    assert writer.durable_seq == 5
    disk.crash("power", rng=random.Random(0))
    assert read_wal(disk, WAL).records == records


def test_wal_policy_never_loses_records_on_power_loss_but_not_on_process_crash() -> None:
    from phase1.wal import WalWriter, read_wal

    disk = SimDisk()
    writer = WalWriter(disk, WAL, next_seq=1, policy="never")
    records = _records(3)
    writer.append(records, now_s=1.0)
    after_kill = disk.copy()
    after_kill.crash("process")
    assert read_wal(after_kill, WAL).records == records
    disk.crash("power", rng=None)
    assert read_wal(disk, WAL).records == []


def test_snapshot_write_is_atomic_at_every_power_loss_point() -> None:
    """Crash after each disk op of a second ``write_snapshot``: the old or the new loads."""
    from phase1.snapshot import load_snapshot, write_snapshot

    core = QueueCore()
    core.enqueue([Job(id="a")], 1.0)
    old = core.export()
    core.enqueue([Job(id="b")], 2.0)
    new = core.export()

    disk = SimDisk()
    write_snapshot(disk, "data/snapshot.json", old)
    points: list[SimDisk] = []
    disk.on_op = lambda _op: points.append(disk.copy())
    write_snapshot(disk, "data/snapshot.json", new)
    assert len(points) >= 4
    for i, point in enumerate(points):
        choices = point.pending_at_power_loss()
        none_kept = point.apply_power_loss()
        all_kept = point.apply_power_loss({p: len(ops) for p, ops in choices.items()})
        for after in (none_kept, all_kept):
            loaded = load_snapshot(after, "data/snapshot.json")
            assert loaded.state in (old, new), f"crash after op {i}: {point.op_log[i]}"
    final = disk.apply_power_loss()
    assert load_snapshot(final, "data/snapshot.json").state == new
