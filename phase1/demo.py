"""``make demo``: the kit's main job, on real files under ``data/run/demo/``.

1. A real ``phase1 run`` (a subprocess: ``python -m phase1 run --config C --jobs FILE
   --until-idle``) works through the seed's three sample jobs plus a few hundred generated
   ones (noop, sleep, fail-once). The demo watches its WAL and kills it with SIGKILL once
   about a third of the jobs are acknowledged, mid-flight. It then reruns the same command
   (known ids are skipped), shows what recovery replayed and re-queued, and checks the
   seed's bar: completed + dead == total, every ACK on disk before the kill is still
   completed, and only the two jobs the sandbox refuses are dead.
2. The ``crash-storm`` and ``power-loss`` scenarios of the SimPy harness (the real core,
   WAL, snapshots and recovery on a simulated disk, seeded): their ledgers, with no
   acknowledged job lost; CSVs and PNG plots per scenario.
3. A small sweep on a process pool: acknowledged jobs lost vs commit policy under power
   loss (zero for always/batch, measured for never); CSV and PNG.

Exit code 0 only if every check passed. ``--quick`` makes everything smaller (the test).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from phase1.config import Config, load_config
from phase1.disk import OsDisk
from phase1.errors import QueueKitError
from phase1.jobs import JobState, generate_test_jobs, job_to_dict
from phase1.recovery import recover
from phase1.snapshot import load_snapshot
from phase1.wal import read_wal

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "data" / "run" / "demo"
JOBS_SEED = 42
SIM_SEED = 1
GENERATED_JOBS = 400
GENERATED_JOBS_QUICK = 300
SLEEP_EVERY = 4  # every 4th generated job sleeps ...
SLEEP_S = 0.1  # ... this long (so the run lasts long enough to be killed mid-way)
FAIL_EVERY = 10  # every 10th fails its first attempt, then succeeds on the retry
KILL_AT_FRACTION = 1 / 3  # SIGKILL once this share of the jobs is acknowledged on disk
KILL_LATEST_FRACTION = 2 / 3  # ... and a snapshot exists, or at this share regardless
POLL_S = 0.01
RUN_TIMEOUT_S = 60.0  # a run that takes longer than this is a failure, not a hang
SEED_DEAD = {"task-002", "task-003"}  # write_file to /tmp and http_get to api.github.com
SWEEP_POLICIES = ("always", "batch", "never")
SWEEP_SEEDS = (0, 1)


# == output ===========================================================================
def shown(path: Path | str) -> str:
    """``path`` relative to the repository when inside it, else as given."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def say(text: str = "") -> None:
    print(text, flush=True)


@dataclass
class Checks:
    results: list[tuple[str, bool]] = field(default_factory=list)

    def check(self, what: str, ok: bool) -> bool:
        self.results.append((what, ok))
        say(f"  check: {what}: {'PASS' if ok else 'FAIL'}")
        return ok

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(ok for _, ok in self.results)


# == part 1: a real `phase1 run`, SIGKILLed and restarted ================================
def demo_config(folder: Path) -> Config:
    """configs/default.yaml with short timers and every file inside ``folder``."""
    base = load_config(ROOT / "configs" / "default.yaml")
    return base.replace(
        worker_count=4,
        task_timeout_s=1.0,
        snapshot_interval_s=0.5,
        timeout_check_interval_s=0.25,
        wal_path=shown(folder / "queue" / "wal.log"),
        snapshot_path=shown(folder / "queue" / "snapshot.json"),
        workspace=shown(folder / "workspace"),
    )


def demo_jobs(generated: int) -> list[dict[str, Any]]:
    """The seed's three samples, then ``generated`` jobs (same ids and order every run)."""
    jobs: list[dict[str, Any]] = json.loads((ROOT / "data" / "test-jobs.json").read_bytes())
    for job in generate_test_jobs(generated, random.Random(JOBS_SEED)):
        d = job_to_dict(job)
        i = d["payload"]["index"]
        if i % SLEEP_EVERY == 1:
            d["payload"] = {"kind": "sleep", "seconds": SLEEP_S}
        elif i % FAIL_EVERY == 3:
            d["payload"] = {"kind": "fail", "times": 1}
        jobs.append(d)
    return jobs


@dataclass
class OnDisk:
    """What the queue's files say, read without changing them."""

    acked: set[str]
    wal_records: int
    wal_acks: int
    snapshot_seq: int | None
    snapshot_completed: int
    torn: bool


def read_on_disk(config: Config) -> OnDisk:
    """ACK records in the WAL plus jobs completed in the newest snapshot (the WAL before
    that snapshot may already be dropped). Raises on a read that races a rotation."""
    disk = OsDisk()
    try:
        snap = load_snapshot(disk, config.snapshot_path, keep=config.snapshots_kept)
        read = read_wal(disk, config.wal_path)
    finally:
        disk.close()
    wal_acks = {r.job_id for r in read.records if r.type == "ACK"}
    completed = set(snap.state.completed) if snap.state is not None else set()
    return OnDisk(
        acked=wal_acks | completed,
        wal_records=len(read.records),
        wal_acks=len(wal_acks),
        snapshot_seq=snap.state.last_seq if snap.state is not None else None,
        snapshot_completed=len(completed),
        torn=read.torn is not None,
    )


def run_command(config_file: Path, jobs_file: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "phase1",
        "run",
        "--config",
        shown(config_file),
        "--jobs",
        shown(jobs_file),
        "--until-idle",
    ]


def part_run(folder: Path, generated: int, checks: Checks) -> None:
    say("[1/3] a real `phase1 run`, killed with SIGKILL part way, then restarted")
    folder.mkdir(parents=True, exist_ok=True)
    config = demo_config(folder)
    config_file = folder / "demo.yaml"
    config_file.write_text(yaml.safe_dump(config.to_mapping(), sort_keys=False))
    jobs = demo_jobs(generated)
    jobs_file = folder / "jobs.json"
    jobs_file.write_text(json.dumps(jobs, indent=1) + "\n")
    total = len(jobs)
    kinds: dict[str, int] = {}
    for d in jobs[3:]:
        kind = d["payload"].get("kind", "noop")
        kinds[kind] = kinds.get(kind, 0) + 1
    mix = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    say(
        f"  wrote {shown(config_file)} (from configs/default.yaml: worker_count 4, "
        f"task_timeout 1s, snapshot_interval 0.5s, queue files in {shown(folder / 'queue')}/)"
    )
    say(
        f"  wrote {shown(jobs_file)}: {total} jobs = the seed's 3 (data/test-jobs.json) + "
        f"{generated} generated with seed {JOBS_SEED} ({mix})"
    )
    cmd = run_command(config_file, jobs_file)
    shown_cmd = "python " + " ".join(cmd[1:])
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    kill_at = max(1, int(total * KILL_AT_FRACTION))
    kill_latest = max(kill_at, int(total * KILL_LATEST_FRACTION))

    # -- first run: watch the WAL, SIGKILL at ~1/3 acknowledged --------------------------
    say(f"  run 1: {shown_cmd}")
    say(
        f"    watching its WAL and snapshot: SIGKILL once {kill_at} jobs are acknowledged on "
        f"disk and a snapshot exists (or at {kill_latest} regardless)"
    )
    err1 = (logs / "run1.stderr").open("wb")
    out1 = (logs / "run1.stdout").open("wb")
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out1, stderr=err1)
    seen: set[str] = set()
    snapshot_seen = False
    first_ack_s: float | None = None
    killed = False
    try:
        while proc.poll() is None:
            if time.perf_counter() - started > RUN_TIMEOUT_S:
                break
            try:
                now = read_on_disk(config)
                seen |= now.acked
                snapshot_seen = snapshot_seen or now.snapshot_seq is not None
            except (QueueKitError, OSError):
                pass  # a read racing a rotation or a half-written line: next poll
            if seen and first_ack_s is None:
                first_ack_s = time.perf_counter() - started
                say(f"    first ACK on disk after {first_ack_s:.2f} s (pid {proc.pid})")
            if (len(seen) >= kill_at and snapshot_seen) or len(seen) >= kill_latest:
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(POLL_S)
    finally:
        if proc.poll() is None and not killed:
            proc.kill()
        proc.wait()
        err1.close()
        out1.close()
    elapsed = time.perf_counter() - started
    if killed:
        say(
            f"    WAL shows {len(seen)}/{total} acknowledged after {elapsed:.2f} s: "
            f"SIGKILL -> exit code {proc.returncode}"
        )
    else:
        say(f"    the run ended before the kill point (exit code {proc.returncode})")
    checks.check(
        f"run 1 killed by SIGKILL part way ({len(seen)} of {total} acknowledged)",
        killed and proc.returncode == -signal.SIGKILL and len(seen) < total,
    )

    try:
        disk_state = read_on_disk(config)
    except QueueKitError as exc:  # recovery would refuse too; run 2 shows the error
        say(f"    reading the files after the kill failed: {exc}")
        disk_state = OnDisk(set(), 0, 0, None, 0, False)
    before = seen | disk_state.acked
    snap = (
        f"snapshot seq {disk_state.snapshot_seq} with {disk_state.snapshot_completed} completed"
        if disk_state.snapshot_seq is not None
        else "no snapshot yet"
    )
    say(
        f"    on disk after the kill: {snap}; WAL {disk_state.wal_records} records, "
        f"{disk_state.wal_acks} ACKs{', a torn tail' if disk_state.torn else ''}: "
        f"{len(before)} jobs acknowledged before the kill"
    )

    # -- second run: same command, recovers and finishes ---------------------------------
    say(f"  run 2 (the same command): {shown_cmd}")
    started = time.perf_counter()
    try:
        done = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        checks.check(f"run 2 finished within {RUN_TIMEOUT_S:.0f} s", False)
        return
    (logs / "run2.stderr").write_text(done.stderr)
    (logs / "run2.stdout").write_text(done.stdout)
    say(f"    exit code {done.returncode} after {time.perf_counter() - started:.2f} s; its stderr:")
    for line in done.stderr.splitlines():
        say(f"      {line}")
    last = done.stdout.strip().splitlines()[-1:] or ["{}"]
    say(f"    final status (its stdout): {last[0]}")
    try:
        status: dict[str, Any] = json.loads(last[0])
    except json.JSONDecodeError:
        status = {}
    recovered = [ln for ln in done.stderr.splitlines() if ln.startswith("phase1 run: recovered")]
    checks.check(
        "run 2 exited 0 and printed its recovery summary", done.returncode == 0 and bool(recovered)
    )

    completed = int(status.get("completed", -1))
    dead = int(status.get("dead", -1))
    checks.check(f"completed {completed} + dead {dead} == {total} jobs", completed + dead == total)
    disk = OsDisk()
    try:
        core, _ = recover(disk, config, truncate=False)  # read-only: changes no file
    finally:
        disk.close()
    missing = sorted(j for j in before if core.state_of(j) is not JobState.COMPLETED)
    checks.check(
        f"{len(before) - len(missing)} of {len(before)} jobs acknowledged on disk before the "
        f"kill are still completed" + (f" (missing: {', '.join(missing[:5])})" if missing else ""),
        not missing,
    )
    dead_ids = set(core.dead_reasons())
    checks.check(
        f"dead jobs are the seed's two the sandbox refuses ({', '.join(sorted(dead_ids)) or '-'})",
        dead_ids == SEED_DEAD,
    )
    summary = {
        "total": total,
        "acknowledged_before_kill": len(before),
        "run1_exit": proc.returncode,
        "run2_exit": done.returncode,
        "recovery": recovered[0] if recovered else None,
        "final_status": status,
        "missing_after_recovery": missing,
        "dead": core.dead_reasons(),
    }
    summary_file = folder / "summary.json"
    summary_file.write_text(json.dumps(summary, indent=2) + "\n")
    say(f"    wrote {shown(summary_file)}; both runs' stdout/stderr in {shown(logs)}/")
    say(f"    look inside: .venv/bin/python -m phase1 status --config {shown(config_file)}")
    say(f"                 .venv/bin/python -m phase1 wal stats --config {shown(config_file)}")


# == part 2: SimPy scenarios ===========================================================
LEDGER_KEYS = ("acknowledged", "ok", "lost", "duplicated", "unexpected", "recovered", "dead")


def ledger_line(ledger: dict[str, Any]) -> str:
    return " ".join(f"{k}={ledger[k]}" for k in LEDGER_KEYS)


def part_scenarios(folder: Path, quick: bool, checks: Checks) -> None:
    from phase1.sim.scenarios import SCENARIOS, run_scenario, save_run

    until_s = 1.8 if quick else None
    say(
        "[2/3] SimPy scenarios: the real core, WAL, snapshots and recovery on a simulated "
        f"disk in virtual time (seed {SIM_SEED}{', cut at 1.8 virtual s' if quick else ''})"
    )
    for name in ("crash-storm", "power-loss"):
        say(f"  {name}: {SCENARIOS[name][0]}")
        started = time.perf_counter()
        result = run_scenario(name, SIM_SEED, until_s=until_s)
        led = result.ledger
        say(
            f"    ledger ({led['policy']}, {led['crashes']} crashes, {led['power_losses']} "
            f"power losses): {ledger_line(led)}"
        )
        say(f"    summary: {result.summary()}")
        out = folder / name
        files = save_run(result, str(out))
        kinds = sorted({Path(f).suffix for f in files})
        say(
            f"    wrote {len(files)} files ({', '.join(kinds)}) to {shown(out)}/ "
            f"in {time.perf_counter() - started:.1f} s"
        )
        checks.check(
            f"{name}: lost {led['lost']}, unexpected {led['unexpected']} under {led['policy']}",
            led["lost"] == 0 and led["unexpected"] == 0 and led["crashes"] > 0,
        )


# == part 3: a sweep ===================================================================
def part_sweep(folder: Path, quick: bool, checks: Checks) -> None:
    from phase1.lessons import plots
    from phase1.sim.experiments import deterministic, loss_point, sweep

    jobs = 1_000 if quick else 3_000
    points = len(SWEEP_POLICIES) * len(SWEEP_SEEDS)
    say(
        f"[3/3] sweep: acknowledged jobs lost vs commit policy under 3 power losses "
        f"({len(SWEEP_POLICIES)} policies x {len(SWEEP_SEEDS)} seeds, {jobs} jobs each, "
        "process pool of 2)"
    )
    started = time.perf_counter()
    df = sweep(
        loss_point,
        {"commit_policy": list(SWEEP_POLICIES), "jobs": [jobs]},
        SWEEP_SEEDS,
        progress=False,
    )
    say(f"    {points} runs in {time.perf_counter() - started:.1f} s")
    cols = ["commit_policy", "seed", "acknowledged", "lost", "duplicated", "loss_window_s_max"]
    for line in df[cols].to_string(index=False).splitlines():
        say(f"    {line}")
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / "loss_vs_policy.csv"
    deterministic(df).to_csv(csv, index=False)
    png = folder / "loss_vs_policy.png"
    fig = plots.plot_loss(df)
    fig.savefig(png, dpi=100)
    plots.close(fig)
    say(f"    wrote {shown(csv)} and {shown(png)}")
    lost = df.groupby("commit_policy")["lost"].sum()
    checks.check(
        f"always/batch lost {int(lost['always'])}/{int(lost['batch'])} "
        f"(never: {int(lost['never'])}, what the page cache held, measured not promised)",
        int(lost["always"]) == 0 and int(lost["batch"]) == 0,
    )


# == main ==============================================================================
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m phase1.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out",
        default=str(DEFAULT_OUT),
        metavar="DIR",
        help="output folder, emptied first (default: data/run/demo)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer jobs, shorter simulations (for the test)"
    )
    args = parser.parse_args(argv)
    folder = Path(args.out).resolve()
    started = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    say(
        f"phase1 demo{' (quick)' if args.quick else ''}: everything it writes goes to "
        f"{shown(folder)}/"
    )
    checks = Checks()
    generated = GENERATED_JOBS_QUICK if args.quick else GENERATED_JOBS
    part_run(folder / "run", generated, checks)
    part_scenarios(folder / "sim", args.quick, checks)
    part_sweep(folder / "sweep", args.quick, checks)

    failed = [what for what, ok in checks.results if not ok]
    say("")
    say(f"plots and CSVs: {shown(folder / 'sim')}/<scenario>/*.png|csv, {shown(folder / 'sweep')}/")
    say(
        f"phase1 demo: {'PASS' if checks.ok else 'FAIL'} "
        f"({len(checks.results) - len(failed)}/{len(checks.results)} checks) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    for what in failed:
        say(f"  FAILED: {what}")
    return 0 if checks.ok else 1


if __name__ == "__main__":
    sys.exit(main())
