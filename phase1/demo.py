"""``make demo``: enqueue jobs durably, kill the process with SIGKILL, recover, finish.

What it shows, on real files under ``data/run/demo/``:

1. a child process submits the seed's three jobs plus generated ones through the durable
   path (every ENQUEUE fsynced before it is acknowledged), then works through them
   (DISPATCH, ACK), reporting each acknowledged completion on a pipe;
2. the parent kills it with SIGKILL part way, mid-flight;
3. the parent recovers from the snapshot + WAL, shows what recovery replayed and what
   it re-queued, finishes the remaining jobs and checks the seed's bar: every job is
   completed or dead, and nothing acknowledged before the crash is missing.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from phase1.config import Config, load_config
from phase1.core import SendToWorker
from phase1.jobs import Job, JobState, generate_test_jobs, parse_jobs
from phase1.runtime.durable import DurableQueue

ROOT = Path(__file__).resolve().parent.parent
SEED = 42
GENERATED_JOBS = 300
KILL_AFTER_ACKS = 120


def demo_config(folder: Path) -> Config:
    base = load_config(ROOT / "configs" / "default.yaml")
    return base.replace(
        wal_path=str(folder / "wal.log"),
        snapshot_path=str(folder / "snapshot.json"),
        workspace=str(folder / "workspace"),
    )


def all_jobs() -> list[Job]:
    seed_jobs = parse_jobs(
        (ROOT / "data" / "test-jobs.json").read_bytes(), source="data/test-jobs.json"
    )
    return seed_jobs + generate_test_jobs(GENERATED_JOBS, random.Random(SEED))


def child(folder: Path) -> None:
    """Submit everything, then dispatch and ack one job at a time, forever."""
    q = DurableQueue(demo_config(folder))
    jobs = [j for j in all_jobs() if not q.core.knows(j.id)]
    for start in range(0, len(jobs), 50):
        q.submit(jobs[start : start + 50])
    print("submitted", len(jobs), flush=True)
    done = 0
    while True:
        step = q.dispatch(worker_id=1)
        if not step.effects:
            time.sleep(0.01)
            continue
        send = step.effects[0]
        assert isinstance(send, SendToWorker)
        q.ack(send.job.id, send.attempt)  # returns once the ACK is durable
        done += 1
        print("acked", send.job.id, flush=True)
        if done % 100 == 0:
            q.snapshot()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=str(ROOT / "data" / "run" / "demo"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    folder = Path(args.out)
    if args.child:
        child(folder)
        return 0

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    config_file = folder / "demo.yaml"
    config_file.write_text(yaml.safe_dump(demo_config(folder).to_mapping(), sort_keys=False))
    total = len(all_jobs())
    print(
        f"phase1 demo: {total} jobs (the seed's 3 + {GENERATED_JOBS} generated), files in {folder}"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "phase1.demo", "--child", "--out", str(folder)],
        stdout=subprocess.PIPE,
        text=True,
    )
    acked: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("submitted"):
            print(f"  child: {line.strip()} (each batch fsynced before it returned)")
        elif line.startswith("acked"):
            acked.append(line.split()[1])
            if len(acked) >= KILL_AFTER_ACKS:
                os.kill(proc.pid, signal.SIGKILL)
                break
    proc.wait()
    print(f"  SIGKILL after {len(acked)} acknowledged completions (exit code {proc.returncode})")

    started = time.perf_counter()
    q = DurableQueue(demo_config(folder))
    elapsed = time.perf_counter() - started
    r = q.recovery_report
    print(f"  recovery took {elapsed * 1000:.1f} ms: {r.summary()}")
    missing = [job_id for job_id in acked if q.core.state_of(job_id) is not JobState.COMPLETED]
    print(f"  acknowledged before the crash and missing after recovery: {len(missing)}")
    while not q.core.is_idle():
        step = q.dispatch(worker_id=2, limit=50)
        for send in step.effects:
            if isinstance(send, SendToWorker):
                q.ack(send.job.id, send.attempt)
    counts = q.counts()
    q.snapshot()
    q.close()
    print(
        f"  finished: completed {counts['completed']} + dead {counts['dead']} = "
        f"{counts['completed'] + counts['dead']} of {total}"
    )
    ok = not missing and counts["completed"] + counts["dead"] == total
    print(
        "  the seed's bar (completed + dead == total, nothing acknowledged lost):",
        "PASS" if ok else "FAIL",
    )
    shown = os.path.relpath(folder)
    print(f"  look inside: .venv/bin/python -m phase1 status --config {shown}/demo.yaml")
    print(
        f"               jq -r .type {shown}/wal.log | sort | uniq -c;  jq '.completed | length' {shown}/snapshot.json"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
