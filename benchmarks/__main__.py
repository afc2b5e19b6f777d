"""``python -m benchmarks [--quick | --smoke] [--only NAME] [--out PATH]``.

Prints one table (benchmark, figure, unit, baseline, ratio, target, met) headed and footed by
the command that produced it, and writes the same rows to ``--out`` as JSON.  ``met`` is
information only: the exit status is 0 unless a benchmark crashed (then 1, with the error in
its row).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from benchmarks import disk, durable, e2e, sim
from benchmarks._harness import REPO, Context, Result, machine_notes

GROUPS = (disk, durable, sim, e2e)
Bench = tuple[str, Callable[[Context], list[Result]]]


def all_benchmarks() -> list[Bench]:
    return [b for g in GROUPS for b in g.BENCHMARKS]


def row_names() -> list[str]:
    """Every row a run of all benchmarks prints."""
    return [
        "disk.fsync",
        "disk.fsync_p50",
        "disk.fsync_p99",
        "disk.grouped_fsync",
        *durable.ROW_NAMES,
        *sim.ROW_NAMES,
        *e2e.ROW_NAMES,
    ]


def select(name: str | None) -> list[Bench]:
    benches = all_benchmarks()
    if not name:
        return benches
    if name in ("peer", "peers"):
        name = "durable.e2e_submit_dispatch_ack"
    chosen = [
        b
        for b in benches
        if b[0] == name or b[0].split(".")[0] == name or b[0].endswith("." + name)
    ]
    if not chosen:
        known = ", ".join(["disk", "durable", "sim", "e2e", "peers"] + [b[0] for b in benches])
        raise SystemExit(f"--only {name!r}: no such benchmark (known: {known})")
    return chosen


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if x != x:  # nan
        return "nan"
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def render(results: list[Result], command: str, notes: list[str]) -> str:
    header = ["benchmark", "figure", "unit", "baseline", "ratio", "target", "met"]
    rows = []
    for r in results:
        base = (
            f"{_num(r.baseline)} ({r.baseline_label})"
            if r.baseline is not None
            else (f"- ({r.baseline_label})" if r.baseline_label else "-")
        )
        met = "-" if r.met is None else ("yes" if r.met else "NO")
        fig = "ERROR" if r.error else ("skipped" if r.figure is None else _num(r.figure))
        rows.append(
            [
                r.name,
                fig,
                r.unit,
                base,
                "-" if r.ratio is None else f"{r.ratio:.2f}x",
                r.target or "-",
                met,
            ]
        )
    widths = [
        max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
        for i, h in enumerate(header)
    ]
    right = {1, 4}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [f"command: {command}", *notes, "", line(header), line(["-" * w for w in widths])]
    out += [line(row) for row in rows]
    out.append("")
    out.append("notes (ratio > 1 = better than the baseline; 'met' is information, not a verdict):")
    for r in results:
        if r.error:
            out.append(f"  {r.name}: ERROR {r.error}")
        elif r.notes:
            out.append(f"  {r.name}: {r.notes}")
    out.append(f"command: {command}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_true", help="every workload ~10x smaller (about a minute)"
    )
    size.add_argument(
        "--smoke", action="store_true", help="tiny sizes: checks every benchmark runs (< 20 s)"
    )
    parser.add_argument(
        "--only",
        metavar="NAME",
        help="a group (disk, durable, sim, e2e, peers) or a benchmark name",
    )
    parser.add_argument(
        "--out",
        default="benchmarks/results/latest.json",
        help="JSON results (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else ("quick" if args.quick else "full")
    raw = sys.argv[1:] if argv is None else argv
    command = " ".join([".venv/bin/python -m benchmarks", *map(shlex.quote, raw)]).strip()

    out_path = Path(args.out)
    if not out_path.is_absolute():
        out_path = Path.cwd() / out_path
    ctx = Context(mode, command, out_path.parent)
    notes = machine_notes()
    results: list[Result] = []
    crashed = False
    started = time.perf_counter()
    for name, bench in select(args.only):
        t = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            results.extend(bench(ctx))
        except Exception as exc:  # one crash must not hide the other figures
            crashed = True
            traceback.print_exc()
            results.append(
                ctx.result(name=name, figure=None, unit="", error=f"{type(exc).__name__}: {exc}")
            )
        print(f"  {name}: {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    notes.append(f"mode: {mode}; wall time {time.perf_counter() - started:.1f} s")
    print(render(results, command, notes))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": command,
        "mode": mode,
        "cwd": os.getcwd(),
        "repo": str(REPO),
        "notes": notes,
        "results": [r.to_json() for r in results],
    }
    out_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out_path}", file=sys.stderr)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
