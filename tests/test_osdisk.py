"""OsDisk: appends survive short writes; fsync works with and without a cached handle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import phase1.disk
from phase1.disk import OsDisk


def test_append_finishes_a_short_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    calls: list[int] = []

    def short_write(fd: int, data: bytes) -> int:  # the kernel may write less than asked
        calls.append(len(data))
        return real_write(fd, bytes(data[:3]))

    monkeypatch.setattr(phase1.disk.os, "write", short_write)
    disk = OsDisk()
    path = str(tmp_path / "f.log")
    disk.append(path, b"0123456789")
    disk.append(path, b"ab")
    disk.close()
    assert Path(path).read_bytes() == b"0123456789ab"
    assert calls == [10, 7, 4, 1, 2]


def test_fsync_syncs_data_through_the_cached_handle_or_by_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real = phase1.disk._datasync
    monkeypatch.setattr(phase1.disk, "_datasync", lambda fd: (synced.append(fd), real(fd)))
    disk = OsDisk()
    path = str(tmp_path / "f.log")
    disk.append(path, b"x")
    disk.fsync(path)  # the append handle
    disk.close()
    disk.fsync(path)  # no cached handle: opened for the call
    assert len(synced) == 2 and Path(path).read_bytes() == b"x"
    assert real is getattr(os, "fdatasync", os.fsync)  # fdatasync where the OS has it
