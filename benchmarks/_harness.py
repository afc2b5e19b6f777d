"""Shared machinery for ``python -m benchmarks``: sizes, results, temp folders, timing.

Rules of the house (enforced here, not by convention):

* every figure is reported with a baseline measured in the same run and the ratio to it;
  targets are information, never a pass/fail of the command;
* temp folders live on the same disk as the repo (``benchmarks/results/tmp``), never on
  tmpfs, where ``fsync`` is free and would lie;
* one ``Context`` per run: it knows the size mode (``full``, ``quick`` ~10x smaller,
  ``smoke`` tiny) and caches baselines several benchmarks share (measured once).
"""

from __future__ import annotations

import gc
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
TMP_ROOT = RESULTS / "tmp"

MODES = ("full", "quick", "smoke")


@dataclass
class Result:
    """One row of the table (and one object in the JSON)."""

    name: str
    figure: float | None
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    ratio: float | None = None  # figure / baseline, or baseline / figure when lower is better
    target: str = ""
    met: bool | None = None  # None: no target, or not measurable
    notes: str = ""
    command: str = ""
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def ratio(
    figure: float | None, baseline: float | None, *, lower_is_better: bool = False
) -> float | None:
    """``figure / baseline`` (throughput), or ``baseline / figure`` when lower is better, so a
    ratio > 1 always means "better than the baseline"."""
    if figure is None or baseline is None or figure <= 0 or baseline <= 0:
        return None
    return baseline / figure if lower_is_better else figure / baseline


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (``q`` in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


class Context:
    """What every benchmark gets: the size mode, the command line, shared baselines."""

    def __init__(self, mode: str, command: str, out_dir: Path) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {MODES}")
        self.mode = mode
        self.command = command
        self.out_dir = out_dir
        self._cache: dict[str, Any] = {}

    def size(self, full: int, *, smoke: int | None = None, minimum: int = 1) -> int:
        """``full`` in a full run, ~1/10 of it with ``--quick``, ``smoke`` (or 1/100) in smoke."""
        if self.mode == "full":
            return full
        if self.mode == "quick":
            return max(minimum, full // 10)
        return max(minimum, smoke if smoke is not None else full // 100)

    def seconds(self, full: float) -> float:
        """A measuring window: ``full`` seconds, /10 with ``--quick``, /40 in smoke."""
        return {"full": full, "quick": full / 10, "smoke": full / 40}[self.mode]

    def shared(self, key: str, make: Callable[[], Any]) -> Any:
        """A baseline several benchmarks compare against, measured once per run."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def result(self, **kw: Any) -> Result:
        kw.setdefault("command", self.command)
        return Result(**kw)


# -- temp folders on the real disk -----------------------------------------------------------
def fs_type(path: Path) -> str:
    """The file system type holding ``path`` (longest mount-point prefix in /proc/mounts)."""
    best, kind = "", "unknown"
    try:
        resolved = str(path.resolve())
        with open("/proc/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                if (resolved == mnt or resolved.startswith(mnt.rstrip("/") + "/")) and len(
                    mnt
                ) > len(best):
                    best, kind = mnt, f"{parts[2]} ({parts[0]} on {mnt})"
    except OSError:
        pass
    return kind


@contextmanager
def temp_dir(prefix: str) -> Iterator[str]:
    """A fresh folder under ``benchmarks/results/tmp`` (same disk as the repo), removed after."""
    TMP_ROOT.mkdir(parents=True, exist_ok=True)
    path = tempfile.mkdtemp(prefix=prefix + "-", dir=TMP_ROOT)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def machine_notes() -> list[str]:
    TMP_ROOT.mkdir(parents=True, exist_ok=True)
    kind = fs_type(TMP_ROOT)
    notes = [
        f"python {platform.python_version()} on {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} CPUs, sqlite {sqlite3.sqlite_version}",
        f"temp folders: {TMP_ROOT} -> {kind}",
    ]
    if kind.startswith("tmpfs") or kind.startswith("ramfs"):
        notes.append("WARNING: temp folder is on tmpfs: fsync is free there, durable figures lie")
    return notes


# -- timing helpers -------------------------------------------------------------------------------
@contextmanager
def gc_quiet() -> Iterator[None]:
    """Collect before a timed section (so garbage from the setup is not billed to it)."""
    gc.collect()
    yield


def now() -> float:
    return time.perf_counter()


def python_exe() -> str:
    return sys.executable


def run_threads(
    produce: Callable[[int, float], int], window: float, threads: int
) -> tuple[int, float, float]:
    """Start ``threads`` producers together; (jobs done, seconds until the last finished,
    CPU seconds the whole process used meanwhile: a figure the machine's other load
    disturbs much less than the wall time)."""
    counts = [0] * threads
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)
    deadline_box: list[float] = []

    def body(t: int) -> None:
        barrier.wait()
        try:
            counts[t] = produce(t, deadline_box[0])
        except BaseException as exc:  # reported below, not swallowed
            errors.append(exc)

    workers = [threading.Thread(target=body, args=(t,), daemon=True) for t in range(threads)]
    for th in workers:
        th.start()
    gc.collect()
    cpu_started = time.process_time()
    started = time.perf_counter()
    deadline_box.append(started + window)
    barrier.wait()
    for th in workers:
        th.join()
    elapsed = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started
    if errors:
        raise errors[0]
    return sum(counts), elapsed, cpu_s
