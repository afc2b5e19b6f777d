"""Snapshot format, atomic write with retention, crash safety, fallback and jq recipes."""

from __future__ import annotations

import random
import shutil
import subprocess
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from phase1.core import CoreState, QueueCore
from phase1.disk import OsDisk, folder_of
from phase1.errors import SnapshotError
from phase1.jobs import Job
from phase1.snapshot import (
    SCHEMA_VERSION,
    NewerSnapshotError,
    decode_snapshot,
    describe_snapshot,
    encode_snapshot,
    kept_snapshot_paths,
    load_snapshot,
    oldest_kept_last_seq,
    write_snapshot,
)


# == a state from a real core =============================================================
def busy_core() -> QueueCore:
    """A core with every kind of state: priorities, delays, dependencies, in flight,
    completed, dead (failed to max_retry, and a dependent cascaded), and a FAILED job."""
    core = QueueCore(max_retry=2, task_timeout_s=5.0)
    core.enqueue(
        [
            Job("a", {"n": 1}),
            Job("b", [1, 2, "x"], priority=5),
            Job("c", "text", priority=5),
            Job("later", None, scheduled_at=100.0),
            Job("child", {"k": "v"}, depends_on=("a",)),
            Job("doomed", 7, priority=9),
            Job("orphan", None, depends_on=("doomed",)),
            Job("uni", {"s": "é ✓ \u2028", "checksum": 3}, priority=1),
            Job("tail-1", None),
            Job("tail-2", None, priority=1),
        ],
        now_s=0.0,
    )
    # doomed (prio 9) goes first; fail it twice -> DEAD, orphan cascades.
    for attempt in (1, 2):
        send = core.dispatch(now_s=1.0, worker_id=1).effects[0]
        assert send.job.id == "doomed"  # type: ignore[union-attr]
        core.fail("doomed", attempt=attempt, now_s=1.5, reason="boom")
    assert core.state_of("orphan") is not None and core.state_of("orphan").value == "dead"  # type: ignore[union-attr]
    step = core.dispatch(now_s=2.0, worker_id=2, limit=2)  # b, c
    assert [e.job.id for e in step.effects] == ["b", "c"]  # type: ignore[union-attr]
    core.ack("b", attempt=1, now_s=2.5)
    core.dispatch(now_s=3.0, worker_id=3, limit=2)  # uni, tail-2
    core.fail("uni", attempt=1, now_s=3.5)  # retried: pending with attempt 1
    a = core.dispatch(now_s=4.0, worker_id=4).effects[0]
    core.ack(a.job.id, attempt=1, now_s=4.1)  # type: ignore[union-attr]
    core.check()
    return core


def failed_state(state: CoreState) -> CoreState:
    """Move one in-flight job into ``failed`` (what a torn FAIL/RETRY pair leaves)."""
    job, _ = state.in_flight[0]

    return CoreState(
        last_seq=state.last_seq,
        pending=state.pending,
        in_flight=state.in_flight[1:],
        failed=[job._replace(status="failed")],
        completed=state.completed,
        dead=state.dead,
    )


def dispatch_order(core: QueueCore) -> list[str]:
    order: list[str] = []
    while True:
        step = core.dispatch(now_s=1e9, worker_id=9)
        if not step.effects:
            return order
        order.append(step.effects[0].job.id)  # type: ignore[union-attr]
        core.ack(order[-1], attempt=step.effects[0].attempt, now_s=1e9)  # type: ignore[union-attr]


def old_and_new() -> tuple[CoreState, CoreState]:
    core = busy_core()
    old = core.export()
    core.enqueue([Job("new-1", {"v": 1})], now_s=5.0)
    core.dispatch(now_s=5.0, worker_id=1)
    return old, core.export()


# == format ================================================================================
def test_round_trip_through_a_real_core() -> None:
    core = busy_core()
    state = core.export()
    assert state.pending and state.in_flight and state.completed and state.dead
    data = encode_snapshot(state)
    back = decode_snapshot(data, path="mem")
    assert back == state
    restored = QueueCore.restore(back, max_retry=2, task_timeout_s=5.0)
    restored.check()
    assert restored.export() == state
    assert restored.in_flight() == core.in_flight()
    assert dispatch_order(restored) == dispatch_order(core)


def test_failed_jobs_round_trip() -> None:
    state = failed_state(busy_core().export())
    assert decode_snapshot(encode_snapshot(state), path="mem") == state


def test_empty_state_round_trips() -> None:
    assert decode_snapshot(encode_snapshot(CoreState()), path="mem") == CoreState()


def test_layout_keys_and_checksum_rule() -> None:
    state = busy_core().export()
    data = encode_snapshot(state)
    assert data.endswith(b"}\n") and data.count(b"\n") == 1
    obj = orjson.loads(data)
    assert list(obj) == [
        "queue",
        "in_flight",
        "completed",
        "dead",
        "last_seq",
        "schema_version",
        "dead_reasons",
        "failed",
        "checksum",
    ]
    assert obj["schema_version"] == SCHEMA_VERSION == 1
    assert obj["last_seq"] == state.last_seq
    assert [j["id"] for j in obj["queue"]] == [j.id for j in state.pending]
    flight = next(iter(obj["in_flight"].values()))
    assert set(flight) == {"worker_id", "deadline_ms", "attempt", "job"}
    assert obj["dead_reasons"] == state.dead
    # independent recomputation: crc32 of every byte before ,"checksum":
    cut = data.rindex(b',"checksum":')
    assert obj["checksum"] == zlib.crc32(data[:cut])
    assert data[cut:] == b',"checksum":' + str(obj["checksum"]).encode() + b"}\n"


def test_every_single_byte_change_is_refused() -> None:
    core = QueueCore()
    core.enqueue([Job("a", {"x": 1}, priority=2), Job("b", None, depends_on=("a",))], 0.0)
    core.dispatch(0.0, worker_id=1)
    data = encode_snapshot(core.export())
    rng = random.Random(7)
    for i in range(len(data)):
        for new in {data[i] ^ 0x01, data[i] ^ 0x20, rng.randrange(256)} - {data[i]}:
            bad = data[:i] + bytes([new]) + data[i + 1 :]
            with pytest.raises(SnapshotError):
                decode_snapshot(bad, path="snap")


def test_truncations_are_refused() -> None:
    data = encode_snapshot(busy_core().export())
    for n in range(len(data)):
        with pytest.raises(SnapshotError):
            decode_snapshot(data[:n], path="snap")


def test_fuzz_garbage_raises_only_snapshot_error() -> None:
    rng = random.Random(1234)
    good = encode_snapshot(busy_core().export())
    samples = [b"", b"\n", b"null", b"[]", b"{}", b'{"checksum":1}\n', b"\xff\xfe", b"1e999"]
    for _ in range(300):
        samples.append(bytes(rng.randrange(256) for _ in range(rng.randrange(64))))
        flipped = bytearray(good)
        for _ in range(rng.randrange(1, 8)):
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        samples.append(bytes(flipped))
    for data in samples:
        if data == good:
            continue
        with pytest.raises(SnapshotError):
            decode_snapshot(data, path="fuzz")


def reseal(obj: dict[str, object]) -> bytes:
    """Re-encode a modified snapshot object with a valid checksum (for shape errors)."""
    body = dict(obj)
    body.pop("checksum", None)
    head = orjson.dumps(body)[:-1]
    return head + b',"checksum":' + str(zlib.crc32(head)).encode() + b"}\n"


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda o: o.pop("queue"), "missing key 'queue'"),
        (lambda o: o.__setitem__("last_seq", "7"), "last_seq"),
        (lambda o: o.__setitem__("queue", {}), "queue is dict"),
        (lambda o: o["queue"][0].__setitem__("attempt", -1), "attempt"),
        (lambda o: o["queue"][0].__setitem__("id", 3), "id"),
        (lambda o: o["queue"].append(dict(o["queue"][0])), "appears twice"),
        (lambda o: o["completed"].append(o["queue"][0]["id"]), "appears twice"),
        (lambda o: o["dead_reasons"].__setitem__("ghost", "x"), "ghost"),
        (lambda o: o.__setitem__("schema_version", 0), "schema_version 0"),
        (lambda o: o.__setitem__("extra", 1), "unknown key 'extra'"),
    ],
)
def test_shape_errors_name_path_and_problem(mutate: object, words: str) -> None:
    obj = orjson.loads(encode_snapshot(busy_core().export()))
    mutate(obj)  # type: ignore[operator]
    with pytest.raises(SnapshotError) as info:
        decode_snapshot(reseal(obj), path="data/snapshot.json")
    assert "data/snapshot.json" in str(info.value) and words in str(info.value)
    assert info.value.path == "data/snapshot.json"


def test_checksum_mismatch_message() -> None:
    data = bytearray(encode_snapshot(busy_core().export()))
    data[data.index(b'"last_seq":') + 11] ^= 0x01  # a digit of last_seq: still valid JSON
    with pytest.raises(SnapshotError, match="checksum mismatch"):
        decode_snapshot(bytes(data), path="p")
    with pytest.raises(SnapshotError, match="not JSON"):
        decode_snapshot(b'{"queue": [', path="p")


def newer_bytes(state: CoreState) -> bytes:
    obj = orjson.loads(encode_snapshot(state))
    obj["schema_version"] = 2
    return reseal(obj)


def test_newer_schema_is_refused() -> None:
    with pytest.raises(NewerSnapshotError) as info:
        decode_snapshot(newer_bytes(busy_core().export()), path="s.json")
    assert str(info.value) == (
        "snapshot s.json: written by a newer phase1 (schema_version 2 > 1); "
        "upgrade phase1, refusing to guess"
    )
    assert isinstance(info.value, SnapshotError)


def test_newer_schema_has_no_fallback(tmp_path: Path) -> None:
    disk = OsDisk()
    path = str(tmp_path / "snapshot.json")
    old, new = old_and_new()
    write_snapshot(disk, path, old)
    write_snapshot(disk, path, new)
    disk.write(path, newer_bytes(new))
    with pytest.raises(NewerSnapshotError):
        load_snapshot(disk, path)


def test_describe() -> None:
    state = failed_state(busy_core().export())
    d = describe_snapshot(state)
    assert d == {
        "schema_version": 1,
        "last_seq": state.last_seq,
        "queue": len(state.pending),
        "in_flight": len(state.in_flight),
        "completed": len(state.completed),
        "dead": len(state.dead),
        "failed": 1,
    }


# == a recording, crashable fake disk ======================================================
class Crash(Exception):
    """The process died here."""


@dataclass
class Inode:
    data: bytes = b""
    durable: bytes | None = None  # contents after the last fsync


@dataclass
class FakeDisk:
    """In-memory Disk.  ``names`` is what a running process sees; ``durable_names`` what a
    power loss keeps (names become durable at ``fsync_dir``, contents at ``fsync``).
    ``crash_at=k`` raises ``Crash`` instead of performing mutating op number ``k``."""

    names: dict[str, Inode] = field(default_factory=dict)
    durable_names: dict[str, Inode] = field(default_factory=dict)
    ops: list[tuple[str, ...]] = field(default_factory=list)
    crash_at: int | None = None

    def _op(self, *op: str) -> None:
        if self.crash_at is not None and len(self.ops) == self.crash_at:
            raise Crash(op)
        self.ops.append(op)

    # queries (not counted)
    def exists(self, path: str) -> bool:
        return path in self.names

    def size(self, path: str) -> int:
        return len(self.names[path].data)

    def listdir(self, folder: str) -> list[str]:
        return sorted(p.rpartition("/")[2] for p in self.names if folder_of(p) == folder)

    def read(self, path: str) -> bytes:
        if path not in self.names:
            raise FileNotFoundError(path)
        return self.names[path].data

    # mutations (counted, crashable)
    def makedirs(self, folder: str) -> None:
        self._op("makedirs", folder)

    def write(self, path: str, data: bytes) -> None:
        self._op("write", path)
        self.names.setdefault(path, Inode()).data = data

    def append(self, path: str, data: bytes) -> None:
        self._op("append", path)
        ino = self.names.setdefault(path, Inode())
        ino.data += data

    def truncate(self, path: str, size: int) -> None:
        self._op("truncate", path)
        self.names[path].data = self.names[path].data[:size]

    def fsync(self, path: str) -> None:
        self._op("fsync", path)
        self.names[path].durable = self.names[path].data

    def fsync_dir(self, folder: str) -> None:
        self._op("fsync_dir", folder)
        for p in [p for p in self.durable_names if folder_of(p) == folder]:
            del self.durable_names[p]
        for p, ino in self.names.items():
            if folder_of(p) == folder:
                self.durable_names[p] = ino

    def rename(self, src: str, dst: str) -> None:
        self._op("rename", src, dst)
        self.names[dst] = self.names.pop(src)

    def unlink(self, path: str) -> None:
        self._op("unlink", path)
        del self.names[path]

    def close(self) -> None:
        pass

    # test helpers
    def fork(self, crash_at: int | None = None) -> FakeDisk:
        """A copy sharing nothing mutable, recording from scratch."""
        inodes = {id(i): Inode(i.data, i.durable) for i in self.names.values()}
        for i in self.durable_names.values():
            inodes.setdefault(id(i), Inode(i.data, i.durable))
        return FakeDisk(
            names={p: inodes[id(i)] for p, i in self.names.items()},
            durable_names={p: inodes[id(i)] for p, i in self.durable_names.items()},
            crash_at=crash_at,
        )

    def after_power_loss(self) -> FakeDisk:
        kept = {p: Inode(i.durable or b"", i.durable) for p, i in self.durable_names.items()}
        return FakeDisk(names=dict(kept), durable_names=dict(kept))


SNAP = "/data/snapshot.json"


def test_write_protocol_order_and_retention() -> None:
    disk = FakeDisk()
    _, state = old_and_new()
    for n in range(4):
        written = write_snapshot(disk, SNAP, state, keep=3)
        assert written.kept == [SNAP, f"{SNAP}.1", f"{SNAP}.2"][: n + 1]
    disk.ops.clear()
    written = write_snapshot(disk, SNAP, state, keep=3)
    assert disk.ops == [
        ("makedirs", "/data"),
        ("write", SNAP + ".tmp"),
        ("fsync", SNAP + ".tmp"),
        ("rename", SNAP + ".1", SNAP + ".2"),
        ("rename", SNAP, SNAP + ".1"),
        ("rename", SNAP + ".tmp", SNAP),
        ("fsync_dir", "/data"),
    ]
    assert written.path == SNAP and written.last_seq == state.last_seq
    assert written.bytes == len(disk.read(SNAP))
    assert kept_snapshot_paths(SNAP, 3) == [SNAP, SNAP + ".1", SNAP + ".2"]
    assert kept_snapshot_paths(SNAP, 1) == [SNAP]
    with pytest.raises(ValueError):
        kept_snapshot_paths(SNAP, 0)


@pytest.mark.parametrize("keep", [1, 2, 3])
@pytest.mark.parametrize("history", [0, 1, 3])
def test_crash_at_every_step_leaves_old_or_new(keep: int, history: int) -> None:
    old, new = old_and_new()
    base = FakeDisk()
    for _ in range(history):
        write_snapshot(base, SNAP, old, keep=keep)
    probe = base.fork()
    write_snapshot(probe, SNAP, new, keep=keep)
    n_ops = len(probe.ops)
    assert n_ops >= 5
    allowed = [new] if history == 0 else [old, new]
    for k in range(n_ops + 1):
        disk = base.fork(crash_at=k)
        try:
            write_snapshot(disk, SNAP, new, keep=keep)
            assert k == n_ops
        except Crash:
            assert k < n_ops
        for after, what in ((disk, "process crash"), (disk.after_power_loss(), "power loss")):
            loaded = load_snapshot(after, SNAP, keep=keep)
            where = f"{what} before op {k} of {probe.ops}"
            assert loaded.damaged == [], where
            if loaded.state is None:
                assert history == 0, f"old snapshot lost: {where}"
            else:
                assert loaded.state in allowed, where
            if k == n_ops:
                assert loaded.state == new, where
                assert not loaded.leftover_tmp
        # and the next write (after a restart) still works and wins
        disk.crash_at = None
        write_snapshot(disk, SNAP, new, keep=keep)
        assert load_snapshot(disk, SNAP, keep=keep).state == new


# == loading on a real disk ================================================================
def test_fresh_start_has_no_state(tmp_path: Path) -> None:
    loaded = load_snapshot(OsDisk(), str(tmp_path / "snapshot.json"))
    assert loaded.state is None and loaded.used_path is None
    assert loaded.damaged == [] and not loaded.leftover_tmp


def test_damaged_newest_falls_back_and_reports(tmp_path: Path) -> None:
    disk = OsDisk()
    path = str(tmp_path / "snapshot.json")
    old, new = old_and_new()
    write_snapshot(disk, path, old)
    write_snapshot(disk, path, new)
    data = bytearray(disk.read(path))
    data[len(data) // 2] ^= 0x04
    disk.write(path, bytes(data))
    loaded = load_snapshot(disk, path)
    assert loaded.state == old and loaded.used_path == path + ".1"
    assert [p for p, _ in loaded.damaged] == [path]
    assert path in loaded.damaged[0][1]
    assert oldest_kept_last_seq(disk, path, 2) == old.last_seq


def test_all_damaged_raises_naming_each(tmp_path: Path) -> None:
    disk = OsDisk()
    path = str(tmp_path / "snapshot.json")
    old, new = old_and_new()
    write_snapshot(disk, path, old)
    write_snapshot(disk, path, new)
    disk.write(path, b'{"queue": [')
    disk.write(path + ".1", b"")
    with pytest.raises(SnapshotError) as info:
        load_snapshot(disk, path)
    msg = str(info.value)
    assert path in msg and path + ".1" in msg and "backup" in msg
    assert oldest_kept_last_seq(disk, path, 2) is None


def test_leftover_tmp_is_ignored_and_reported(tmp_path: Path) -> None:
    disk = OsDisk()
    path = str(tmp_path / "snapshot.json")
    old, new = old_and_new()
    write_snapshot(disk, path, old)
    disk.write(path + ".tmp", encode_snapshot(new)[:100])
    loaded = load_snapshot(disk, path)
    assert loaded.state == old and loaded.leftover_tmp and loaded.damaged == []
    write_snapshot(disk, path, new)  # the next write replaces the leftover
    loaded = load_snapshot(disk, path)
    assert loaded.state == new and not loaded.leftover_tmp


def test_oldest_kept_last_seq(tmp_path: Path) -> None:
    disk = OsDisk()
    path = str(tmp_path / "snapshot.json")
    assert oldest_kept_last_seq(disk, path, 2) is None
    old, new = old_and_new()
    write_snapshot(disk, path, old)
    assert oldest_kept_last_seq(disk, path, 2) == old.last_seq
    write_snapshot(disk, path, new)
    assert oldest_kept_last_seq(disk, path, 2) == old.last_seq < new.last_seq
    assert oldest_kept_last_seq(disk, path, 1) == new.last_seq
    write_snapshot(disk, path, new)
    assert oldest_kept_last_seq(disk, path, 2) == new.last_seq


def test_oldest_kept_last_seq_sees_a_copy_change_between_calls(tmp_path: Path) -> None:
    """Each copy is decoded once per content: a copy damaged (or replaced) since the last
    call is judged afresh, never by what its old bytes said."""
    disk = OsDisk()
    path = str(tmp_path / "snapshot.json")
    old, new = old_and_new()
    write_snapshot(disk, path, old)
    write_snapshot(disk, path, new)
    assert oldest_kept_last_seq(disk, path, 2) == old.last_seq
    older = Path(path + ".1")
    older.write_bytes(older.read_bytes().replace(b'"queue":', b'"queue" :', 1))  # bad checksum
    assert oldest_kept_last_seq(disk, path, 2) == new.last_seq
    Path(path).write_bytes(b"")
    assert oldest_kept_last_seq(disk, path, 2) is None


# == the seed's jq recipes =================================================================
def test_jq_recipes(tmp_path: Path) -> None:
    jq = shutil.which("jq")
    assert jq is not None, (
        "jq is not installed: run `apt-get install jq` (the seed's recipes need it)"
    )
    state = failed_state(busy_core().export())
    path = str(tmp_path / "snapshot.json")
    write_snapshot(OsDisk(), path, state)

    def run(expr: str) -> str:
        out = subprocess.run([jq, expr, path], capture_output=True, text=True, check=True)
        return out.stdout.strip()

    assert int(run(".queue | length")) == len(state.pending)
    assert int(run(".completed | length")) == len(state.completed)
    assert int(run(".in_flight | length")) == len(state.in_flight)
    assert int(run(".last_seq")) == state.last_seq
    assert int(run(".schema_version")) == 1


def test_int_scheduled_at_and_odd_payloads_round_trip() -> None:
    jobs = [
        Job("i", None, scheduled_at=5),  # type: ignore[arg-type]
        Job("deep", {"a": [{"b": None}, 1.5, -3, True, "\u0000\n"]}),
        Job('q"uote\\', 'payload,"checksum":1}'),
    ]
    core = QueueCore()
    core.enqueue(jobs, now_s=0.0)
    state = core.export()
    back = decode_snapshot(encode_snapshot(state), path="mem")
    assert back == state
    assert {j.id: j.scheduled_at for j in back.pending}["i"] == 5.0


def test_scheduled_at_type_is_checked() -> None:
    obj = orjson.loads(encode_snapshot(busy_core().export()))
    obj["queue"][0]["scheduled_at"] = "soon"
    with pytest.raises(SnapshotError, match="scheduled_at"):
        decode_snapshot(reseal(obj), path="p")
