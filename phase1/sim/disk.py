"""``SimDisk``: an in-memory ``Disk`` that keeps durable and volatile bytes apart.

It models what POSIX plus ext4 (``data=ordered``) let a program rely on, so the simulator
and the crash explorer (ALICE / CrashMonkey style) can produce every state a power loss
may leave behind.  Deterministic: no clock, no threads, no randomness of its own (a power
loss draws from the ``random.Random`` it is given).

Model
-----

* **Inodes.**  Each file is an inode with ``durable`` bytes (what survives power loss) and
  ``data`` (what the OS shows: ``durable`` plus the unsynced operations).  Unsynced
  operations are kept per inode, in order, as ``PendingOp`` (``write`` = replace the
  contents, ``append`` at an offset, ``write_at`` = overwrite in place (``pwrite``),
  ``truncate``).  ``fsync(path)`` makes all of them
  durable: the inode's *contents*, not its name.
* **Names.**  There are two directory tables, ``name -> inode``: the current one (what
  ``exists``/``read``/``listdir`` see) and the durable one (what survives power loss).
  ``write`` creating a file, ``rename`` and ``unlink`` change the current table at once
  and the durable table only when ``fsync_dir`` of the folder holding the name runs; that
  call copies every entry of that folder (and only that folder) to the durable table.
  So a file created and fsynced whose folder was never fsynced vanishes on power loss, and
  a rename or unlink not followed by ``fsync_dir`` reverts.  (Real ext4 is often kinder:
  its journal usually commits a new name with the file's fsync.  This model follows the
  ``Disk`` contract, which promises only what POSIX does, as ALICE and CrashMonkey do.)
* **Folders** are durable as soon as ``makedirs`` returns (a simplification: real mkdir
  needs an fsync of the parent; phase1 creates its folders once at start-up).
* **Process crash** (``crash("process")``): the OS survived, so every byte and name stays;
  only cached handles are dropped.
* **Power loss** (``crash("power", rng, torn, zero_fill)``): for each inode still named
  in the durable table, keep ``durable`` plus a *prefix* of its pending operations drawn
  from ``rng`` (``None`` keeps none); the last kept ``write``/``append`` may be cut at a
  byte (``torn``), and with ``zero_fill`` the lost part reads as zero bytes of the same
  length (ext4 writeback exposing allocated but unwritten blocks; a torn ``write_at`` keeps
  the old bytes where it overwrote some, and zero-fills only past the old end).  The current directory
  table reverts to the durable one.  ``apply_power_loss`` is the same without ``rng``: the
  caller names every choice, so an explorer can enumerate them (``pending_at_power_loss``
  lists what there is to choose).

Errors mirror the OS: a missing file raises ``FileNotFoundError`` (read, size, fsync,
truncate, unlink, rename source, a write into a missing folder); a folder where a file is
expected raises ``IsADirectoryError``; ``listdir`` of a missing folder returns ``[]``.
Fault injection: ``fail_fsync_after=N`` lets N file fsyncs succeed and makes every later
one raise ``OSError(EIO)`` (durable state unchanged); ``fail_fsync_dir_after`` is the same
for ``fsync_dir``.
"""

from __future__ import annotations

import errno
import posixpath
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Literal

from phase1.disk import folder_of

__all__ = [
    "Crash",
    "DiskOp",
    "InodeState",
    "PendingOp",
    "SimDisk",
    "SimDiskState",
    "normpath",
    "parent_of",
]

OpKind = Literal[
    "write",
    "append",
    "write_at",
    "truncate",
    "fsync",
    "fsync_dir",
    "rename",
    "unlink",
    "makedirs",
]
PendingKind = Literal["write", "append", "write_at", "truncate"]
CrashKind = Literal["process", "power"]

_ROOTS = frozenset({".", "/"})


_NORM: dict[str, str] = {}  # path -> normpath(path): the WAL's few paths, every append


def normpath(path: str) -> str:
    """``posixpath.normpath``, with ``""`` meaning the current folder ``"."``."""
    p = _NORM.get(path)
    if p is None:
        p = posixpath.normpath(path) if path else "."
        if len(_NORM) >= 4096:
            _NORM.clear()  # bounded: a long-lived process with many paths recomputes
        _NORM[path] = p
    return p


def parent_of(path: str) -> str:
    """The folder holding a normalised ``path`` (``phase1.disk.folder_of``; ``"/"`` for ``/x``)."""
    folder = folder_of(path)
    if folder == "." and path.startswith("/"):
        return "/"
    return folder


# == records ==============================================================================
@dataclass(frozen=True, slots=True)
class DiskOp:
    """One mutating call, as ``SimDisk.op_log`` records it (reads are not logged).

    ``size``: bytes written (``write``/``append``/``write_at``), the new length (``truncate``),
    bytes made durable (``fsync``), entries made durable (``fsync_dir``), 0 otherwise.
    ``offset``: where an ``append`` or ``write_at`` started.  ``ok`` is False for an fsync that failed (fault injection).
    """

    index: int
    kind: OpKind
    path: str
    dst: str | None = None
    size: int = 0
    offset: int = 0
    ok: bool = True


@dataclass(frozen=True, slots=True)
class PendingOp:
    """An unsynced change to one inode's contents, replayed in order at power loss."""

    kind: PendingKind
    offset: int  # append/write_at: where it starts; write: 0; truncate: the new length
    data: bytes = b""

    @property
    def tearable(self) -> bool:
        """Can a power loss keep only part of it?  (``write``/``append``/``write_at`` with
        bytes.)"""
        return self.kind != "truncate" and len(self.data) > 0

    def apply(self, buf: bytearray, cut: int | None = None, zero_fill: bool = False) -> None:
        """Apply to ``buf`` in place; ``cut`` keeps only ``data[:cut]`` (a torn write)."""
        if self.kind == "truncate":
            _resize(buf, self.offset)
            return
        payload = self.data
        if self.kind == "write_at":
            start = self.offset
            kept = payload if cut is None or cut >= len(payload) else payload[:cut]
            if len(buf) < start:
                buf.extend(bytes(start - len(buf)))
            buf[start : start + len(kept)] = kept
            end = start + len(payload)
            if zero_fill and len(kept) < len(payload) and end > len(buf):
                buf.extend(bytes(end - len(buf)))  # only past the old end: no old bytes there
            return
        if cut is not None and cut < len(payload):
            kept = payload[:cut]
            payload = kept + bytes(len(payload) - cut) if zero_fill else kept
        if self.kind == "write":
            buf[:] = payload
        else:
            _resize(buf, self.offset)
            buf += payload


@dataclass(frozen=True, slots=True)
class InodeState:
    ino: int
    durable: bytes
    data: bytes
    pending: tuple[PendingOp, ...]


@dataclass(frozen=True, slots=True)
class SimDiskState:
    """An immutable deep copy of a ``SimDisk`` (``SimDisk.state()``/``SimDisk.from_state``)."""

    inodes: tuple[InodeState, ...]
    names: tuple[tuple[str, int], ...]  # current directory table, sorted
    durable_names: tuple[tuple[str, int], ...]  # durable directory table, sorted
    folders: frozenset[str]
    next_ino: int
    op_log: tuple[DiskOp, ...]
    fsync_count: int
    fsync_dir_count: int
    bytes_written: int
    fail_fsync_after: int | None
    fail_fsync_dir_after: int | None


@dataclass(frozen=True, slots=True)
class Crash:
    """What a crash kept, enough to reproduce it with ``apply_power_loss``.

    ``keep``/``cut_bytes`` are keyed by durable names (empty for a process crash).
    """

    kind: CrashKind
    keep: dict[str, int] = field(default_factory=dict)
    cut_bytes: dict[str, int] = field(default_factory=dict)
    zero_fill: bool = False


# == the disk ===============================================================================
class _Inode:
    __slots__ = ("ino", "durable", "data", "pending")

    def __init__(self, ino: int, durable: bytes = b"", data: bytes | None = None) -> None:
        self.ino = ino
        self.durable = bytearray(durable)
        self.data = bytearray(durable if data is None else data)
        self.pending: list[PendingOp] = []


class SimDisk:
    """An in-memory ``phase1.disk.Disk`` with a power-loss model (see the module docstring).

    >>> disk = SimDisk()
    >>> disk.makedirs("data")
    >>> disk.append("data/wal.log", b"one\\n")
    >>> disk.fsync("data/wal.log")
    >>> disk.append("data/wal.log", b"two\\n")
    >>> disk.fsync_dir("data")
    >>> _ = disk.crash("power")  # rng=None: every unsynced byte is lost
    >>> disk.read("data/wal.log")
    b'one\\n'
    """

    def __init__(
        self,
        *,
        fail_fsync_after: int | None = None,
        fail_fsync_dir_after: int | None = None,
        on_op: Callable[[DiskOp], None] | None = None,
        log_ops: bool = True,
    ) -> None:
        self._inodes: dict[int, _Inode] = {}
        self._names: dict[str, int] = {}
        self._durable_names: dict[str, int] = {}
        self._folders: set[str] = set(_ROOTS)
        self._next_ino = 1
        self._handles: set[str] = set()
        self.op_log: list[DiskOp] = []
        self.fsync_count = 0  # file fsync calls, failed ones included
        self.fsync_dir_count = 0  # fsync_dir calls, failed ones included
        self.bytes_written = 0  # bytes handed to write/append/write_at
        self.fail_fsync_after = fail_fsync_after
        self.fail_fsync_dir_after = fail_fsync_dir_after
        self.on_op = on_op  # called after every logged op (the explorer's hook)
        # False: no ``op_log`` entry (and no ``on_op`` call) for ``append``, ``write_at`` and
        # ``fsync``, the WAL's per-record calls; the simulator's harness reads none of them
        self.log_ops = log_ops

    # -- queries (not logged) -------------------------------------------------------------
    def exists(self, path: str) -> bool:
        p = normpath(path)
        return p in self._names or p in self._folders

    def size(self, path: str) -> int:
        return len(self._inode(normpath(path)).data)

    def listdir(self, folder: str) -> list[str]:
        f = normpath(folder)
        if f not in self._folders:
            return []
        found = {posixpath.basename(p) for p in self._names if parent_of(p) == f}
        found |= {posixpath.basename(d) for d in self._folders if d != f and parent_of(d) == f}
        return sorted(found - {"", ".", ".."})

    def read(self, path: str) -> bytes:
        return bytes(self._inode(normpath(path)).data)

    @property
    def open_handles(self) -> list[str]:
        """Paths with a cached append handle (dropped by ``close`` and by any crash)."""
        return sorted(self._handles)

    # -- mutations --------------------------------------------------------------------------
    def makedirs(self, folder: str) -> None:
        f = normpath(folder)
        chain: list[str] = []
        p = f
        while p not in self._folders:
            if p in self._names:
                raise (FileExistsError if p == f else NotADirectoryError)(
                    errno.EEXIST if p == f else errno.ENOTDIR, "a file is in the way", p
                )
            chain.append(p)
            p = parent_of(p)
        self._folders.update(chain)
        self._log("makedirs", f)

    def write(self, path: str, data: bytes) -> None:
        p = normpath(path)
        data = bytes(data)
        self._handles.discard(p)
        inode = self._open_for_write(p)
        inode.pending.append(PendingOp("write", 0, data))
        inode.data[:] = data
        self.bytes_written += len(data)
        self._log("write", p, size=len(data))

    def append(self, path: str, data: bytes) -> None:
        # The WAL's hot call: the same bookkeeping as the other mutations, with the two
        # records built positionally (a frozen dataclass's __init__ costs ~0.5 us each).
        p = _NORM.get(path) or normpath(path)
        if type(data) is not bytes:
            data = bytes(data)
        ino = self._names.get(p)
        inode = self._inodes[ino] if ino is not None else self._open_for_write(p)
        self._handles.add(p)
        buf = inode.data
        offset = len(buf)
        inode.pending.append(_make_pending("append", offset, data))
        buf += data
        size = len(data)
        self.bytes_written += size
        if self.log_ops:
            op = _make_op(len(self.op_log), "append", p, None, size, offset, True)
            self.op_log.append(op)
            if self.on_op is not None:
                self.on_op(op)

    def write_at(self, path: str, offset: int, data: bytes) -> None:
        p = _NORM.get(path) or normpath(path)
        if offset < 0:
            raise OSError(errno.EINVAL, "negative offset", p)
        if type(data) is not bytes:
            data = bytes(data)
        inode = self._open_for_write(p)
        self._handles.add(p)
        op = _make_pending("write_at", offset, data)
        inode.pending.append(op)
        op.apply(inode.data)
        size = len(data)
        self.bytes_written += size
        if self.log_ops:
            self._log("write_at", p, size=size, offset=offset)

    def truncate(self, path: str, size: int) -> None:
        p = normpath(path)
        if size < 0:
            raise OSError(errno.EINVAL, "negative size", p)
        inode = self._inode(p)
        inode.pending.append(PendingOp("truncate", size))
        _resize(inode.data, size)
        self._log("truncate", p, size=size)

    def fsync(self, path: str) -> None:
        p = _NORM.get(path) or normpath(path)
        ino = self._names.get(p)
        if ino is None:  # a folder, or nothing: as before
            if p in self._folders:
                self.fsync_dir(p)
                return
            inode = self._inode(p)  # raises
        else:
            inode = self._inodes[ino]
        self.fsync_count += 1
        if self.fail_fsync_after is not None and self.fsync_count > self.fail_fsync_after:
            self._log("fsync", p, ok=False)
            raise OSError(errno.EIO, "simulated fsync failure (fail_fsync_after)", p)
        synced = 0
        durable = inode.durable
        for op in inode.pending:
            data = op.data
            synced += len(data)
            if op.kind == "append" and op.offset == len(durable):
                durable += data  # PendingOp.apply's common case, inline
            else:
                op.apply(durable)
        inode.pending.clear()
        if self.log_ops:
            self._log("fsync", p, size=synced)

    def fsync_dir(self, folder: str) -> None:
        f = normpath(folder)
        if f not in self._folders:
            if f in self._names:
                raise NotADirectoryError(errno.ENOTDIR, "not a folder", f)
            raise FileNotFoundError(errno.ENOENT, "no such folder", f)
        self.fsync_dir_count += 1
        if (
            self.fail_fsync_dir_after is not None
            and self.fsync_dir_count > self.fail_fsync_dir_after
        ):
            self._log("fsync_dir", f, ok=False)
            raise OSError(errno.EIO, "simulated fsync failure (fail_fsync_dir_after)", f)
        for name in [n for n in self._durable_names if parent_of(n) == f]:
            del self._durable_names[name]
        entries = {n: ino for n, ino in self._names.items() if parent_of(n) == f}
        self._durable_names.update(entries)
        self._collect()
        self._log("fsync_dir", f, size=len(entries))

    def rename(self, src: str, dst: str) -> None:
        s, d = normpath(src), normpath(dst)
        if s in self._folders:
            raise IsADirectoryError(errno.EISDIR, "SimDisk does not rename folders", s)
        if s not in self._names:
            raise FileNotFoundError(errno.ENOENT, "no such file", s)
        if d in self._folders:
            raise IsADirectoryError(errno.EISDIR, "is a folder", d)
        self._need_folder(d)
        self._handles.discard(s)
        self._handles.discard(d)
        if s != d:
            self._names[d] = self._names.pop(s)
            self._collect()
        self._log("rename", s, dst=d)

    def unlink(self, path: str) -> None:
        p = normpath(path)
        if p in self._folders:
            raise IsADirectoryError(errno.EISDIR, "is a folder", p)
        if p not in self._names:
            raise FileNotFoundError(errno.ENOENT, "no such file", p)
        self._handles.discard(p)
        del self._names[p]
        self._collect()
        self._log("unlink", p)

    def close(self) -> None:
        self._handles.clear()

    # -- crashes ------------------------------------------------------------------------------
    def crash(
        self,
        kind: CrashKind = "process",
        rng: random.Random | None = None,
        *,
        torn: bool = True,
        zero_fill: bool = False,
    ) -> Crash:
        """Crash in place and return what was kept (feed it to ``apply_power_loss``).

        ``"process"``: every byte and name stays (the OS survived); handles are dropped.
        ``"power"``: per surviving inode (in durable-name order) keep ``rng.randint(0, n)``
        of its ``n`` pending ops; with ``torn`` the last kept ``write``/``append`` is cut at
        ``rng.randint(0, len(data))`` (``len`` = intact).  ``rng=None`` drops every unsynced
        op.  The same rng seed on the same disk gives the same state.
        """
        if kind == "process":
            self._handles.clear()
            return Crash("process")
        if kind != "power":
            raise ValueError(f"crash kind {kind!r} is not 'process' or 'power'")
        keep: dict[str, int] = {}
        cuts: dict[str, int] = {}
        if rng is not None:
            for name, ops in self.pending_at_power_loss(unique=True).items():
                k = rng.randint(0, len(ops))
                if k == 0:
                    continue
                keep[name] = k
                last = ops[k - 1]
                if torn and last.tearable:
                    cut = rng.randint(0, len(last.data))
                    if cut < len(last.data):
                        cuts[name] = cut
        lost = self.apply_power_loss(keep, cuts, zero_fill)
        self._adopt(lost)
        return Crash("power", keep, cuts, zero_fill)

    def pending_writes(self, path: str) -> tuple[PendingOp, ...]:
        """Unsynced ops of the file ``path`` names now (else the durable name), in order."""
        p = normpath(path)
        ino = self._names.get(p, self._durable_names.get(p))
        if ino is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", p)
        return tuple(self._inodes[ino].pending)

    def pending_at_power_loss(self, *, unique: bool = False) -> dict[str, tuple[PendingOp, ...]]:
        """For every name that survives power loss (the durable table), its inode's pending
        ops: the choices ``apply_power_loss`` takes, keyed the same way.  ``unique`` lists an
        inode reachable by several durable names only under the first (sorted) name."""
        out: dict[str, tuple[PendingOp, ...]] = {}
        seen: set[int] = set()
        for name in sorted(self._durable_names):
            ino = self._durable_names[name]
            if unique and ino in seen:
                continue
            seen.add(ino)
            out[name] = tuple(self._inodes[ino].pending)
        return out

    def apply_power_loss(
        self,
        keep: Mapping[str, int] | None = None,
        cut_bytes: Mapping[str, int] | None = None,
        zero_fill: bool = False,
    ) -> SimDisk:
        """A NEW disk in the state a power loss would leave; ``self`` is unchanged.

        ``keep[name]``: how many of that file's pending ops reach the disk (missing: 0).
        ``cut_bytes[name]``: the last kept op is torn at this byte, only ``data[:cut]`` lands
        (with ``zero_fill`` the rest reads as zeros).  Names are durable names (see
        ``pending_at_power_loss``); a name that exists now but does not survive is ignored,
        an unknown name or an impossible choice raises ``ValueError``.  The new disk starts
        with an empty ``op_log`` and zero counters and keeps the fault settings.
        """
        keep = dict(keep or {})
        cuts = dict(cut_bytes or {})
        choice: dict[int, tuple[int, int | None, str]] = {}
        for name in sorted(set(keep) | set(cuts)):
            p = normpath(name)
            ino = self._durable_names.get(p)
            if ino is None:
                if p in self._names:
                    continue  # its name does not survive: nothing to choose
                raise ValueError(f"apply_power_loss: {name!r} is not a file on this disk")
            ops = self._inodes[ino].pending
            k = keep.get(name, 0)
            cut = cuts.get(name)
            if not 0 <= k <= len(ops):
                raise ValueError(f"apply_power_loss: keep[{name!r}]={k}, {len(ops)} pending ops")
            if cut is not None:
                if k == 0 or not ops[k - 1].tearable:
                    raise ValueError(
                        f"apply_power_loss: cut_bytes[{name!r}] needs a kept write/append last"
                    )
                if not 0 <= cut <= len(ops[k - 1].data):
                    raise ValueError(
                        f"apply_power_loss: cut_bytes[{name!r}]={cut} outside "
                        f"0..{len(ops[k - 1].data)}"
                    )
            prior = choice.get(ino)
            if prior is not None and prior[:2] != (k, cut):
                raise ValueError(
                    f"apply_power_loss: {prior[2]!r} and {name!r} are the same file "
                    "but were given different choices"
                )
            choice[ino] = (k, cut, name)
        new = SimDisk(
            fail_fsync_after=self.fail_fsync_after, fail_fsync_dir_after=self.fail_fsync_dir_after
        )
        for ino in sorted(set(self._durable_names.values())):
            old = self._inodes[ino]
            k, cut, _ = choice.get(ino, (0, None, ""))
            buf = bytearray(old.durable)
            for i, op in enumerate(old.pending[:k]):
                op.apply(buf, cut if i == k - 1 else None, zero_fill)
            new._inodes[ino] = _Inode(ino, bytes(buf))
        new._names = dict(self._durable_names)
        new._durable_names = dict(self._durable_names)
        new._folders = set(self._folders)
        new._next_ino = self._next_ino
        return new

    # -- copies ---------------------------------------------------------------------------------
    def state(self) -> SimDiskState:
        return SimDiskState(
            inodes=tuple(
                InodeState(i.ino, bytes(i.durable), bytes(i.data), tuple(i.pending))
                for i in sorted(self._inodes.values(), key=lambda i: i.ino)
            ),
            names=tuple(sorted(self._names.items())),
            durable_names=tuple(sorted(self._durable_names.items())),
            folders=frozenset(self._folders),
            next_ino=self._next_ino,
            op_log=tuple(self.op_log),
            fsync_count=self.fsync_count,
            fsync_dir_count=self.fsync_dir_count,
            bytes_written=self.bytes_written,
            fail_fsync_after=self.fail_fsync_after,
            fail_fsync_dir_after=self.fail_fsync_dir_after,
        )

    @classmethod
    def from_state(cls, state: SimDiskState) -> SimDisk:
        disk = cls(
            fail_fsync_after=state.fail_fsync_after,
            fail_fsync_dir_after=state.fail_fsync_dir_after,
        )
        for s in state.inodes:
            inode = _Inode(s.ino, s.durable, s.data)
            inode.pending = list(s.pending)
            disk._inodes[s.ino] = inode
        disk._names = dict(state.names)
        disk._durable_names = dict(state.durable_names)
        disk._folders = set(state.folders)
        disk._next_ino = state.next_ino
        disk.op_log = list(state.op_log)
        disk.fsync_count = state.fsync_count
        disk.fsync_dir_count = state.fsync_dir_count
        disk.bytes_written = state.bytes_written
        return disk

    def copy(self) -> SimDisk:
        return SimDisk.from_state(self.state())

    def snapshot_files(self) -> dict[str, bytes]:
        """Every file as the OS shows it now (after a process crash, too)."""
        return {p: bytes(self._inodes[ino].data) for p, ino in sorted(self._names.items())}

    def durable_files(self) -> dict[str, bytes]:
        """What a power loss dropping every unsynced op would leave (durable names + bytes)."""
        return {
            p: bytes(self._inodes[ino].durable) for p, ino in sorted(self._durable_names.items())
        }

    def folders(self) -> list[str]:
        return sorted(self._folders - _ROOTS)

    def check(self) -> None:
        """Assert the model's invariant: durable + pending ops == data for every inode."""
        for inode in self._inodes.values():
            buf = bytearray(inode.durable)
            for op in inode.pending:
                op.apply(buf)
            if buf != inode.data:
                raise AssertionError(f"inode {inode.ino}: durable + pending != data")
        live = set(self._names.values()) | set(self._durable_names.values())
        if live != set(self._inodes):
            raise AssertionError("inode table out of step with the directory tables")

    def __repr__(self) -> str:
        unsynced = sum(len(i.pending) for i in self._inodes.values())
        return (
            f"SimDisk(files={len(self._names)}, durable_names={len(self._durable_names)}, "
            f"unsynced_ops={unsynced}, ops={len(self.op_log)})"
        )

    # -- helpers ---------------------------------------------------------------------------------
    def _inode(self, p: str) -> _Inode:
        ino = self._names.get(p)
        if ino is None:
            if p in self._folders:
                raise IsADirectoryError(errno.EISDIR, "is a folder", p)
            raise FileNotFoundError(errno.ENOENT, "no such file", p)
        return self._inodes[ino]

    def _need_folder(self, p: str) -> None:
        folder = parent_of(p)
        if folder not in self._folders:
            if folder in self._names:
                raise NotADirectoryError(errno.ENOTDIR, "not a folder", folder)
            raise FileNotFoundError(errno.ENOENT, "no such folder", folder)

    def _open_for_write(self, p: str) -> _Inode:
        ino = self._names.get(p)
        if ino is not None:
            return self._inodes[ino]
        if p in self._folders:
            raise IsADirectoryError(errno.EISDIR, "is a folder", p)
        self._need_folder(p)
        inode = _Inode(self._next_ino)
        self._next_ino += 1
        self._inodes[inode.ino] = inode
        self._names[p] = inode.ino
        return inode

    def _collect(self) -> None:
        live = set(self._names.values()) | set(self._durable_names.values())
        for ino in [i for i in self._inodes if i not in live]:
            del self._inodes[ino]

    def _adopt(self, other: SimDisk) -> None:
        self._inodes = other._inodes
        self._names = other._names
        self._durable_names = other._durable_names
        self._folders = other._folders
        self._handles.clear()

    def _log(
        self,
        kind: OpKind,
        path: str,
        *,
        dst: str | None = None,
        size: int = 0,
        offset: int = 0,
        ok: bool = True,
    ) -> None:
        op = DiskOp(len(self.op_log), kind, path, dst, size, offset, ok)
        self.op_log.append(op)
        if self.on_op is not None:
            self.on_op(op)


def _slot_setters(cls: type) -> list[Callable[[object, object], None]]:
    return [cls.__dict__[f.name].__set__ for f in fields(cls)]


# ``cls(...)`` for the two frozen slotted dataclasses SimDisk.append builds per call: setting
# the slots directly costs less than half of ``__init__``'s ``object.__setattr__`` calls.
_p0, _p1, _p2 = _slot_setters(PendingOp)
_o0, _o1, _o2, _o3, _o4, _o5, _o6 = _slot_setters(DiskOp)
_object_new = object.__new__


def _make_pending(kind: PendingKind, offset: int, data: bytes) -> PendingOp:
    op: PendingOp = _object_new(PendingOp)
    _p0(op, kind)
    _p1(op, offset)
    _p2(op, data)
    return op


def _make_op(
    index: int, kind: OpKind, path: str, dst: str | None, size: int, offset: int, ok: bool
) -> DiskOp:
    op: DiskOp = _object_new(DiskOp)
    _o0(op, index)
    _o1(op, kind)
    _o2(op, path)
    _o3(op, dst)
    _o4(op, size)
    _o5(op, offset)
    _o6(op, ok)
    return op


def _resize(buf: bytearray, size: int) -> None:
    if size < len(buf):
        del buf[size:]
    elif size > len(buf):
        buf.extend(bytes(size - len(buf)))
