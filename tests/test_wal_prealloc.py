"""Preallocated WAL segments: records written over newline padding (``write_at``), the
reader stopping at the padding, rotate/close cutting it, and every power-loss state of a
padded log reading as durable records plus at most a torn tail."""

from __future__ import annotations

import itertools
from pathlib import Path

import orjson
import pytest

from phase1.config import Config, load_config
from phase1.core import Record
from phase1.disk import OsDisk
from phase1.errors import ConfigError
from phase1.jobs import Job
from phase1.runtime.durable import DurableQueue
from phase1.sim.disk import PendingOp, SimDisk
from phase1.wal import (
    PAD,
    WalWriter,
    data_end,
    encode_records,
    list_segments,
    read_wal,
    truncate_torn,
    wal_stats,
)

WAL = "data/wal.log"
T0_MS = 1_704_103_200_000


def recs(first: int, last: int) -> list[Record]:
    out: list[Record] = []
    for seq in range(first, last + 1):
        job_id = f"task-{seq:04d}"
        if seq % 3 == 1:
            out.append(Record(seq, "ENQUEUE", job_id, T0_MS + seq, job=Job(job_id, {"n": seq})))
        elif seq % 3 == 2:
            out.append(
                Record(seq, "DISPATCH", job_id, T0_MS + seq, 1, worker_id=2, deadline_ms=T0_MS)
            )
        else:
            out.append(Record(seq, "ACK", job_id, T0_MS + seq, 1))
    return out


@pytest.mark.parametrize(
    "data, end",
    [
        (b"", 0),
        (b"\n", 0),
        (b"\n\n\n", 0),
        (b"a\n", 2),
        (b"a\n\n\n\n", 2),
        (b"a", 1),  # torn, no padding
        (b"a\n\x00", 3),  # zeros after: not padding
        (b"a\n\nb\n", 5),  # a blank line inside is damage, not padding
    ],
)
def test_data_end_stops_before_trailing_padding(data: bytes, end: int) -> None:
    assert data_end(data) == end


@pytest.mark.parametrize(
    "data",
    [
        b"\n",
        b"a\n",
        b"a\n\n\n\n",
        b"a",
        b"a\n\x00",
        b"a\n\nb\n",
        b"x" * 70_000 + b"\n" + PAD * 200_000,  # padding longer than one read-back slice
        PAD * 150_000,
        b"y\n" + PAD * (1 << 16) + b"z\n" + PAD * ((1 << 16) - 1),  # a slice edge on data
    ],
)
def test_data_end_of_a_mapped_file_is_that_of_its_bytes(data: bytes, tmp_path: Path) -> None:
    """The WAL reader maps segments where the disk can (``OsDisk.read_mapped``): the end
    of the records must not depend on how the bytes are held."""
    path = tmp_path / "seg"
    path.write_bytes(data)
    mapped = OsDisk().read_mapped(str(path))
    try:
        assert type(mapped) is not bytes
        assert data_end(mapped) == data_end(data)
    finally:
        mapped.close()


def test_read_mapped_of_an_empty_file_is_empty_bytes(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    assert OsDisk().read_mapped(str(tmp_path / "empty")) == b""


def test_reading_a_log_on_os_disk_maps_closed_segments_only(tmp_path: Path) -> None:
    """The same records, torn tail and padding count from the mapped path as from ``read``
    (a disk without ``read_mapped``); only closed segments are mapped, and none stays
    mapped afterwards."""
    wal = str(tmp_path / "wal.log")
    writer = WalWriter(
        OsDisk(), wal, next_seq=1, policy="always", preallocate_bytes=4096, segment_bytes=2048
    )
    for seq in range(1, 61, 3):
        writer.append(recs(seq, seq + 2))
        if seq % 15 == 1:
            writer.rotate()
    writer.close()
    Path(wal).write_bytes(Path(wal).read_bytes() + b'{"seq":61,"ty')  # a torn last line

    class ReadOnly:  # OsDisk without read_mapped: the copying path
        def __init__(self) -> None:
            self.disk = OsDisk()

        def __getattr__(self, name: str) -> object:
            if name == "read_mapped":
                raise AttributeError(name)
            return getattr(self.disk, name)

    class Watched(OsDisk):
        asked: list[str] = []

        def read_mapped(self, path: str) -> object:  # type: ignore[override]
            self.asked.append(path)
            return super().read_mapped(path)

    watched = Watched()
    mapped = read_wal(watched, wal)
    copied = read_wal(ReadOnly(), wal)  # type: ignore[arg-type]
    # Never the active segment: a live writer cuts its padding (SIGBUS for a mapped reader)
    assert watched.asked == mapped.segments[:-1] and mapped.segments[-1] == wal
    assert len(mapped.segments) > 1 and mapped.torn is not None
    assert (mapped.records, mapped.torn, mapped.padding_bytes, mapped.bytes_read) == (
        copied.records,
        copied.torn,
        copied.padding_bytes,
        copied.bytes_read,
    )
    with open("/proc/self/maps") as f:
        maps = f.read()
    assert str(tmp_path) not in maps


def test_writer_pads_to_whole_chunks_and_overwrites_in_place() -> None:
    disk = SimDisk()
    disk.makedirs("data")
    writer = WalWriter(disk, WAL, next_seq=1, policy="always", preallocate_bytes=256)
    sizes: list[int] = []
    written = b""
    for seq in range(1, 13):
        writer.append(recs(seq, seq))
        written += encode_records(recs(seq, seq))
        size = disk.size(WAL)
        assert size % 256 == 0 and size > len(written)  # always room ahead
        assert disk.read(WAL) == written + PAD * (size - len(written))
        sizes.append(size)
    # the file grows only when a record would not fit, so most appends change no size
    growths = sum(1 for a, b in itertools.pairwise(sizes) if b != a)
    assert growths <= len(written) // 256 + 1 < len(sizes) - 1
    assert {op.kind for op in disk.op_log if op.path == WAL} >= {"write_at", "fsync"}
    assert "append" not in {op.kind for op in disk.op_log if op.path == WAL}

    read = read_wal(disk, WAL)
    assert read.records == recs(1, 12) and read.torn is None
    assert (read.bytes_read, read.padding_bytes) == (len(written), sizes[-1] - len(written))
    assert wal_stats(read)["padding_bytes"] == sizes[-1] - len(written)


def test_rotate_and_close_cut_the_padding() -> None:
    disk = SimDisk()
    disk.makedirs("data")
    writer = WalWriter(disk, WAL, next_seq=1, policy="batch", preallocate_bytes=512)
    writer.append(recs(1, 4))
    closed = writer.rotate()
    assert closed is not None and disk.read(closed) == encode_records(recs(1, 4))
    writer.append(recs(5, 6))
    assert disk.size(WAL) == 512
    writer.close()
    assert disk.read(WAL) == encode_records(recs(5, 6))
    _ = disk.crash("power")  # the cuts were fsynced: they survive
    assert disk.read(WAL) == encode_records(recs(5, 6))
    assert read_wal(disk, WAL).records == recs(1, 6)


def test_a_padded_closed_segment_is_damage() -> None:
    disk = SimDisk()
    disk.makedirs("data")
    writer = WalWriter(disk, WAL, next_seq=1, policy="always")
    writer.append(recs(1, 3))
    closed = writer.rotate()
    assert closed is not None
    disk.write(closed, disk.read(closed) + PAD * 8)
    with pytest.raises(Exception, match="closed segment"):
        read_wal(disk, WAL)


@pytest.mark.parametrize("again", [0, 64], ids=["then-appending", "then-padded"])
def test_a_new_writer_continues_where_the_records_end(again: int) -> None:
    disk = SimDisk()
    disk.makedirs("data")
    first = WalWriter(disk, WAL, next_seq=1, policy="always", preallocate_bytes=1024)
    first.append(recs(1, 3))
    _ = disk.crash("process")  # no close: the padding stays
    assert disk.size(WAL) == 1024
    second = WalWriter(disk, WAL, next_seq=4, policy="always", preallocate_bytes=again)
    assert second.active_bytes == len(encode_records(recs(1, 3)))
    for seq in range(4, 40):
        second.append(recs(seq, seq))
    data = disk.read(WAL)
    end = data_end(data)
    assert data[:end] == encode_records(recs(1, 39))
    assert b"\n\n" not in data[:end]
    assert read_wal(disk, WAL).records == recs(1, 39)


@pytest.mark.parametrize("zero_fill", [False, True])
def test_every_power_loss_of_a_padded_log_keeps_what_was_durable(zero_fill: bool) -> None:
    """Three unsynced appends over a synced start (one of them crossing into a new chunk):
    every prefix of them, each torn at every byte, reads as the synced records plus a
    prefix of the rest, with at most a torn tail; after the cut, appends read clean."""
    base = SimDisk()
    base.makedirs("data")
    writer = WalWriter(base, WAL, next_seq=1, policy="batch", preallocate_bytes=128)
    writer.append(recs(1, 2))
    writer.sync()
    for first, last in ((3, 3), (4, 5), (6, 6)):
        writer.append(recs(first, last))
    pending = base.pending_writes(WAL)
    assert [op.kind for op in pending] == ["write_at"] * 3
    assert base.size(WAL) > 128  # one append grew the file
    states = 0
    for keep in range(len(pending) + 1):
        cuts: list[int | None] = [None]
        if keep:
            cuts += list(range(len(pending[keep - 1].data)))
        for cut in cuts:
            disk = base.apply_power_loss(
                {WAL: keep}, {WAL: cut} if cut is not None else {}, zero_fill
            )
            read = read_wal(disk, WAL)  # never WalCorruptionError
            seqs = [r.seq for r in read.records]
            assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 2
            assert read.records == recs(1, len(seqs))
            if read.torn is not None:
                truncate_torn(disk, read.torn)
            more = WalWriter(disk, WAL, next_seq=len(seqs) + 1, preallocate_bytes=128)
            more.append(recs(len(seqs) + 1, len(seqs) + 2))
            more.sync()
            again = read_wal(disk, WAL)
            assert again.torn is None and again.records == recs(1, len(seqs) + 2)
            states += 1
    assert states > 300


def test_simdisk_write_at_tears_like_a_pwrite() -> None:
    old = bytearray(b"0123456789")
    op = PendingOp("write_at", 2, b"abcdef")
    whole = bytearray(old)
    op.apply(whole)
    assert whole == b"01abcdef89"
    torn = bytearray(old)
    op.apply(torn, cut=3, zero_fill=True)
    assert torn == b"01abc56789"  # the old bytes stay where the write did not land
    past = bytearray(b"0123")
    op.apply(past, cut=1, zero_fill=True)
    assert past == b"01a3" + bytes(4)  # old bytes stay; past the old end, zeros
    past = bytearray(b"0123")
    op.apply(past, cut=1)
    assert past == b"01a3"
    gap = bytearray(b"01")
    PendingOp("write_at", 4, b"xy").apply(gap)
    assert gap == b"01\x00\x00xy"


def test_osdisk_write_at_overwrites_extends_and_syncs(tmp_path: Path) -> None:
    disk = OsDisk()
    path = str(tmp_path / "f.log")
    disk.append(path, b"0123456789")
    disk.write_at(path, 2, b"ab")  # not an O_APPEND handle: lands at the offset
    disk.write_at(path, 12, b"zz")
    disk.fsync(path)
    disk.append(path, b"!")
    disk.close()
    assert Path(path).read_bytes() == b"01ab456789\x00\x00zz!"
    disk.write_at(path, 0, b"X")  # handles reopen after close
    disk.close()
    assert Path(path).read_bytes()[:2] == b"X1"


def test_config_rejects_a_negative_preallocation(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("preallocate_bytes: -1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"preallocate_bytes") as info:
        load_config(path)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="preallocate_bytes=-1"):
        WalWriter(SimDisk(), WAL, next_seq=1, preallocate_bytes=-1)


def test_the_runtime_pads_its_log_and_leaves_it_clean(tmp_config: Config) -> None:
    assert tmp_config.preallocate_bytes == 1 << 20  # the default
    q = DurableQueue(tmp_config)
    q.submit([Job(f"j{i}", {"i": i}) for i in range(50)])
    wal = Path(tmp_config.wal_path)
    assert wal.stat().st_size == 1 << 20
    lines = [line for line in wal.read_bytes().splitlines() if line]
    assert [orjson.loads(line)["job_id"] for line in lines] == [f"j{i}" for i in range(50)]
    q.close()
    assert wal.read_bytes() == b"\n".join(lines) + b"\n"
    assert [s for s in list_segments(OsDisk(), str(wal))] == [str(wal)]
