"""Raw disk: what one fsync costs here, and what sharing it across 100 records buys.

Every durable figure in ``benchmarks.durable`` is bounded by these: a policy-``always``
queue cannot beat ``disk.fsync``; a group-committing one cannot beat ``disk.grouped_fsync``.
"""

from __future__ import annotations

import os
import time

from benchmarks._harness import Context, Result, percentile, ratio, temp_dir

RECORD = b"x" * 99 + b"\n"  # 100 bytes


def _fsync_loop(path: str, n: int, per_sync: int) -> tuple[float, list[float]]:
    """Append ``per_sync`` 100-byte records then fsync, ``n`` times; (elapsed, fsync latencies)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        lat: list[float] = []
        chunk = RECORD * per_sync if per_sync > 1 else RECORD
        started = time.perf_counter()
        for _ in range(n):
            os.write(fd, chunk)
            t = time.perf_counter()
            os.fsync(fd)
            lat.append(time.perf_counter() - t)
        return time.perf_counter() - started, lat
    finally:
        os.close(fd)


def raw_fsync(ctx: Context) -> dict[str, float]:
    """Shared with ``benchmarks.durable`` (the p99 baseline of policy ``always``)."""

    def measure() -> dict[str, float]:
        n = ctx.size(2_000, smoke=50)
        with temp_dir("disk-fsync") as d:
            path = os.path.join(d, "f.log")
            _fsync_loop(path, min(n, 20), 1)  # warm-up: create the file, first extents
            elapsed, lat = _fsync_loop(path, n, 1)
        lat.sort()
        return {
            "n": n,
            "per_s": n / elapsed,
            "p50_ms": percentile(lat, 50) * 1e3,
            "p99_ms": percentile(lat, 99) * 1e3,
            "max_ms": lat[-1] * 1e3,
        }

    result: dict[str, float] = ctx.shared("disk.raw_fsync", measure)
    return result


def bench_fsync(ctx: Context) -> list[Result]:
    r = raw_fsync(ctx)
    n = int(r["n"])
    note = f"append 100 B + os.fsync, {n} times, one file; max {r['max_ms']:.3f} ms"
    return [
        ctx.result(name="disk.fsync", figure=r["per_s"], unit="fsyncs/s", notes=note),
        ctx.result(name="disk.fsync_p50", figure=r["p50_ms"], unit="ms", notes=note),
        ctx.result(name="disk.fsync_p99", figure=r["p99_ms"], unit="ms", notes=note),
    ]


def bench_grouped(ctx: Context) -> list[Result]:
    r = raw_fsync(ctx)
    n = ctx.size(2_000, smoke=50)
    with temp_dir("disk-group") as d:
        path = os.path.join(d, "f.log")
        _fsync_loop(path, min(n, 20), 100)
        elapsed, lat = _fsync_loop(path, n, 100)
    per_s = n * 100 / elapsed
    lat.sort()
    return [
        ctx.result(
            name="disk.grouped_fsync",
            figure=per_s,
            unit="records/s",
            baseline=r["per_s"],
            baseline_label="disk.fsync (1 record/fsync)",
            ratio=ratio(per_s, r["per_s"]),
            notes=f"100 x 100 B records per os.fsync, {n} fsyncs; fsync p50 "
            f"{percentile(lat, 50) * 1e3:.3f} ms p99 {percentile(lat, 99) * 1e3:.3f} ms",
        )
    ]


BENCHMARKS = [
    ("disk.fsync", bench_fsync),
    ("disk.grouped_fsync", bench_grouped),
]
