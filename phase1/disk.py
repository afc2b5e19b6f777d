"""The ``Disk`` protocol: every byte phase1 stores goes through one of these.

``OsDisk`` talks to the real file system and fsyncs files *and* folders.  ``SimDisk``
(``phase1.sim.disk``) keeps durable and volatile bytes apart so the simulation and the
crash explorer can drop what a power loss would drop.

Paths are plain strings.  The durable modules (``wal``, ``snapshot``, ``recovery``) never
import ``os``; they only call these methods, so they run unchanged on either disk.

Durability model (what a caller may rely on):

* ``append``/``write``/``write_at`` put bytes in the OS page cache: they survive a process
  crash, not a power loss, until ``fsync(path)`` returns.
* A new name (``write`` creating a file, ``rename``, ``unlink``) is durable only after
  ``fsync_dir`` of the folder that holds it returns.
* ``truncate`` is volatile until ``fsync(path)``.
"""

from __future__ import annotations

import mmap
import os
from typing import Protocol, runtime_checkable

__all__ = ["Disk", "OsDisk"]


@runtime_checkable
class Disk(Protocol):
    def exists(self, path: str) -> bool: ...
    def size(self, path: str) -> int: ...
    def listdir(self, folder: str) -> list[str]:
        """Names (not paths) in ``folder``, sorted; ``[]`` when the folder is missing."""
        ...

    def makedirs(self, folder: str) -> None: ...
    def read(self, path: str) -> bytes: ...
    def write(self, path: str, data: bytes) -> None:
        """Create or replace the *contents* of ``path`` (not atomic, not durable)."""
        ...

    def append(self, path: str, data: bytes) -> None:
        """Append to ``path``, creating it if missing (not durable until fsync)."""
        ...

    def write_at(self, path: str, offset: int, data: bytes) -> None:
        """Write ``data`` at byte ``offset`` of ``path`` (``pwrite``), creating the file if
        missing; bytes after ``offset + len(data)`` stay, a file shorter than ``offset`` is
        extended with zeros (not durable until fsync)."""
        ...

    def truncate(self, path: str, size: int) -> None: ...
    def fsync(self, path: str) -> None: ...
    def fsync_dir(self, folder: str) -> None: ...
    def rename(self, src: str, dst: str) -> None:
        """Atomically replace ``dst`` with ``src`` (durable after ``fsync_dir``)."""
        ...

    def unlink(self, path: str) -> None: ...
    def close(self) -> None:
        """Release any cached handles; the disk stays usable (handles reopen on demand)."""
        ...


_datasync = getattr(os, "fdatasync", os.fsync)


def _folder(path: str) -> str:
    return os.path.dirname(path) or "."


class OsDisk:
    """The real file system.

    Write handles are cached per path (opening a file per record would cost more than
    the write), so ``append``/``write_at`` + ``fsync`` on the same path reuse a descriptor
    (one opened ``O_APPEND`` for ``append``, one without for ``write_at``: Linux's
    ``pwrite`` ignores the offset on an ``O_APPEND`` descriptor).
    """

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}  # O_APPEND handles
        self._at_fds: dict[str, int] = {}  # positional handles

    # -- queries -----------------------------------------------------------------
    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def size(self, path: str) -> int:
        return os.stat(path).st_size

    def listdir(self, folder: str) -> list[str]:
        try:
            return sorted(os.listdir(folder))
        except FileNotFoundError:
            return []

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def read_mapped(self, path: str) -> mmap.mmap | bytes:
        """The file's bytes without copying them: a read-only ``mmap`` (``b""`` for an empty
        file), which the caller closes.  Not part of ``Disk``: the WAL reader uses it where
        a disk has it, for closed segments of a log of hundreds of MB (``read`` would copy
        every byte into new memory that must be faulted in and freed again).  Only for a
        file nobody shortens meanwhile: reading a mapped page past a file's end is SIGBUS."""
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return b""
            populate = getattr(mmap, "MAP_POPULATE", None)  # Linux
            if populate is None:
                return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            # the page tables filled in one call, not one fault per 64 kB read
            flags = mmap.MAP_SHARED | populate
            return mmap.mmap(f.fileno(), 0, flags=flags, prot=mmap.PROT_READ)

    # -- mutations -----------------------------------------------------------------
    def makedirs(self, folder: str) -> None:
        os.makedirs(folder or ".", exist_ok=True)

    def write(self, path: str, data: bytes) -> None:
        self._drop(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def append(self, path: str, data: bytes) -> None:
        fd = self._fds.get(path)
        if fd is None:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._fds[path] = fd
        written = os.write(fd, data)
        if written < len(data):  # a short write (rare on a regular file): finish it
            view = memoryview(data)[written:]
            while view:
                view = view[os.write(fd, view) :]

    def write_at(self, path: str, offset: int, data: bytes) -> None:
        fd = self._at_fds.get(path)
        if fd is None:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
            self._at_fds[path] = fd
        written = os.pwrite(fd, data, offset)
        if written < len(data):  # a short write: finish it
            view = memoryview(data)
            while written < len(view):
                written += os.pwrite(fd, view[written:], offset + written)

    def truncate(self, path: str, size: int) -> None:
        os.truncate(path, size)

    def fsync(self, path: str) -> None:
        """``fdatasync`` where the OS has it (Linux), else ``fsync``.

        fdatasync flushes the data and the metadata needed to read it back (the file's
        size and block map: an append or truncate is covered) and skips what is not (the
        modification time), so it keeps the contract above at one flush less per call on
        ext4.  A new file's *name* still needs ``fsync_dir``, which stays a full fsync.
        """
        fd = self._at_fds.get(path)
        if fd is None:
            fd = self._fds.get(path)
        if fd is not None:
            _datasync(fd)
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            _datasync(fd)
        finally:
            os.close(fd)

    def fsync_dir(self, folder: str) -> None:
        fd = os.open(folder or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def rename(self, src: str, dst: str) -> None:
        self._drop(src)
        self._drop(dst)
        os.replace(src, dst)

    def unlink(self, path: str) -> None:
        self._drop(path)
        os.unlink(path)

    def close(self) -> None:
        for path in list(self._fds) + list(self._at_fds):
            self._drop(path)

    def _drop(self, path: str) -> None:
        for fds in (self._fds, self._at_fds):
            fd = fds.pop(path, None)
            if fd is not None:
                os.close(fd)


def folder_of(path: str) -> str:
    """The folder holding ``path`` (``"."`` for a bare name); pure string work."""
    head, _, _ = path.rpartition("/")
    return head or "."
