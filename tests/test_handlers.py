"""Payload handlers and their sandbox, plus ``TaskContext`` (phase1.runtime.handlers/context).

No test sleeps to synchronise: cancellation is set before a call or comes from a deadline,
and the slow HTTP endpoint blocks on an event that teardown releases.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from phase1.config import Config
from phase1.errors import QueueKitError, SandboxViolation
from phase1.jobs import Job, generate_test_jobs, parse_jobs
from phase1.runtime import handlers as handlers_mod
from phase1.runtime.context import DEADLINE_EXCEEDED, Cancelled, TaskContext
from phase1.runtime.handlers import (
    WRITE_MAX_BYTES,
    HandlerError,
    HandlerRegistry,
    job_kind,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config().replace(
        wal_path=str(tmp_path / "wal.log"),
        snapshot_path=str(tmp_path / "snapshot.json"),
        workspace=str(tmp_path / "workspace"),
    )


@pytest.fixture
def reg(config: Config) -> Iterator[HandlerRegistry]:
    registry = HandlerRegistry(config)
    yield registry
    registry.release_stuck()


def ctx(attempt: int = 1, timeout_s: float = 10.0) -> TaskContext:
    return TaskContext("t", attempt, timeout_s=timeout_s)


def run(reg: HandlerRegistry, payload: object, attempt: int = 1, timeout_s: float = 10.0):
    return reg.run(Job("t", payload, attempt=attempt), ctx(attempt, timeout_s))


def fib(n: object) -> dict[str, object]:
    return {"type": "compute", "operation": "fibonacci", "input": n}


def write(path: str, content: str = "hello") -> dict[str, object]:
    return {"type": "io", "operation": "write_file", "path": path, "content": content}


def get(url: str) -> dict[str, object]:
    return {"type": "network", "operation": "http_get", "url": url}


# -- kinds ---------------------------------------------------------------------------------------
def test_job_kind_of_seed_test_and_generator_payloads() -> None:
    assert job_kind(fib(30)) == "compute/fibonacci"
    assert job_kind({"kind": "sleep", "seconds": 0.2}) == "sleep"
    assert job_kind({"index": 3, "value": 7}) == "noop"
    assert job_kind(None) == "noop"
    assert job_kind(42) == "noop"


def test_job_kind_refuses_half_a_seed_kind() -> None:
    with pytest.raises(HandlerError, match="has 'type'='compute' but no 'operation'"):
        job_kind({"type": "compute"})
    with pytest.raises(HandlerError, match="'kind'=3"):
        job_kind({"kind": 3})


def test_generator_jobs_run_as_noop(reg: HandlerRegistry) -> None:
    import random

    (job,) = generate_test_jobs(1, random.Random(1))
    assert reg.run(job, ctx()) is None


def test_unknown_kind_fails_listing_known_kinds(reg: HandlerRegistry) -> None:
    with pytest.raises(HandlerError) as err:
        run(reg, {"type": "x", "operation": "y"})
    msg = err.value.reason
    assert msg.startswith("unknown job kind 'x/y' (known: ")
    for kind in ("compute/fibonacci", "io/write_file", "network/http_get", "sleep", "fail"):
        assert kind in msg
    assert err.value.kind == "x/y"
    assert isinstance(err.value, QueueKitError)


def test_kinds_and_register(reg: HandlerRegistry) -> None:
    assert set(reg.kinds()) >= {
        "compute/fibonacci",
        "io/write_file",
        "network/http_get",
        "noop",
        "sleep",
        "fail",
        "crash",
        "stuck",
    }
    reg.register("echo", lambda payload, c: {"job": c.job_id, "payload": payload})
    assert run(reg, {"kind": "echo", "x": 1}) == {"job": "t", "payload": {"kind": "echo", "x": 1}}
    with pytest.raises(ValueError, match="already registered"):
        reg.register("echo", lambda p, c: None)
    reg.register("echo", lambda p, c: 1, replace=True)
    assert run(reg, {"kind": "echo"}) == 1


def test_handler_bug_becomes_one_line_handler_error(reg: HandlerRegistry) -> None:
    def boom(payload: object, c: TaskContext) -> object:
        raise ZeroDivisionError("line one\nline two")

    reg.register("boom", boom)
    with pytest.raises(HandlerError) as err:
        run(reg, {"kind": "boom"})
    assert err.value.reason == "boom: ZeroDivisionError: line one line two"
    assert isinstance(err.value.__cause__, ZeroDivisionError)


def test_non_json_result_fails(reg: HandlerRegistry) -> None:
    reg.register("obj", lambda p, c: object())
    with pytest.raises(HandlerError, match="obj: result of type object is not JSON"):
        run(reg, {"kind": "obj"})


def test_cancelled_context_runs_nothing(reg: HandlerRegistry) -> None:
    calls: list[int] = []
    reg.register("count", lambda p, c: calls.append(1))
    c = ctx()
    c.cancel("worker stopping")
    with pytest.raises(Cancelled, match="worker stopping"):
        reg.run(Job("t", {"kind": "count"}), c)
    assert calls == []


# -- compute/fibonacci -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "want"), [(0, 0), (1, 1), (2, 1), (30, 832040), (90, 2880067194370816120)]
)
def test_fibonacci_values(reg: HandlerRegistry, n: int, want: int) -> None:
    assert run(reg, fib(n)) == want


@pytest.mark.parametrize("n", [91, -1, "30", True, 10**9, 3.0, None])
def test_fibonacci_rejects_out_of_range_or_non_int(reg: HandlerRegistry, n: object) -> None:
    started = time.monotonic()
    with pytest.raises(HandlerError, match=r"compute/fibonacci: input=.* 0\.\.90"):
        run(reg, fib(n))
    assert time.monotonic() - started < 1.0


def test_fibonacci_bound_comes_from_config(config: Config) -> None:
    reg = HandlerRegistry(config.replace(fibonacci_max_input=10))
    assert run(reg, fib(10)) == 55
    with pytest.raises(HandlerError, match=r"out of range 0\.\.10 \(fibonacci_max_input\)"):
        run(reg, fib(11))


# -- io/write_file ----------------------------------------------------------------------------------
def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_write_file_inside_workspace_is_atomic(reg: HandlerRegistry, config: Config) -> None:
    ws = Path(config.workspace)
    assert not ws.exists()  # created on demand
    assert run(reg, write("out.txt", "Hello World")) == {"path": "out.txt", "bytes": 11}
    assert (ws / "out.txt").read_text() == "Hello World"
    assert run(reg, write("out.txt", "héllo")) == {"path": "out.txt", "bytes": 6}
    assert (ws / "out.txt").read_text() == "héllo"
    assert listing(ws) == ["out.txt"]  # no temp files left


def test_write_file_creates_subfolders(reg: HandlerRegistry, config: Config) -> None:
    assert run(reg, write("reports/2024/./a.txt", "x")) == {
        "path": "reports/2024/a.txt",
        "bytes": 1,
    }
    assert (Path(config.workspace) / "reports" / "2024" / "a.txt").read_text() == "x"


def test_write_file_absolute_path_inside_workspace_is_allowed(
    reg: HandlerRegistry, config: Config
) -> None:
    target = Path(config.workspace).resolve() / "abs.txt"
    os.makedirs(config.workspace)
    assert run(reg, write(str(target))) == {"path": "abs.txt", "bytes": 5}


def test_write_file_refuses_absolute_path_outside(reg: HandlerRegistry, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    with pytest.raises(SandboxViolation, match="is outside the workspace"):
        run(reg, write(str(outside)))
    assert not outside.exists()


@pytest.mark.parametrize("path", ["../x", "a/../../x", "a/../b", "/etc/../tmp/x"])
def test_write_file_refuses_dotdot(reg: HandlerRegistry, tmp_path: Path, path: str) -> None:
    with pytest.raises(SandboxViolation, match="has a '..' component"):
        run(reg, write(path))
    assert not (tmp_path / "x").exists()


def test_write_file_refuses_symlinked_folder_leaving_workspace(
    reg: HandlerRegistry, config: Config, tmp_path: Path
) -> None:
    ws, outside = Path(config.workspace), tmp_path / "outside"
    ws.mkdir()
    outside.mkdir()
    (ws / "link").symlink_to(outside)
    with pytest.raises(SandboxViolation, match="goes through a symlink to .*outside the workspace"):
        run(reg, write("link/x.txt"))
    assert listing(outside) == []


def test_write_file_refuses_symlink_as_final_component(
    reg: HandlerRegistry, config: Config, tmp_path: Path
) -> None:
    ws = Path(config.workspace)
    ws.mkdir()
    target = tmp_path / "target.txt"
    target.write_text("precious")
    (ws / "evil.txt").symlink_to(target)
    with pytest.raises(SandboxViolation, match="'evil.txt' is a symlink"):
        run(reg, write("evil.txt", "overwritten"))
    assert target.read_text() == "precious"
    assert listing(ws) == ["evil.txt"]


def test_write_file_follows_symlink_that_stays_inside(reg: HandlerRegistry, config: Config) -> None:
    ws = Path(config.workspace)
    (ws / "real").mkdir(parents=True)
    (ws / "alias").symlink_to(ws / "real")
    assert run(reg, write("alias/x.txt")) == {"path": "real/x.txt", "bytes": 5}
    assert (ws / "real" / "x.txt").read_text() == "hello"


def test_write_file_refuses_symlink_planted_after_the_check(config: Config, tmp_path: Path) -> None:
    # the second line of defence: folders are opened with O_NOFOLLOW
    ws, outside = Path(config.workspace), tmp_path / "outside"
    ws.mkdir()
    outside.mkdir()
    (ws / "swapped").symlink_to(outside)
    with pytest.raises(SandboxViolation, match="is a symlink or not a folder"):
        handlers_mod._atomic_write(str(ws.resolve()), ["swapped"], "x.txt", b"x", "swapped/x.txt")
    assert listing(outside) == []


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (write(""), "path='' is not a non-empty string"),
        (write("dir/"), "does not name a file"),
        (write("a\x00b"), "NUL byte"),
        ({"type": "io", "operation": "write_file", "content": "x"}, "path=None"),
        ({"type": "io", "operation": "write_file", "path": "a", "content": 5}, "content is int"),
        (write("big", "x" * (WRITE_MAX_BYTES + 1)), f"max {WRITE_MAX_BYTES}"),
    ],
)
def test_write_file_refuses_bad_arguments(
    reg: HandlerRegistry, payload: dict[str, object], match: str
) -> None:
    with pytest.raises(HandlerError, match=match):
        run(reg, payload)


def test_write_file_failure_leaves_old_content_and_no_temp(
    reg: HandlerRegistry, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = Path(config.workspace)
    run(reg, write("f.txt", "old"))

    def broken_replace(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(handlers_mod.os, "replace", broken_replace)
    with pytest.raises(HandlerError, match="cannot write 'f.txt' .*No space left on device"):
        run(reg, write("f.txt", "new"))
    assert (ws / "f.txt").read_text() == "old"
    assert listing(ws) == ["f.txt"]


def test_write_file_refuses_existing_folder(reg: HandlerRegistry, config: Config) -> None:
    (Path(config.workspace) / "d").mkdir(parents=True)
    with pytest.raises(HandlerError, match="'d' exists and is not a regular file"):
        run(reg, write("d"))


# -- network/http_get ------------------------------------------------------------------------------
BODY = b"hello phase1\n"


class Server:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.hits: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def reply(self, status: int, body: bytes = b"", **headers: str) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k.replace("_", "-"), v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.hits.append(self.path)
                port = self.server.server_address[1]
                if self.path == "/ok":
                    self.reply(200, BODY, Content_Length=str(len(BODY)))
                elif self.path == "/big":
                    self.reply(200, b"x" * 2000, Content_Length="2000")
                elif self.path == "/big-stream":  # no Content-Length: HTTP/1.0, close-delimited
                    self.reply(200, b"x" * 2000)
                elif self.path == "/slow":
                    server.release.wait(30)
                    self.reply(200, BODY, Content_Length=str(len(BODY)))
                elif self.path == "/to-github":
                    self.reply(302, Location="https://api.github.com/")
                elif self.path == "/to-ok":
                    self.reply(302, Location=f"http://127.0.0.1:{port}/ok")
                elif self.path == "/to-to-ok":
                    self.reply(301, Location="/to-ok")
                elif self.path == "/to-file":
                    self.reply(302, Location="file:///etc/passwd")
                elif self.path.startswith("/loop"):
                    self.reply(302, Location=f"/loop{len(server.hits)}")
                else:
                    self.reply(404, b"nope", Content_Length="4")

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def test_http_get_returns_status_size_and_hash(reg: HandlerRegistry, server: Server) -> None:
    assert run(reg, get(server.url("/ok"))) == {
        "status": 200,
        "bytes": len(BODY),
        "sha256": hashlib.sha256(BODY).hexdigest(),
    }


@pytest.mark.parametrize("path", ["/big", "/big-stream"])
def test_http_get_body_over_cap_fails(config: Config, server: Server, path: str) -> None:
    reg = HandlerRegistry(config.replace(http_max_bytes=1000))
    with pytest.raises(HandlerError, match="exceeds http_max_bytes=1000"):
        run(reg, get(server.url(path)))
    reg2 = HandlerRegistry(config.replace(http_max_bytes=2000))
    assert run(reg2, get(server.url(path)))["bytes"] == 2000


def test_http_get_times_out_within_http_timeout(config: Config, server: Server) -> None:
    reg = HandlerRegistry(config.replace(http_timeout_s=0.3))
    started = time.monotonic()
    with pytest.raises(HandlerError, match=r"timed out after 0\.3s \(http_timeout\)"):
        run(reg, get(server.url("/slow")))
    assert time.monotonic() - started < 2.0


def test_http_get_stops_at_the_context_deadline(reg: HandlerRegistry, server: Server) -> None:
    started = time.monotonic()
    with pytest.raises(Cancelled, match=DEADLINE_EXCEEDED):
        run(reg, get(server.url("/slow")), timeout_s=0.3)
    assert time.monotonic() - started < 2.0


def test_http_get_follows_redirects_to_allowed_hosts(reg: HandlerRegistry, server: Server) -> None:
    assert run(reg, get(server.url("/to-to-ok")))["status"] == 200
    assert server.hits == ["/to-to-ok", "/to-ok", "/ok"]


def test_http_get_refuses_redirect_to_disallowed_host(reg: HandlerRegistry, server: Server) -> None:
    with pytest.raises(SandboxViolation, match="redirect from .* host 'api.github.com' is not in"):
        run(reg, get(server.url("/to-github")))
    with pytest.raises(SandboxViolation, match="scheme 'file' is not allowed"):
        run(reg, get(server.url("/to-file")))


def test_http_get_stops_after_three_redirects(reg: HandlerRegistry, server: Server) -> None:
    with pytest.raises(HandlerError, match="more than 3 redirects"):
        run(reg, get(server.url("/loop")))
    assert len(server.hits) == 4


def test_http_get_error_status_fails(reg: HandlerRegistry, server: Server) -> None:
    with pytest.raises(HandlerError, match="HTTP 404"):
        run(reg, get(server.url("/missing")))


def test_http_get_connection_refused_fails(reg: HandlerRegistry) -> None:
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with pytest.raises(HandlerError, match="network/http_get .*ConnectionRefusedError"):
            run(reg, get(f"http://127.0.0.1:{port}/"))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the handler touched the network")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(http.client.HTTPConnection, "connect", refuse)


@pytest.mark.usefixtures("no_network")
def test_http_get_refuses_off_list_host_before_connecting(reg: HandlerRegistry) -> None:
    with pytest.raises(SandboxViolation) as err:
        run(reg, get("https://api.github.com"))
    assert str(err.value) == (
        "network/http_get: url https://api.github.com: host 'api.github.com' is not in "
        "http_allow_hosts [127.0.0.1, localhost, ::1]; add it to the config to allow"
    )


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://localhost/"])
def test_http_get_refuses_non_http_scheme(reg: HandlerRegistry, url: str) -> None:
    with pytest.raises(SandboxViolation, match="is not allowed \\(only http and https\\)"):
        run(reg, get(url))


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize(
    ("url", "match"), [("", "not a non-empty string"), ("http:///x", "has no host")]
)
def test_http_get_refuses_malformed_url(reg: HandlerRegistry, url: str, match: str) -> None:
    with pytest.raises(HandlerError, match=match):
        run(reg, get(url))


def test_http_get_allow_list_comes_from_config(config: Config, server: Server) -> None:
    reg = HandlerRegistry(config.replace(http_allow_hosts=["localhost"]))
    with pytest.raises(SandboxViolation, match="host '127.0.0.1' is not in http_allow_hosts"):
        run(reg, get(server.url("/ok")))


# -- the seed's three jobs ---------------------------------------------------------------------------
def seed_jobs() -> dict[str, Job]:
    jobs = parse_jobs((REPO / "data" / "test-jobs.json").read_bytes(), source="test-jobs.json")
    return {job.id: job for job in jobs}


def test_seed_fibonacci_job_succeeds(reg: HandlerRegistry) -> None:
    assert reg.run(seed_jobs()["task-001"], ctx()) == 832040


def test_seed_write_file_job_is_refused_outside_workspace(
    reg: HandlerRegistry, config: Config
) -> None:
    with pytest.raises(SandboxViolation) as err:
        reg.run(seed_jobs()["task-002"], ctx())
    ws = os.path.realpath(config.workspace)
    assert str(err.value) == (
        f"io/write_file: path '/tmp/test.txt' is outside the workspace {ws!r} "
        "(the config's workspace); use a path relative to it"
    )


@pytest.mark.usefixtures("no_network")
def test_seed_http_get_job_is_refused_off_allow_list(reg: HandlerRegistry) -> None:
    with pytest.raises(SandboxViolation, match="host 'api.github.com' is not in http_allow_hosts"):
        reg.run(seed_jobs()["task-003"], ctx())


# -- sleep / fail / noop / stuck / crash ---------------------------------------------------------------
def test_sleep_completes(reg: HandlerRegistry) -> None:
    assert run(reg, {"kind": "sleep", "seconds": 0}) == {"slept_s": 0.0}
    assert run(reg, {"kind": "sleep", "seconds": 0.01}) == {"slept_s": 0.01}


def test_sleep_cancelled_before_call_returns_promptly(reg: HandlerRegistry) -> None:
    c = ctx()
    c.cancel_event.set()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        reg.run(Job("t", {"kind": "sleep", "seconds": 60}), c)
    assert time.monotonic() - started < 1.0


def test_sleep_with_passed_deadline_returns_promptly(reg: HandlerRegistry) -> None:
    c = TaskContext("t", 1, deadline_s=time.monotonic() - 1)
    started = time.monotonic()
    with pytest.raises(Cancelled, match=DEADLINE_EXCEEDED):
        reg.run(Job("t", {"kind": "sleep", "seconds": 60}), c)
    assert time.monotonic() - started < 1.0


def test_sleep_stops_at_deadline_reached_while_sleeping(reg: HandlerRegistry) -> None:
    started = time.monotonic()
    with pytest.raises(Cancelled, match=DEADLINE_EXCEEDED):
        run(reg, {"kind": "sleep", "seconds": 60}, timeout_s=0.1)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("seconds", [-1, "1", math.inf, True, 10**6])
def test_sleep_refuses_bad_seconds(reg: HandlerRegistry, seconds: object) -> None:
    with pytest.raises(HandlerError, match="sleep: seconds="):
        run(reg, {"kind": "sleep", "seconds": seconds})


def test_fail_fails_first_n_attempts_then_succeeds(reg: HandlerRegistry) -> None:
    payload = {"kind": "fail", "times": 2}
    for attempt in (1, 2):
        with pytest.raises(HandlerError, match=f"attempt {attempt} fails on purpose"):
            run(reg, payload, attempt=attempt)
    assert run(reg, payload, attempt=3) == {"attempt": 3}
    assert run(reg, {"kind": "fail", "times": 0}, attempt=1) == {"attempt": 1}


def test_fail_without_times_always_fails(reg: HandlerRegistry) -> None:
    with pytest.raises(HandlerError, match="every attempt"):
        run(reg, {"kind": "fail"}, attempt=99)


def test_stuck_ignores_cancellation_until_its_cap(reg: HandlerRegistry) -> None:
    started = time.monotonic()
    with pytest.raises(HandlerError, match=r"stuck: ignored cancellation .*gave up after 0\.4s"):
        run(reg, {"kind": "stuck", "max_seconds": 0.4}, timeout_s=0.2)
    assert time.monotonic() - started >= 0.4


def test_stuck_is_released_by_the_registry(reg: HandlerRegistry) -> None:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run(reg, {"kind": "stuck"})
        except BaseException as exc:  # noqa: BLE001 - collected for the assert
            errors.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    reg.release_stuck()
    t.join(5)
    assert not t.is_alive()
    assert len(errors) == 1 and "released" in str(errors[0])


def test_crash_is_refused_unless_allowed(reg: HandlerRegistry) -> None:
    with pytest.raises(HandlerError, match="allow_crash=True"):
        run(reg, {"kind": "crash", "signal": "KILL"})


def test_crash_kills_the_process_when_allowed(tmp_path: Path) -> None:
    code = (
        "from phase1.config import Config\n"
        "from phase1.jobs import Job\n"
        "from phase1.runtime.context import TaskContext\n"
        "from phase1.runtime.handlers import HandlerRegistry\n"
        f"reg = HandlerRegistry(Config().replace(workspace={str(tmp_path)!r}), allow_crash=True)\n"
        "reg.run(Job('p', {'kind': 'crash', 'signal': 'KILL'}), TaskContext('p', 1))\n"
        "print('survived')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "survived" not in proc.stdout


def test_crash_refuses_unknown_signal(config: Config) -> None:
    reg = HandlerRegistry(config, allow_crash=True)
    with pytest.raises(HandlerError, match="signal='NOPE' is not a signal name"):
        run(reg, {"kind": "crash", "signal": "NOPE"})


def test_reasons_are_one_line_json_strings(reg: HandlerRegistry) -> None:
    with pytest.raises(HandlerError) as err:
        run(reg, {"type": "x", "operation": "y\nz"})
    assert "\n" not in err.value.reason
    json.dumps(err.value.reason)


# -- TaskContext ----------------------------------------------------------------------------------
def test_context_without_deadline_never_expires() -> None:
    c = TaskContext("a")
    assert not c.cancelled() and c.reason is None
    assert c.remaining_s() == math.inf
    assert c.wait(0) is False
    c.check()


def test_context_deadline_and_reason() -> None:
    c = TaskContext("a", 2, deadline_s=time.monotonic() - 0.001)
    assert c.cancelled() and c.remaining_s() == 0.0
    assert c.reason == DEADLINE_EXCEEDED
    c.cancel("later")  # the first reason wins
    assert c.reason == DEADLINE_EXCEEDED
    with pytest.raises(Cancelled, match="job 'a' attempt 2: deadline exceeded") as err:
        c.check()
    assert err.value.reason == DEADLINE_EXCEEDED


def test_context_cancel_keeps_first_reason() -> None:
    c = TaskContext("a", timeout_s=60)
    c.cancel("stop")
    c.cancel("again")
    assert c.reason == "stop" and c.cancel_event.is_set()
    assert c.wait(60) is True


def test_child_context_deadline_is_never_later_than_parent() -> None:
    parent = TaskContext("a", timeout_s=1)
    assert parent.with_timeout(60).deadline_s == parent.deadline_s
    assert parent.with_timeout(0.5).deadline_s < parent.deadline_s


def test_cancelling_parent_cancels_child_but_not_the_reverse() -> None:
    parent = TaskContext("a", timeout_s=60)
    child = parent.with_timeout(30)
    grandchild = child.with_timeout(10)
    sibling = parent.with_timeout(30)
    child.cancel("child only")
    assert child.cancelled() and grandchild.reason == "child only"
    assert not parent.cancelled() and not sibling.cancelled()
    parent.cancel("shutdown")
    assert sibling.reason == "shutdown" and sibling.wait(60) is True


def test_child_of_cancelled_parent_starts_cancelled() -> None:
    parent = TaskContext("a")
    parent.cancel_event.set()  # set by hand, not via cancel()
    child = parent.with_timeout(10)
    assert child.cancelled() and child.wait(60) is True


def test_child_wait_sees_parent_event_set_by_hand() -> None:
    parent = TaskContext("a")
    child = parent.with_timeout(60)
    parent.cancel_event.set()
    assert child.cancelled()
    started = time.monotonic()
    assert child.wait(60) is True
    assert time.monotonic() - started < 1.0


def test_context_wait_wakes_on_cancel_from_another_thread() -> None:
    c = TaskContext("a", timeout_s=60)
    waiting = threading.Event()
    result: list[bool] = []

    def waiter() -> None:
        waiting.set()
        result.append(c.wait(60))

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    assert waiting.wait(5)
    c.cancel("stop")  # whether wait() has started or not, it must return True
    t.join(5)
    assert result == [True]
