"""``python -m phase1.demo --quick``: the kit's main job end to end, in a subprocess."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUICK_BUDGET_S = 90


def test_quick_demo(tmp_path: Path) -> None:
    """One subprocess for every check (xdist would run a shared fixture once per worker)."""
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "phase1.demo", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=QUICK_BUDGET_S,
        check=False,
    )
    demo = (done, out)
    passes_every_check(demo)
    the_real_run_is_sigkilled_recovered_and_checked(demo)
    both_scenario_ledgers_lose_nothing_under_the_default_policy(demo)
    plots_and_csvs_are_written(demo)


Demo = tuple[subprocess.CompletedProcess[str], Path]


def passes_every_check(demo: Demo) -> None:
    done, _ = demo
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout
    assert "FAIL" not in text
    assert re.search(r"phase1 demo: PASS \((\d+)/\1 checks\)", text), text


def the_real_run_is_sigkilled_recovered_and_checked(demo: Demo) -> None:
    done, out = demo
    text = done.stdout
    assert "SIGKILL -> exit code -9" in text
    # the second run's recovery summary, as `phase1 run` printed it on stderr
    assert re.search(r"phase1 run: recovered in [\d.]+ ms: recovered from .* WAL records", text)
    assert "(303 already known)" in text
    assert re.search(r"check: completed (\d+) \+ dead 2 == 303 jobs: PASS", text)
    assert re.search(r"check: (\d+) of \1 jobs acknowledged on disk before the kill .*: PASS", text)
    summary = json.loads((out / "run" / "summary.json").read_text())
    assert summary["run1_exit"] == -9 and summary["run2_exit"] == 0
    assert 0 < summary["acknowledged_before_kill"] < summary["total"] == 303
    assert summary["missing_after_recovery"] == []
    assert set(summary["dead"]) == {"task-002", "task-003"}
    final = summary["final_status"]
    assert final["completed"] + final["dead"] == 303


def both_scenario_ledgers_lose_nothing_under_the_default_policy(demo: Demo) -> None:
    done, out = demo
    for name in ("crash-storm", "power-loss"):
        line = re.search(rf"  {name}: .*\n    ledger \(batch, .*\): (.*)\n", done.stdout)
        assert line, done.stdout
        fields = dict(kv.split("=") for kv in line.group(1).split())
        assert {"ok", "lost", "duplicated", "unexpected", "recovered"} <= set(fields)
        assert fields["lost"] == "0" and fields["unexpected"] == "0"
        ledger = json.loads((out / "sim" / name / "ledger.json").read_text())
        assert ledger["policy"] == "batch" and ledger["lost"] == 0 and ledger["crashes"] > 0


def plots_and_csvs_are_written(demo: Demo) -> None:
    _, out = demo
    for name in ("crash-storm", "power-loss"):
        folder = out / "sim" / name
        for f in ("throughput.png", "depth.png", "latency.png", "events.csv", "throughput.csv"):
            assert (folder / f).stat().st_size > 0, folder / f
    assert (out / "sweep" / "loss_vs_policy.png").stat().st_size > 0
    csv = (out / "sweep" / "loss_vs_policy.csv").read_text().splitlines()
    assert csv[0].startswith("commit_policy,") and len(csv) == 1 + 3 * 2
    for line in csv[1:]:
        policy, *_ = line.split(",")
        assert policy in {"always", "batch", "never"}


def test_help_works() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "phase1.demo", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0
    assert "--quick" in done.stdout and "SIGKILL" in done.stdout
