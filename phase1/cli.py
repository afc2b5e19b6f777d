"""The command line: ``python -m phase1 <command> ...`` (also installed as ``phase1``).

Owns: argument parsing, the one-line error contract and the plain-text / JSON rendering
of what the durable modules report.  It must not know any queue rule or file format: it
calls ``recovery.recover``, ``wal.*`` and ``snapshot.*`` and prints their answers.

Contract kept by ``main``:

* exit 0 on success, 2 on any ``QueueKitError`` or ``OSError`` (one line
  ``phase1: error: <message>`` on stderr, never a traceback), 2 on a usage error
  (argparse), 130 on Ctrl-C;
* read-only commands (``status``, ``wal dump|stats|verify``, ``snapshot show``) change no
  file; only ``wal repair --yes`` writes.

Adding a command is one ``register_<name>(subparsers)`` function that builds its parser
with ``_command(...)`` (which sets the handler) and one entry in ``REGISTRARS``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import textwrap
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from phase1.config import Config, load_config
from phase1.core import Record
from phase1.disk import OsDisk
from phase1.errors import QueueKitError, WalCorruptionError
from phase1.recovery import recover
from phase1.snapshot import (
    decode_snapshot,
    describe_snapshot,
    kept_snapshot_paths,
    load_snapshot,
)
from phase1.wal import (
    TornTail,
    WalRead,
    encode_records,
    list_segments,
    read_wal,
    repair_wal,
    verify_wal,
    wal_stats,
)

__all__ = ["main", "build_parser", "REGISTRARS", "DEFAULT_CONFIG", "EXIT_OK", "EXIT_ERROR"]

DEFAULT_CONFIG = "configs/default.yaml"
EXIT_OK = 0
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
DEAD_SHOWN_MAX = 20  # `status` lists at most this many dead jobs in a table

Handler = Callable[[argparse.Namespace], int]
Subparsers = Any  # argparse._SubParsersAction is private; this is what add_parser lives on


# == plumbing ==========================================================================
def _command(
    sub: Subparsers,
    name: str,
    *,
    summary: str,
    description: str,
    examples: Sequence[str],
    handler: Handler | None = None,
) -> argparse.ArgumentParser:
    """A sub-parser with a one-line ``summary`` (in the parent's list), a paragraph of
    ``description`` and ``examples`` in its ``--help``; ``handler`` runs the command."""
    epilog = "example" + ("s" if len(examples) > 1 else "") + ":\n"
    epilog += "\n".join(f"  {e}" for e in examples)
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, width=88),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if handler is not None:
        parser.set_defaults(handler=handler)
    return parser


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        metavar="C",
        help=f"YAML config naming wal_path and snapshot_path (default: {DEFAULT_CONFIG})",
    )


def _add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="plain-text table (default) or JSON",
    )


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _json_doc(obj: object) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode("utf-8") + "\n")


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Fixed-width columns, ``-`` for None; a column of integers is right-aligned."""
    data = [list(row) for row in rows]
    cells = [[("-" if v is None else str(v)) for v in row] for row in data]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], len(v))
    numeric = [
        any(_is_int(row[i]) for row in data)
        and all(row[i] is None or _is_int(row[i]) for row in data)
        for i in range(len(headers))
    ]
    lines = []
    for row in [list(headers), *cells]:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(row, widths, numeric, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _pairs(rows: Iterable[tuple[str, object]], indent: str = "") -> str:
    """``key  value`` lines with the keys padded to one width."""
    items = [(k, "-" if v is None else str(v)) for k, v in rows]
    width = max((len(k) for k, _ in items), default=0)
    return "\n".join(f"{indent}{k.ljust(width)}  {v}" for k, v in items)


def _plain(obj: object) -> object:
    """A JSON-ready view of a (possibly nested) dataclass, tuple or mapping."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def _torn_line(torn: TornTail) -> str:
    """One phrase locating a torn tail: file, line, offset, bytes, why."""
    return (
        f"{torn.path} line {torn.line}, offset {torn.offset}: "
        f"{torn.length_bytes} bytes ({torn.reason})"
    )


# == status ============================================================================
def cmd_status(args: argparse.Namespace) -> int:
    config = _config(args)
    disk = OsDisk()
    try:
        core, report = recover(disk, config, truncate=False)
    finally:
        disk.close()
    dead = core.dead_reasons()
    if args.format == "json":
        _json_doc(
            {
                "config": args.config,
                "wal_path": config.wal_path,
                "snapshot_path": config.snapshot_path,
                "last_seq": report.wal_last_seq,
                "counts": report.counts,
                "snapshot": {
                    "used": report.snapshot_used,
                    "last_seq": report.snapshot_last_seq,
                    "jobs": report.snapshot_jobs,
                    "finished_jobs": report.snapshot_finished,
                    "damaged": [{"path": p, "reason": r} for p, r in report.snapshot_damaged],
                },
                "wal": {
                    "segments": list(report.wal_segments),
                    "records_read": report.records_read,
                    "records_replayed": report.records_replayed,
                    "torn_tail": _plain(report.torn),
                },
                "recovery_would": {
                    "requeue": report.requeued,
                    "dead_letter": report.dead_lettered,
                    "append_records": len(report.settle_records),
                },
                "dead": [{"job_id": j, "reason": r} for j, r in dead.items()],
            }
        )
        return EXIT_OK

    snap = (
        f"{report.snapshot_used} (seq {report.snapshot_last_seq}, {report.snapshot_jobs} jobs)"
        if report.snapshot_used
        else f"none at {config.snapshot_path} (replaying the WAL from seq 1)"
    )
    segments = ", ".join(report.wal_segments) if report.wal_segments else "none"
    _out(f"phase1 status: {args.config} (read-only: no file was changed)")
    _out(
        _pairs(
            [
                ("last_seq", report.wal_last_seq),
                ("snapshot", snap),
                ("wal segments", f"{len(report.wal_segments)}: {segments}"),
                ("records replayed", f"{report.records_replayed} of {report.records_read} read"),
                (
                    "torn tail",
                    (_torn_line(report.torn) + "; recovery truncates it")
                    if report.torn is not None
                    else "none",
                ),
            ]
        )
    )
    for path, reason in report.snapshot_damaged:
        _out(f"warning: damaged snapshot skipped: {path}: {reason}")
    if report.settle_records:
        _out(
            f"left in flight or failed when the log ends: recovery re-queues "
            f"{report.requeued} and dead-letters {report.dead_lettered} job(s), writing "
            f"{len(report.settle_records)} record(s) (the counts below include that)"
        )
    _out("")
    _out(_table(["state", "jobs"], list(report.counts.items())))
    if dead:
        _out("")
        _out(f"dead jobs ({len(dead)}):")
        shown = list(dead.items())[:DEAD_SHOWN_MAX]
        _out(_table(["job_id", "reason"], shown))
        if len(dead) > DEAD_SHOWN_MAX:
            _out(f"... and {len(dead) - DEAD_SHOWN_MAX} more")
    return EXIT_OK


def register_status(sub: Subparsers) -> None:
    p = _command(
        sub,
        "status",
        summary="show what recovery would rebuild from the snapshot + WAL (read-only)",
        description=(
            "Run recovery read-only (no torn tail is truncated, nothing is written) and "
            "print the queue it would rebuild: counts by state (pending, in_flight, "
            "completed, dead, failed, blocked, delayed), last_seq, the snapshot used, the "
            "WAL segments and records replayed, a torn tail if any, and the dead jobs with "
            f"their reasons (the first {DEAD_SHOWN_MAX} in a table; all in JSON). Jobs "
            "left in flight by a stopped process are shown as recovery would settle them."
        ),
        examples=[
            "python -m phase1 status --config configs/default.yaml",
            "python -m phase1 status --format json | jq .counts",
        ],
        handler=cmd_status,
    )
    _add_config(p)
    _add_format(p)


# == wal ===============================================================================
def _wal_path(args: argparse.Namespace) -> str:
    """The WAL named on the command line, else ``wal_path`` from ``--config``."""
    if args.wal:
        return str(args.wal)
    return _config(args).wal_path


def _read(wal_path: str, *, after_seq: int = 0) -> WalRead:
    disk = OsDisk()
    try:
        return read_wal(disk, wal_path, after_seq=after_seq)
    finally:
        disk.close()


def _iso(timestamp_ms: int) -> str:
    """The on-disk timestamp form, ``2024-01-01T10:00:00.000Z``."""
    moment = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{timestamp_ms % 1000:03d}Z"


def cmd_wal_dump(args: argparse.Namespace) -> int:
    wal_path = _wal_path(args)
    since = args.since_seq
    read = _read(wal_path, after_seq=max(since - 1, 0) if since is not None else 0)
    records: Iterable[Record] = read.records
    if args.type:
        wanted = args.type.upper()
        records = (r for r in records if r.type == wanted)
    if args.job is not None:
        records = (r for r in records if r.job_id == args.job)
    chosen = list(records)
    if args.limit is not None:
        chosen = chosen[: args.limit]
    if args.format == "json":
        # exactly the stored lines (re-encoding a decoded record is byte-identical)
        sys.stdout.write(encode_records(chosen).decode("utf-8"))
    else:
        rows = [
            (
                r.seq,
                r.type,
                r.job_id,
                _iso(r.timestamp_ms),
                r.attempt,
                r.worker_id,
                r.reason,
            )
            for r in chosen
        ]
        _out(_table(["seq", "type", "job_id", "timestamp", "attempt", "worker", "reason"], rows))
    if read.torn is not None:
        sys.stderr.write(f"phase1: warning: torn tail not shown: {_torn_line(read.torn)}\n")
    return EXIT_OK


def cmd_wal_stats(args: argparse.Namespace) -> int:
    read = _read(_wal_path(args))
    stats = wal_stats(read)
    if args.format == "json":
        _json_doc(stats)
        return EXIT_OK
    segments = stats["segments"]
    _out(
        _pairs(
            [
                ("records", stats["records"]),
                ("seq", f"{stats['first_seq']}..{stats['last_seq']}"),
                ("segments", f"{len(segments)}: {', '.join(segments) if segments else 'none'}"),
                ("bytes", stats["bytes"]),
                ("torn tail", "none" if read.torn is None else _torn_line(read.torn)),
            ]
        )
    )
    _out("")
    _out(_table(["type", "records"], list(stats["by_type"].items())))
    return EXIT_OK


def cmd_wal_verify(args: argparse.Namespace) -> int:
    wal_path = _wal_path(args)
    disk = OsDisk()
    try:
        read = verify_wal(disk, wal_path)
    finally:
        disk.close()
    n = len(read.records)
    none_yet = "" if read.segments else f" (no WAL at {wal_path} yet)"
    _out(
        f"ok: {n} record{'s' if n != 1 else ''} in {len(read.segments)} "
        f"segment{'s' if len(read.segments) != 1 else ''}, seq {read.first_seq}..{read.last_seq}"
        f"{none_yet}"
    )
    if read.torn is not None:
        _out(
            f"warning: torn tail at {_torn_line(read.torn)}: expected after a crash; "
            "recovery truncates it before the next append"
        )
    return EXIT_OK


def _repair_plan(wal_path: str) -> dict[str, Any] | None:
    """What ``repair_wal`` would cut, found read-only; ``None`` for a clean log."""
    disk = OsDisk()
    try:
        try:
            read = read_wal(disk, wal_path)
        except WalCorruptionError as exc:
            path, offset, line, what = exc.path, exc.offset, exc.line, str(exc)
        else:
            if read.torn is None:
                return None
            torn = read.torn
            path, offset, line = torn.path, torn.offset, torn.line
            what = f"torn tail: {torn.reason}"
        segments = list_segments(disk, wal_path)
        later = segments[segments.index(path) + 1 :] if path in segments else []
        return {
            "path": path,
            "offset": offset,
            "line": line,
            "bytes": disk.size(path) - offset,
            "later_segments": later,
            "later_bytes": sum(disk.size(p) for p in later),
            "saved_to": f"{path}.corrupt-{offset}",
            "damage": what,
        }
    finally:
        disk.close()


def cmd_wal_repair(args: argparse.Namespace) -> int:
    wal_path = _wal_path(args)
    if not args.yes:
        plan = _repair_plan(wal_path)
        if plan is None:
            _out(f"ok: {wal_path} is clean; nothing to repair")
            return EXIT_OK
        later = plan["later_segments"]
        also = (
            f", and move aside {len(later)} later segment(s) ({plan['later_bytes']} bytes): "
            + ", ".join(later)
            if later
            else ""
        )
        _out(f"damage: {plan['damage']}")
        _out(
            f"would cut {plan['path']} at byte offset {plan['offset']} (line {plan['line']}): "
            f"{plan['bytes']} bytes{also}; the cut bytes would be saved to {plan['saved_to']}"
        )
        return _error(
            f"wal repair changes files only with --yes: it would cut {plan['bytes']} bytes "
            f"from {plan['path']} at offset {plan['offset']}; run again with --yes"
        )
    disk = OsDisk()
    try:
        report = repair_wal(disk, wal_path)
    finally:
        disk.close()
    if not report.repaired:
        _out(f"ok: {wal_path} is clean; nothing to repair")
        return EXIT_OK
    _out(
        f"cut {report.bytes_cut} bytes (about {report.records_lost} records) from "
        f"{report.path} at byte offset {report.offset}, line {report.line}: {report.reason}"
    )
    for saved in report.saved_to:
        _out(f"saved cut bytes to {saved}")
    for src, dst in report.renamed:
        _out(f"renamed {src} -> {dst}")
    _out(f"next: phase1 wal verify {wal_path}")
    return EXIT_OK


def _add_wal(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "wal",
        nargs="?",
        metavar="WAL",
        help="the active WAL file (default: wal_path from --config)",
    )


def register_wal(sub: Subparsers) -> None:
    wal = _command(
        sub,
        "wal",
        summary="inspect, verify or repair the write-ahead log",
        description=(
            "Read the WAL segments named by wal_path (or a WAL file given on the command "
            "line): dump records, count them, verify every checksum, or cut off damage on "
            "request. Only `wal repair --yes` changes a file."
        ),
        examples=["python -m phase1 wal verify --config configs/default.yaml"],
    )
    wsub = wal.add_subparsers(dest="wal_command", metavar="{dump,stats,verify,repair}")
    wsub.required = True

    p = _command(
        wsub,
        "dump",
        summary="print WAL records, filtered",
        description=(
            "Print the WAL's valid records in seq order, optionally filtered by record "
            "type, job id and first seq, up to a limit. Table: seq, type, job_id, "
            "timestamp, attempt, worker, reason. JSON: exactly the stored lines (one "
            "object per line, checksum included), so the seed's jq recipes apply. A torn "
            "tail is not printed (a warning on stderr says where it is)."
        ),
        examples=[
            "python -m phase1 wal dump --type DEAD --limit 20",
            "python -m phase1 wal dump --format json | jq 'select(.type == \"TIMEOUT\")'",
        ],
        handler=cmd_wal_dump,
    )
    _add_wal(p)
    _add_config(p)
    p.add_argument("--type", metavar="T", help="only records of this type (ENQUEUE, ACK, ...)")
    p.add_argument("--job", metavar="ID", help="only records about this job id")
    p.add_argument("--since-seq", type=_non_negative, metavar="N", help="only seq >= N")
    p.add_argument("--limit", type=_non_negative, metavar="N", help="print at most N records")
    _add_format(p)

    p = _command(
        wsub,
        "stats",
        summary="count WAL records by type; seq range, segments, bytes, torn tail",
        description=(
            "Summarize the WAL: records by type, first and last seq, the segment files "
            "and their total size in bytes, and a torn tail if one is there."
        ),
        examples=["python -m phase1 wal stats --format json"],
        handler=cmd_wal_stats,
    )
    _add_wal(p)
    _add_config(p)
    _add_format(p)

    p = _command(
        wsub,
        "verify",
        summary="check every record's framing, checksum and seq order",
        description=(
            "Read every WAL segment and check each record's framing, checksum and seq "
            "order. Clean: prints 'ok: N records in K segments, seq A..B' and exits 0. A "
            "torn last record (a crash mid-append) is expected weather: a warning line, "
            "exit 0 (recovery truncates it). A bad record followed by good ones is "
            "corruption: one error line naming file, line and offset, exit 2; see "
            "`phase1 wal repair`."
        ),
        examples=[
            "python -m phase1 wal verify --config configs/default.yaml",
            "python -m phase1 wal verify data/wal.log",
        ],
        handler=cmd_wal_verify,
    )
    _add_wal(p)
    _add_config(p)

    p = _command(
        wsub,
        "repair",
        summary="cut the WAL at the first bad record (needs --yes)",
        description=(
            "Truncate the WAL at its first damaged record (corruption or a torn tail) so "
            "recovery can proceed. Every record after the cut leaves the log, so without "
            "--yes this only says what it would cut (file, offset, bytes) and exits 2. "
            "With --yes it saves the cut bytes to <file>.corrupt-<offset> (later segments "
            "are renamed to <segment>.corrupt-0), cuts, and prints where they went."
        ),
        examples=[
            "python -m phase1 wal repair --config configs/default.yaml",
            "python -m phase1 wal repair --config configs/default.yaml --yes",
        ],
        handler=cmd_wal_repair,
    )
    _add_wal(p)
    _add_config(p)
    p.add_argument("--yes", action="store_true", help="really cut (the cut bytes are kept)")


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


# == snapshot ==========================================================================
def cmd_snapshot_show(args: argparse.Namespace) -> int:
    config = _config(args)
    path = args.path or config.snapshot_path
    keep = 1 if args.path else config.snapshots_kept
    disk = OsDisk()
    try:
        loaded = load_snapshot(disk, path, keep=keep)
        damaged = dict(loaded.damaged)
        copies: list[dict[str, object]] = []
        for candidate in kept_snapshot_paths(path, keep):
            entry: dict[str, object] = {"path": candidate}
            if candidate == loaded.used_path:
                assert loaded.state is not None
                entry.update(status="used", last_seq=loaded.state.last_seq)
            elif candidate in damaged:
                entry.update(status="damaged", reason=damaged[candidate])
            elif not disk.exists(candidate):
                entry.update(status="missing")
            else:
                try:
                    older = decode_snapshot(disk.read(candidate), path=candidate)
                    entry.update(status="ok", last_seq=older.last_seq)
                except QueueKitError as exc:
                    entry.update(status="damaged", reason=str(exc))
            copies.append(entry)
    finally:
        disk.close()

    summary = describe_snapshot(loaded.state) if loaded.state is not None else None
    if args.format == "json":
        _json_doc(
            {
                "path": path,
                "used": loaded.used_path,
                "summary": summary,
                "copies": copies,
                "damaged": [{"path": p, "reason": r} for p, r in loaded.damaged],
                "leftover_tmp": loaded.leftover_tmp,
            }
        )
        return EXIT_OK
    if summary is None:
        _out(f"no snapshot at {path}: recovery starts empty and replays the WAL from seq 1")
    else:
        _out(f"snapshot {loaded.used_path}")
        _out(_pairs(list(summary.items()), indent="  "))
    if len(copies) > 1 or damaged:
        _out("")
        _out(
            _table(
                ["copy", "status", "last_seq", "reason"],
                [(c["path"], c["status"], c.get("last_seq"), c.get("reason")) for c in copies],
            )
        )
    for p, reason in loaded.damaged:
        _out(f"warning: damaged snapshot skipped: {p}: {reason}")
    if loaded.leftover_tmp:
        _out(f"note: {path}.tmp is left over from an interrupted write (ignored)")
    return EXIT_OK


def register_snapshot(sub: Subparsers) -> None:
    snap = _command(
        sub,
        "snapshot",
        summary="inspect snapshots",
        description="Inspect the snapshot files named by snapshot_path (read-only).",
        examples=["python -m phase1 snapshot show --config configs/default.yaml"],
    )
    ssub = snap.add_subparsers(dest="snapshot_command", metavar="{show}")
    ssub.required = True
    p = _command(
        ssub,
        "show",
        summary="summarize the snapshot recovery would use, and every kept copy",
        description=(
            "Load the newest readable snapshot the way recovery does and print its "
            "summary (schema_version, last_seq, jobs queued, in flight, completed, dead, "
            "failed). Every kept copy is listed with its status; a damaged newer copy is "
            "reported with the reason it was skipped. --path shows one file instead."
        ),
        examples=[
            "python -m phase1 snapshot show",
            "python -m phase1 snapshot show --path data/snapshot.json.1 --format json",
        ],
        handler=cmd_snapshot_show,
    )
    _add_config(p)
    _add_format(p)
    p.add_argument("--path", metavar="P", help="show this snapshot file instead")


# == run ================================================================================
DEAD_LISTED_MAX = 10  # `run` lists at most this many dead jobs on stderr


def cmd_run(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from phase1.jobs import parse_jobs
    from phase1.runtime.controller import Controller, MetricsSink
    from phase1.runtime.handlers import HandlerRegistry

    config = _config(args)
    jobs = []
    if args.jobs is not None:
        with open(args.jobs, "rb") as f:
            data = f.read()
        jobs = parse_jobs(data, source=args.jobs)  # all or nothing, before any file changes
    if config.cpu_affinity is not None:  # before any thread starts: they inherit the mask
        from phase1.runtime.affinity import pin_process

        pin_process(config.cpu_affinity, where=f"{args.config}: cpu_affinity")
        if not args.quiet:
            _err(f"phase1 run: every thread pinned to CPU(s) {list(config.cpu_affinity)}")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="phase1: %(message)s")

    metrics: MetricsSink | None = None
    server = None
    if args.metrics_port is not None:
        from phase1.runtime.metrics import MetricsServer, QueueMetrics

        queue_metrics = QueueMetrics()
        metrics = queue_metrics
        server = MetricsServer(queue_metrics, config.metrics_host, args.metrics_port)
    registry = HandlerRegistry(config, allow_crash=args.allow_crash_jobs)
    ctl = Controller(config, registry=registry, metrics=metrics, process_pool=args.process_pool)
    stop_requested = threading.Event()
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, lambda *_: stop_requested.set())
    try:
        ctl.start()
        report = ctl.recovery_report
        assert report is not None
        _err(f"phase1 run: recovered in {ctl.recovery_s * 1000:.1f} ms: {report.summary()}")
        if server is not None:
            port = server.start()
            _err(f"phase1 run: metrics on http://{config.metrics_host}:{port}/metrics")
        if jobs:
            added = ctl.enqueue_jobs(jobs, skip_known=True)
            if not args.quiet:
                _err(
                    f"phase1 run: submitted {added} new job(s) from {args.jobs} "
                    f"({len(jobs) - added} already known)"
                )
        if args.until_idle:
            _run_until_idle(ctl, stop_requested, show_bar=sys.stderr.isatty() and not args.quiet)
        else:
            if not args.quiet:
                _err("phase1 run: serving; Ctrl-C or SIGTERM stops cleanly")
            stop_requested.wait()
    finally:
        ctl.stop()
        if server is not None:
            server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    status = ctl.status()
    dead = ctl.dead_reasons()
    for job_id, reason in list(dead.items())[:DEAD_LISTED_MAX]:
        _err(f"dead: {job_id}: {reason}")
    if len(dead) > DEAD_LISTED_MAX:
        _err(f"dead: ... and {len(dead) - DEAD_LISTED_MAX} more (`phase1 status` lists them)")
    sys.stdout.write(orjson.dumps(status).decode("utf-8") + "\n")
    return EXIT_OK


def _run_until_idle(ctl: Any, stop_requested: Any, *, show_bar: bool) -> None:
    """Wait until every job is completed or dead (or a signal asks to stop)."""
    bar = None
    if show_bar:
        from tqdm import tqdm

        s = ctl.status()
        total = s["pending"] + s["in_flight"] + s["failed"] + s["completed"] + s["dead"]
        bar = tqdm(total=total, file=sys.stderr, unit="job", desc="phase1 run")
    try:
        while not stop_requested.is_set():
            if ctl.wait_until_idle(0.25):
                break
            if bar is not None:
                s = ctl.status()
                bar.n = s["completed"] + s["dead"]
                bar.set_postfix(dead=s["dead"], retries=s["retries"], refresh=False)
                bar.refresh()
    finally:
        if bar is not None:
            s = ctl.status()
            bar.n = s["completed"] + s["dead"]
            bar.close()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def register_run(sub: Subparsers) -> None:
    p = _command(
        sub,
        "run",
        summary="run the queue with worker threads on real files",
        description=(
            "Recover from the files named by the config (the recovery summary goes to "
            "stderr), submit the jobs in --jobs whose ids the queue does not know yet (so "
            "rerunning after a crash is safe), then process them with worker_count threads: "
            "until every job is completed or dead with --until-idle, else until SIGINT or "
            "SIGTERM. Stops cleanly (drain_on_stop), prints the final counts as one JSON "
            "line on stdout and the first dead jobs with their reasons on stderr."
        ),
        examples=[
            "python -m phase1 run --config configs/test.yaml --jobs data/test-jobs.json "
            "--until-idle",
            "python -m phase1 run --config configs/default.yaml --metrics-port 9090",
        ],
        handler=cmd_run,
    )
    _add_config(p)
    p.add_argument(
        "--jobs", metavar="FILE", help="JSON array of jobs to submit (known ids skipped)"
    )
    p.add_argument(
        "--until-idle", action="store_true", help="exit once every job is completed or dead"
    )
    p.add_argument(
        "--metrics-port",
        type=_non_negative,
        metavar="N",
        help="serve Prometheus metrics on metrics_host:N (0 picks a free port)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or info lines")
    p.add_argument(
        "--allow-crash-jobs",
        action="store_true",
        help="enable the 'crash' job kind, which SIGKILLs this process (crash tests only)",
    )
    p.add_argument(
        "--process-pool",
        action="store_true",
        help="run compute/* jobs in a process pool instead of worker threads",
    )


# == placeholders (other engineers replace these) =======================================
def cmd_sim(args: argparse.Namespace) -> int:
    from phase1.sim import scenarios

    if args.list:
        width = max(len(n) for n in scenarios.SCENARIOS)
        for name, (description, _) in scenarios.SCENARIOS.items():
            _out(f"{name.ljust(width)}  {description}")
        return EXIT_OK
    if args.scenario is None:
        return _error("phase1 sim: give --scenario NAME (or --list to see the names)")
    if args.scenario not in scenarios.SCENARIOS:
        return _error(
            f"phase1 sim: no scenario {args.scenario!r}; choose one of "
            f"{', '.join(scenarios.SCENARIOS)} (see --list)"
        )
    if args.until is not None and args.until <= 0:
        return _error(f"phase1 sim: --until={args.until} must be > 0 virtual seconds")
    from phase1.sim.harness import SimulationError

    try:
        result = scenarios.run_scenario(args.scenario, args.seed, until_s=args.until)
    except SimulationError as exc:
        return _error(str(exc))
    files = scenarios.save_run(result, args.out)
    _out(f"phase1 sim: scenario {args.scenario}, seed {args.seed}")
    _out(result.summary())
    _out(f"wrote {len(files)} files to {args.out}: {', '.join(os.path.basename(f) for f in files)}")
    return EXIT_OK


def register_sim(sub: Subparsers) -> None:
    p = _command(
        sub,
        "sim",
        summary="run a named SimPy scenario with injected faults; write CSV and PNG plots",
        description=(
            "Run the real core, WAL, snapshots and recovery on a simulated disk in virtual "
            "time, with the named scenario's crashes, power losses and slow or stuck "
            "workers. The seed draws everything: the same seed gives the same ledger. "
            "Writes ledger.json, events.csv, throughput.csv, depth.csv, recoveries.csv, "
            "latencies.csv and throughput/depth/latency PNGs into --out."
        ),
        examples=[
            "python -m phase1 sim --list",
            "python -m phase1 sim --scenario crash-storm --seed 7 --out data/run/sim",
        ],
        handler=cmd_sim,
    )
    p.add_argument("--list", action="store_true", help="print the scenario names and exit")
    p.add_argument("--scenario", metavar="NAME", help="which scenario (see --list)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="the seed (default 0)")
    p.add_argument(
        "--out", default="data/run/sim", metavar="DIR", help="output folder (default data/run/sim)"
    )
    p.add_argument(
        "--until", type=float, default=None, metavar="S", help="stop at this virtual time (s)"
    )


# == explore ===========================================================================
def cmd_explore(args: argparse.Namespace) -> int:
    from phase1 import crashcheck
    from phase1.protocol import VARIANTS

    if args.list:
        _out(_table(["variant", "breaks"], [(p.name, p.summary) for p in VARIANTS.values()]))
        return EXIT_OK
    if args.variant != "all" and args.variant not in VARIANTS:
        return _error(
            f"--variant {args.variant!r} is not a protocol variant; known: all, "
            f"{', '.join(VARIANTS)} (`phase1 explore --list`)"
        )
    names = list(VARIANTS) if args.variant == "all" else [args.variant]
    max_states = None if args.max_states == 0 else args.max_states
    progress = None
    bar = None
    if args.format == "table" and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=0, unit="crash point", file=sys.stderr, leave=False)

        def progress(name: str, done: int, total: int) -> None:
            assert bar is not None
            if done == 1:
                bar.reset(total=total)
                bar.set_description(name)
            bar.update(1)

    try:
        config = crashcheck.STANDARD_CONFIG.replace(preallocate_bytes=args.preallocate)
        result = crashcheck.explore(
            names, seed=args.seed, max_states=max_states, config=config, progress=progress
        )
    finally:
        if bar is not None:
            bar.close()
    if args.format == "json":
        doc = {
            "seed": result.seed,
            "max_states_per_crash_point": result.max_states,
            "variants": [
                {
                    **v.row(),
                    "summary": v.summary,
                    "smallest": {
                        kind: {
                            "crash": found.state.describe(),
                            "after_ops": found.state.after_ops,
                            "lost": [str(f) for f in found.lost],
                            "detail": found.detail,
                        }
                        for kind, found in v.smallest.items()
                    },
                }
                for v in result.variants
            ],
        }
        _json_doc(doc)
    else:
        for line in crashcheck.report_lines(result):
            _out(line)
    ok = all(v.expected_found for v in result.variants)
    return EXIT_OK if ok else EXIT_ERROR


def register_explore(sub: Subparsers) -> None:
    p = _command(
        sub,
        "explore",
        summary="enumerate crash states of a workload and check recovery",
        description=(
            "Run a small standard workload (enqueue, dispatch, ack, fail, a timeout, two "
            "snapshots with WAL rotation) on the simulated disk, then crash it after every "
            "disk op: as a process crash and as every power loss the disk model allows "
            "(unsynced ops kept or dropped per file, a torn last write cut at every byte, "
            "zero-filled tails). Each state is recovered with the real recovery code and "
            "checked: nothing acknowledged lost, no job in two states, check() holds, a "
            "second recovery agrees, the next append is readable. The correct protocol "
            "must show no violation; each broken variant (--list) must show its own. "
            "Exits 2 if a variant's expectation fails. Needs no config or files."
        ),
        examples=[
            "python -m phase1 explore --variant correct",
            "python -m phase1 explore --variant correct --preallocate 128 --max-states 0",
            "python -m phase1 explore --variant all --max-states 200",
            "python -m phase1 explore --list",
        ],
        handler=cmd_explore,
    )
    p.add_argument(
        "--variant",
        default="all",
        metavar="NAME",
        help="a protocol variant (see --list) or 'all' (default)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for sampling crash states (0)")
    p.add_argument(
        "--max-states",
        type=_non_negative,
        default=2000,
        metavar="N",
        help="crash states checked per crash point; more are sampled (default 2000, 0 = all)",
    )
    p.add_argument(
        "--preallocate",
        type=_non_negative,
        default=0,
        metavar="BYTES",
        help=(
            "pad the WAL with newlines this far ahead and write records over the padding, "
            "as the runtime does (preallocate_bytes); default 0: plain appends"
        ),
    )
    p.add_argument("--list", action="store_true", help="list the protocol variants and exit")
    _add_format(p)


def cmd_bench_calibrate(args: argparse.Namespace) -> int:
    from phase1.calibrate import calibrate, write_calibration

    config = _config(args)
    quick = bool(args.quick)
    result = calibrate(
        config,
        jobs=2_000 if quick else 20_000,
        wal_jobs=1_000 if quick else 10_000,
        fsyncs=50 if quick else 500,
        repeats=1 if quick else 3,
        folder=args.dir,
    )
    values = result.as_dict()
    if args.format == "json":
        _json_doc({**values, "startup_s": result.startup_s})
    else:
        rows = [(k, f"{v:.3e} s") for k, v in values.items()]
        rows.append(("startup_s (not written)", f"{result.startup_s:.3e} s"))
        _out(_pairs(rows))
    if args.write:
        write_calibration(args.config, result)
        _out(f"wrote the {len(values)} values to {args.config}")
    return EXIT_OK


def register_bench(sub: Subparsers) -> None:
    bench = _command(
        sub,
        "bench",
        summary="measure the simulator's cost model on this machine (calibrate)",
        description=(
            "Benchmarks against peers live in benchmarks/ (make bench). This command measures "
            "what the SimPy harness needs from the real code: recovery's fixed cost, its "
            "cost per waiting and per finished snapshot job and per WAL record, and the "
            "mean latency of one acknowledged append (policy always) here."
        ),
        examples=[
            "python -m phase1 bench calibrate --config configs/default.yaml",
            "python -m phase1 bench calibrate --config configs/default.yaml --write",
        ],
    )
    bench_sub = bench.add_subparsers(dest="bench_command", metavar="<bench command>")
    bench_sub.required = True
    p = _command(
        bench_sub,
        "calibrate",
        summary="measure recovery cost constants and fsync latency; --write stores them",
        description=(
            "Builds snapshots (pending jobs; completed ids) and a WAL in a temporary "
            "folder, times the real recover() on each (median of 3), times 500 appends "
            "through a WalWriter with policy always and the config's preallocate_bytes, "
            "and prints recovery_cost_fixed_s, recovery_cost_per_snapshot_job_s, "
            "recovery_cost_per_finished_job_s, recovery_cost_per_wal_record_s and "
            "fsync_latency_s_mean, plus the interpreter start-up a real restart adds "
            "(startup_s, shown only). With --write the five values replace those keys in "
            "the --config file (other lines and comments kept)."
        ),
        examples=["python -m phase1 bench calibrate --config configs/default.yaml --write"],
        handler=cmd_bench_calibrate,
    )
    _add_config(p)
    p.add_argument("--write", action="store_true", help="store the values in the --config file")
    p.add_argument("--quick", action="store_true", help="small workloads (a rough figure)")
    p.add_argument(
        "--dir", default=None, help="folder for the temporary files (default: the system's)"
    )
    _add_format(p)


# == main ==============================================================================
REGISTRARS: tuple[Callable[[Subparsers], None], ...] = (
    register_run,
    register_status,
    register_wal,
    register_snapshot,
    register_sim,
    register_explore,
    register_bench,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phase1",
        description=textwrap.fill(
            "phase1: a durable job queue (WAL + snapshots + recovery) to learn, test and "
            "measure crash safety. Commands read the files named by a YAML config "
            f"(--config, default {DEFAULT_CONFIG}); errors print one line and exit 2. "
            "`phase1 <command> --help` describes each command.",
            width=88,
        ),
        epilog="example:\n  python -m phase1 status --config configs/default.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True
    for register in REGISTRARS:
        register(sub)
    return parser


def _error(message: str) -> int:
    sys.stderr.write(f"phase1: error: {' '.join(message.split())}\n")
    return EXIT_ERROR


def _os_error(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else None
    what = exc.strerror or str(exc)
    return f"{where}: {what}" if where else what


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 2 error or usage, 130 Ctrl-C)."""
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, or a usage error argparse already printed
            return exc.code if isinstance(exc.code, int) else EXIT_ERROR
        handler: Handler = args.handler
        return handler(args)
    except KeyboardInterrupt:
        sys.stderr.write("phase1: interrupted\n")
        return EXIT_INTERRUPTED
    except QueueKitError as exc:
        return _error(str(exc))
    except BrokenPipeError:
        # `phase1 wal dump | head`: the reader left; stop quietly (Python docs' recipe)
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_OK
    except OSError as exc:
        return _error(_os_error(exc))
