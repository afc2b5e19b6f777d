"""``python -m phase1``: each command on real files built by the real durable modules.

Everything but one ``--help`` smoke test calls ``cli.main(argv)`` in-process and reads the
output with ``capsys``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from phase1 import cli
from phase1.config import load_config
from phase1.jobs import Job
from phase1.runtime.durable import DurableQueue

REPO = Path(__file__).resolve().parent.parent


# -- fixtures ---------------------------------------------------------------------------
def write_config(tmp_path: Path, **extra: object) -> Path:
    data = tmp_path / "data"
    lines = [
        f"wal_path: {data / 'wal.log'}",
        f"snapshot_path: {data / 'snapshot.json'}",
        f"workspace: {data / 'workspace'}",
        "max_retry: 1",
        "commit_policy: always",
    ]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    path = tmp_path / "phase1.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def queue(tmp_path: Path) -> Path:
    """A stopped queue: snapshot at seq 12, then 3 WAL lines (2 ENQUEUE, 1 DISPATCH).

    Before the snapshot: a0..a4 submitted, a0 and a1 acked, a2 failed (max_retry 1: dead).
    After it: b0 and b1 submitted, a3 dispatched and left in flight by the "crash".
    """
    config_path = write_config(tmp_path)
    q = DurableQueue(load_config(config_path))
    q.submit([Job(f"a{i}", payload={"n": i}) for i in range(5)])
    sends = q.dispatch(worker_id=1, limit=3).effects
    q.ack(sends[0].job.id, sends[0].attempt)
    q.ack(sends[1].job.id, sends[1].attempt)
    q.fail(sends[2].job.id, sends[2].attempt, reason="boom")
    q.snapshot()
    q.submit([Job("b0"), Job("b1")])
    q.dispatch(worker_id=2, limit=1)
    q.close()
    return config_path


def wal_file(config_path: Path) -> Path:
    return Path(load_config(config_path).wal_path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("phase1: error: ")
    return lines[0]


def damage_line(path: Path, index: int) -> bytes:
    """Change one byte in line ``index`` (0-based) so its checksum fails; returns the file."""
    lines = path.read_bytes().split(b"\n")
    lines[index] = lines[index].replace(b'"seq":', b'"seq" :', 1)
    data = b"\n".join(lines)
    path.write_bytes(data)
    return data


# -- status -----------------------------------------------------------------------------
def test_status_prints_counts_snapshot_wal_and_dead_jobs(
    queue: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = wal_file(queue).read_bytes()
    code, out, err = run(capsys, "status", "--config", str(queue))
    assert code == 0, err
    assert "snapshot.json (seq 12, 5 jobs)" in out
    assert "records replayed  3 of 3 read" in out
    assert "last_seq          15" in out
    assert "torn tail         none" in out
    counts = {
        line.split()[0]: int(line.split()[1])
        for line in out.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    }
    # a3 was in flight at the crash: with max_retry 1 recovery dead-letters it
    assert counts["pending"] == 3  # a4, b0, b1
    assert counts["completed"] == 2
    assert counts["dead"] == 2
    assert counts["in_flight"] == 0
    assert "recovery re-queues 0 and dead-letters 1" in out
    assert "a2      boom; max_retry 1 reached" in out
    assert "a3      process stopped during attempt 1" in out
    assert wal_file(queue).read_bytes() == before  # read-only


def test_status_json_parses(queue: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "status", "--config", str(queue), "--format", "json")
    assert code == 0
    doc = orjson.loads(out)
    assert doc["last_seq"] == 15
    assert doc["counts"]["pending"] == 3
    assert doc["snapshot"]["last_seq"] == 12
    assert doc["wal"]["records_replayed"] == 3
    assert doc["wal"]["torn_tail"] is None
    assert {d["job_id"] for d in doc["dead"]} == {"a2", "a3"}


def test_status_lists_first_20_dead_jobs_then_how_many_more(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = write_config(tmp_path)
    with DurableQueue(load_config(config_path)) as q:
        q.submit([Job(f"d{i:02d}") for i in range(25)])
        for send in q.dispatch(limit=25).effects:
            q.fail(send.job.id, send.attempt, reason="bad input")
    code, out, _ = run(capsys, "status", "--config", str(config_path))
    assert code == 0
    assert "dead jobs (25):" in out
    assert "d19" in out and "d20" not in out
    assert "... and 5 more" in out


def test_status_reports_a_torn_tail_without_truncating_it(
    queue: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wal = wal_file(queue)
    with open(wal, "ab") as f:
        f.write(b'{"seq":16,"type":"AC')
    before = wal.read_bytes()
    code, out, _ = run(capsys, "status", "--config", str(queue))
    assert code == 0
    assert "torn tail" in out and "20 bytes" in out and "recovery truncates it" in out
    assert wal.read_bytes() == before


def test_status_on_corruption_is_one_error_line(
    queue: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damage_line(wal_file(queue), 1)
    code, out, err = run(capsys, "status", "--config", str(queue))
    assert code == 2
    line = assert_one_error_line(err)
    assert "wal.log: line 2" in line


# -- wal dump ---------------------------------------------------------------------------
def test_wal_dump_table_has_aligned_columns(
    queue: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "wal", "dump", "--config", str(queue))
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["seq", "type", "job_id", "timestamp", "attempt", "worker", "reason"]
    assert [r.split()[:3] for r in rows] == [
        ["13", "ENQUEUE", "b0"],
        ["14", "ENQUEUE", "b1"],
        ["15", "DISPATCH", "a3"],
    ]
    assert rows[2].split()[4:6] == ["1", "2"]  # attempt 1 on worker 2
    assert len({len(r) for r in rows}) == 1  # fixed width: every row as long


def test_wal_dump_filters_by_type_job_seq_and_limit(
    queue: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["wal", "dump", "--config", str(queue), "--format", "json"]

    def seqs(*extra: str) -> list[int]:
        code, out, _ = run(capsys, *base, *extra)
        assert code == 0
        return [orjson.loads(line)["seq"] for line in out.splitlines()]

    assert seqs() == [13, 14, 15]
    assert seqs("--type", "dispatch") == [15]
    assert seqs("--job", "b1") == [14]
    assert seqs("--since-seq", "14") == [14, 15]
    assert seqs("--limit", "1") == [13]
    assert seqs("--type", "ACK") == []


def test_wal_dump_json_prints_exactly_the_stored_lines(
    queue: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "wal", "dump", "--config", str(queue), "--format", "json")
    assert code == 0
    assert out.encode() == wal_file(queue).read_bytes()
    first = orjson.loads(out.splitlines()[0])
    assert first["type"] == "ENQUEUE" and first["job"]["id"] == "b0"


def test_wal_dump_warns_on_stderr_about_a_torn_tail(
    queue: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with open(wal_file(queue), "ab") as f:
        f.write(b'{"seq":16')
    code, out, err = run(capsys, "wal", "dump", "--config", str(queue), "--format", "json")
    assert code == 0
    assert len(out.splitlines()) == 3
    assert "torn tail not shown" in err


# -- wal stats --------------------------------------------------------------------------
def test_wal_stats_table_and_json(queue: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "wal", "stats", "--config", str(queue))
    assert code == 0
    assert "records    3" in out
    assert "seq        13..15" in out
    assert "torn tail  none" in out
    assert any(line.split() == ["ENQUEUE", "2"] for line in out.splitlines())
    code, out, _ = run(capsys, "wal", "stats", "--config", str(queue), "--format", "json")
    doc = orjson.loads(out)
    assert doc["by_type"]["DISPATCH"] == 1
    assert (doc["first_seq"], doc["last_seq"]) == (13, 15)
    assert doc["bytes"] == wal_file(queue).stat().st_size


# -- wal verify -------------------------------------------------------------------------
def test_wal_verify_clean_log(queue: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "wal", "verify", "--config", str(queue))
    assert code == 0
    assert out.strip() == "ok: 3 records in 1 segment, seq 13..15"


def test_wal_verify_accepts_a_wal_path_argument(
    queue: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "wal", "verify", str(wal_file(queue)))
    assert code == 0
    assert out.startswith("ok: 3 records")


def test_wal_verify_torn_tail_is_a_warning_exit_0(
    queue: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wal = wal_file(queue)
    size = wal.stat().st_size
    with open(wal, "ab") as f:
        f.write(b'{"seq":16,"type":"ACK","job_')
    code, out, _ = run(capsys, "wal", "verify", "--config", str(queue))
    assert code == 0
    ok, warning = out.splitlines()
    assert ok.startswith("ok: 3 records")
    assert warning.startswith("warning: torn tail")
    assert f"offset {size}" in warning and "28 bytes" in warning


def test_wal_verify_corruption_is_one_line_naming_file_and_line_exit_2(
    queue: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wal = wal_file(queue)
    damage_line(wal, 1)
    code, out, err = run(capsys, "wal", "verify", "--config", str(queue))
    assert code == 2
    assert out == ""
    line = assert_one_error_line(err)
    assert f"{wal}: line 2" in line
    assert "checksum" in line


# -- wal repair -------------------------------------------------------------------------
def test_wal_repair_without_yes_refuses_and_says_what_it_would_cut(
    queue: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wal = wal_file(queue)
    data = damage_line(wal, 1)
    offset = data.index(b"\n") + 1
    code, out, err = run(capsys, "wal", "repair", "--config", str(queue))
    assert code == 2
    line = assert_one_error_line(err)
    assert "--yes" in line
    assert f"{len(data) - offset} bytes" in line and f"offset {offset}" in line
    assert str(wal) in out and f"corrupt-{offset}" in out
    assert wal.read_bytes() == data  # nothing changed


def test_wal_repair_with_yes_cuts_saves_and_verify_accepts_it(
    queue: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wal = wal_file(queue)
    data = damage_line(wal, 1)
    offset = data.index(b"\n") + 1
    code, out, err = run(capsys, "wal", "repair", "--config", str(queue), "--yes")
    assert code == 0, err
    saved = Path(f"{wal}.corrupt-{offset}")
    assert f"saved cut bytes to {saved}" in out
    assert saved.read_bytes() == data[offset:]
    assert wal.read_bytes() == data[:offset]
    code, out, _ = run(capsys, "wal", "verify", "--config", str(queue))
    assert code == 0
    assert out.strip() == "ok: 1 record in 1 segment, seq 13..13"


def test_wal_repair_on_a_clean_log_changes_nothing(
    queue: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = wal_file(queue).read_bytes()
    for extra in ([], ["--yes"]):
        code, out, _ = run(capsys, "wal", "repair", "--config", str(queue), *extra)
        assert code == 0
        assert "clean; nothing to repair" in out
    assert wal_file(queue).read_bytes() == before


# -- snapshot show ----------------------------------------------------------------------
def test_snapshot_show_summarizes_the_snapshot_in_use(
    queue: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "snapshot", "show", "--config", str(queue))
    assert code == 0
    assert "snapshot.json" in out.splitlines()[0]
    summary = dict(line.split() for line in out.splitlines()[1:8])
    assert summary["last_seq"] == "12"
    assert summary["queue"] == "2"  # a3, a4
    assert summary["completed"] == "2"
    assert summary["dead"] == "1"


def test_snapshot_show_json_reports_a_damaged_newer_copy(
    queue: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_config(queue)
    with DurableQueue(config) as q:
        q.snapshot()  # newest at snapshot.json, the seq-12 one now at snapshot.json.1
    newest = Path(config.snapshot_path)
    newest.write_bytes(newest.read_bytes()[:-20])
    code, out, _ = run(capsys, "snapshot", "show", "--config", str(queue), "--format", "json")
    assert code == 0
    doc = orjson.loads(out)
    assert doc["used"] == f"{newest}.1"
    assert doc["summary"]["last_seq"] == 12
    assert [d["path"] for d in doc["damaged"]] == [str(newest)]
    assert [c["status"] for c in doc["copies"]] == ["damaged", "used"]
    code, out, _ = run(capsys, "snapshot", "show", "--config", str(queue))
    assert "warning: damaged snapshot skipped" in out


def test_snapshot_show_path_reads_one_file(queue: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = load_config(queue).snapshot_path
    code, out, _ = run(capsys, "snapshot", "show", "--config", str(queue), "--path", path)
    assert code == 0
    assert "last_seq        12" in out


def test_snapshot_show_without_a_snapshot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "snapshot", "show", "--config", str(write_config(tmp_path)))
    assert code == 0
    assert out.startswith("no snapshot at")


def test_snapshot_show_unreadable_file_is_one_error_line(
    queue: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = queue.parent / "bad.json"
    bad.write_bytes(b"{not json\n")
    code, _, err = run(capsys, "snapshot", "show", "--config", str(queue), "--path", str(bad))
    assert code == 2
    assert "bad.json" in assert_one_error_line(err)


# -- errors -----------------------------------------------------------------------------
def test_missing_config_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "status", "--config", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert out == ""
    assert "nope.yaml: no such config file" in assert_one_error_line(err)


def test_bad_yaml_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("wal_path: [unclosed\n", encoding="utf-8")
    for argv in (["status"], ["wal", "verify"], ["snapshot", "show"]):
        code, _, err = run(capsys, *argv, "--config", str(path))
        assert code == 2
        assert "bad.yaml" in assert_one_error_line(err)


def test_os_error_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "wal.log"
    folder.mkdir()  # a folder where the WAL file should be
    code, _, err = run(capsys, "wal", "verify", str(folder))
    assert code == 2
    assert str(folder) in assert_one_error_line(err)


def test_ctrl_c_exits_130(
    queue: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "recover", interrupted)
    code, _, err = run(capsys, "status", "--config", str(queue))
    assert code == 130
    assert "Traceback" not in err


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "wal")
    assert code == 2
    assert "usage:" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["status"],
        ["wal", "dump"],
        ["wal", "stats"],
        ["wal", "verify"],
        ["wal", "repair"],
        ["snapshot", "show"],
        ["run"],
    ],
)
def test_every_command_help_has_a_description_and_an_example(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, *argv, "--help")
    assert code == 0
    assert "--config" in out
    assert "example" in out and "python -m phase1 " + argv[0] in out


def test_python_m_phase1_help_runs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "phase1", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("status", "wal", "snapshot", "run", "sim", "explore", "bench"):
        assert name in proc.stdout


def test_wal_repair_in_a_closed_segment_moves_later_segments_aside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = write_config(tmp_path)
    config = load_config(config_path)
    with DurableQueue(config) as q:  # two snapshots keep the segment between them
        for prefix in "abc":
            q.submit([Job(f"{prefix}{i}") for i in range(3)])
            if prefix != "c":
                q.snapshot()
    closed = sorted(Path(config.wal_path).parent.glob("wal.log.0*"))
    assert len(closed) == 1
    damage_line(closed[0], 1)
    code, out, _ = run(capsys, "wal", "repair", "--config", str(config_path))
    assert code == 2
    assert "move aside 1 later segment(s)" in out
    code, out, err = run(capsys, "wal", "repair", "--config", str(config_path), "--yes")
    assert code == 0, err
    assert f"{config.wal_path}.corrupt-0" in out
    code, out, err = run(capsys, "wal", "verify", "--config", str(config_path))
    assert code == 0, err
