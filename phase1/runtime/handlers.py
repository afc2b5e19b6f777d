"""Payload handlers: what a worker actually runs for a job, inside a sandbox.

Owns: the job-kind table (``HandlerRegistry``), how a payload names its kind
(``job_kind``), the seed's three sample kinds and the test kinds, and every sandbox rule.
Must not know: queues, the WAL, workers or retries.  A handler gets the payload and a
``TaskContext`` and returns a JSON-able result or raises; the worker turns that into
ACK / FAIL.

What ``HandlerRegistry.run`` may raise (anything else a handler raises is wrapped in a
``HandlerError``, so a worker never dies of a payload):

* ``HandlerError``: the job failed; ``reason`` is one line (kind, what, why) that the
  worker keeps in the WAL's FAIL / DEAD record.
* ``SandboxViolation``: the job asked for something the config does not allow (a path
  outside ``workspace``, a host off ``http_allow_hosts``); a failure like any other,
  but it will fail the same way on every retry.
* ``Cancelled`` (from ``phase1.runtime.context``): the context was cancelled or its
  deadline passed, and the handler gave up.

Kinds: ``f"{type}/{operation}"`` for the seed's payloads (``compute/fibonacci``,
``io/write_file``, ``network/http_get``); ``payload["kind"]`` for the test kinds
(``sleep``, ``fail``, ``noop``, ``crash``, ``stuck``); ``noop`` for anything else (the
generator's ``{"index", "value"}``, ``None``, a number).  A dict with only one of
``type`` / ``operation`` is refused rather than silently run as ``noop``.

Sandbox (all limits come from ``Config``):

* ``compute/fibonacci``: ``input`` is an int in ``0..fibonacci_max_input`` (bools and
  strings are refused); iterative; checks the context between steps.
* ``io/write_file``: only inside ``workspace`` (created if missing).  Relative paths
  resolve inside it; absolute paths are accepted only if they are inside it; any ``..``
  component is refused; a symlink whose target leaves the workspace is refused, and the
  final component may not be a symlink at all.  The folders are walked with
  ``O_NOFOLLOW`` directory descriptors, so a folder swapped for a symlink between the
  check and the write is refused too.  Content is capped at ``WRITE_MAX_BYTES``; the
  write is atomic and durable (temp file in the same folder, fsync, ``os.replace``, fsync
  of the folder).  POSIX only (``dir_fd`` support).
* ``network/http_get``: ``http`` / ``https`` only; the host (and every redirect's host)
  must be in ``http_allow_hosts``, checked before any socket is opened; at most
  ``HTTP_MAX_REDIRECTS`` redirects; the whole request, not each read, is bounded by
  ``min(http_timeout_s, ctx.remaining_s())``; the body is read in chunks and the job fails
  as soon as it passes ``http_max_bytes``.  A status >= 400 fails the job.  Cancellation is
  checked between chunks; a read blocked on a silent server ends at the deadline.

Test kinds:

* ``{"kind": "sleep", "seconds": 0.2}``: ``ctx.wait``; raises ``Cancelled`` when cancelled.
* ``{"kind": "fail", "times": 2}``: fails attempts ``1..times`` (``ctx.attempt``, which is
  the WAL's attempt, so it holds across restarts) and then succeeds; no ``times`` = fail
  forever (a poison job that goes DEAD).
* ``{"kind": "noop"}``: returns ``None``.
* ``{"kind": "crash", "signal": "KILL"}``: ``os.kill(os.getpid(), SIGKILL)`` -- the whole
  process dies mid-attempt (the poison-job recovery test).  Refused with a
  ``HandlerError`` unless the registry was built with ``allow_crash=True``.
* ``{"kind": "stuck"}``: ignores cancellation and blocks (up to ``STUCK_MAX_S``, or
  ``max_seconds`` if smaller, or until ``HandlerRegistry.release_stuck()``), then fails.
  The runtime cannot stop a Python thread: it abandons the attempt at its deadline (the
  timeout loop expires it) and the thread stays blocked until the cap.
"""

from __future__ import annotations

import hashlib
import http.client
import math
import os
import secrets
import signal
import socket
import ssl
import stat
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from phase1.config import Config
from phase1.errors import QueueKitError, SandboxViolation
from phase1.jobs import Job
from phase1.runtime.context import Cancelled, TaskContext

__all__ = [
    "HandlerError",
    "HandlerRegistry",
    "Handler",
    "job_kind",
    "WRITE_MAX_BYTES",
    "HTTP_MAX_REDIRECTS",
    "STUCK_MAX_S",
    "SLEEP_MAX_S",
    "REASON_MAX_CHARS",
]

WRITE_MAX_BYTES = 1 << 20  # io/write_file content cap (UTF-8 bytes)
HTTP_MAX_REDIRECTS = 3
HTTP_CHUNK_BYTES = 64 * 1024
STUCK_MAX_S = 3600.0  # a stuck job's thread is freed after at most an hour
SLEEP_MAX_S = 3600.0
REASON_MAX_CHARS = 500  # a FAIL reason is one WAL line, not a log file

Handler = Callable[[Any, TaskContext], object]
"""``fn(payload, ctx) -> JSON-able result``; job id and attempt are ``ctx.job_id`` and
``ctx.attempt``."""

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class HandlerError(QueueKitError):
    """A job failed; ``reason`` is the one line kept in the WAL's FAIL / DEAD record."""

    def __init__(self, reason: str, *, kind: str | None = None):
        reason = _one_line(reason)
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    if len(text) > REASON_MAX_CHARS:
        text = text[: REASON_MAX_CHARS - 3] + "..."
    return text


def job_kind(payload: object) -> str:
    """The kind a payload asks for (see the module docstring).

    >>> job_kind({"type": "compute", "operation": "fibonacci", "input": 30})
    'compute/fibonacci'
    >>> job_kind({"kind": "sleep", "seconds": 0.2}), job_kind({"index": 0, "value": 7})
    ('sleep', 'noop')
    """
    if type(payload) is dict:  # the common case, without the ABC check
        kind = payload.get("kind")
        if type(kind) is str and kind:
            return kind
    if not isinstance(payload, Mapping):
        return "noop"
    if "kind" in payload:
        kind = payload["kind"]
        if not isinstance(kind, str) or not kind:
            raise HandlerError(f"payload 'kind'={kind!r} is not a non-empty string")
        return kind
    has_type, has_op = "type" in payload, "operation" in payload
    if has_type and has_op:
        typ, op = payload["type"], payload["operation"]
        if not isinstance(typ, str) or not isinstance(op, str) or not typ or not op:
            raise HandlerError(
                f"payload 'type'={typ!r} / 'operation'={op!r} must be non-empty strings"
            )
        return f"{typ}/{op}"
    if has_type or has_op:
        have, missing = ("type", "operation") if has_type else ("operation", "type")
        raise HandlerError(f"payload has {have!r}={payload[have]!r} but no {missing!r}")
    return "noop"


class HandlerRegistry:
    """The kind -> handler table, with the built-in kinds registered.

    ``allow_crash`` enables the ``crash`` kind (it SIGKILLs the whole process); keep it
    ``False`` anywhere but crash tests.

    >>> from phase1.config import Config
    >>> reg = HandlerRegistry(Config())
    >>> reg.run(Job("t", {"type": "compute", "operation": "fibonacci", "input": 30}),
    ...         TaskContext("t", 1, timeout_s=3))
    832040
    """

    def __init__(self, config: Config, *, allow_crash: bool = False) -> None:
        self.config = config
        self.allow_crash = allow_crash
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._stuck_release = threading.Event()
        self._allow_hosts = frozenset(_norm_host(h) for h in config.http_allow_hosts)
        for kind, fn in (
            ("compute/fibonacci", self._fibonacci),
            ("io/write_file", self._write_file),
            ("network/http_get", self._http_get),
            ("noop", _noop),
            ("sleep", _sleep),
            ("fail", _fail),
            ("crash", self._crash),
            ("stuck", self._stuck),
        ):
            self.register(kind, fn)

    # -- the table -------------------------------------------------------------------------
    def register(self, kind: str, fn: Handler, *, replace: bool = False) -> None:
        """Add ``fn(payload, ctx)`` for ``kind``; replacing a kind needs ``replace=True``."""
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"register: kind {kind!r} is not a non-empty string")
        with self._lock:
            if kind in self._handlers and not replace:
                raise ValueError(f"register: kind {kind!r} is already registered (replace=True)")
            self._handlers[kind] = fn

    def kinds(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(self._handlers))

    def run(self, job: Job, ctx: TaskContext) -> object:
        """Run ``job`` under ``ctx``; returns its JSON-able result.

        Raises ``HandlerError``, ``SandboxViolation`` or ``Cancelled`` only (see module
        docstring); nothing is retried here.
        """
        kind = job_kind(job.payload)
        fn = self._handlers.get(kind)  # no lock: one dict read is atomic, register() locks
        if fn is None:
            raise HandlerError(
                f"unknown job kind {kind!r} (known: {', '.join(self.kinds())})", kind=kind
            )
        ctx.check()
        try:
            result = fn(job.payload, ctx)
        except HandlerError as exc:
            if exc.kind is None:
                exc.kind = kind
            raise
        except (SandboxViolation, Cancelled):
            raise
        except Exception as exc:  # a handler bug must fail the job, not kill the worker
            raise HandlerError(f"{kind}: {type(exc).__name__}: {exc}", kind=kind) from exc
        if result is None:
            return result
        try:
            orjson.dumps(result)
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise HandlerError(
                f"{kind}: result of type {type(result).__name__} is not JSON ({exc})", kind=kind
            ) from exc
        return result

    def release_stuck(self) -> None:
        """Let every ``stuck`` job of this registry return (tests' teardown, shutdown)."""
        self._stuck_release.set()

    # -- compute/fibonacci ----------------------------------------------------------------
    def _fibonacci(self, payload: Mapping[str, Any], ctx: TaskContext) -> int:
        n = payload.get("input")
        top = self.config.fibonacci_max_input
        if isinstance(n, bool) or not isinstance(n, int):
            raise HandlerError(
                f"compute/fibonacci: input={_short(n)} is {type(n).__name__}, "
                f"expected an int in 0..{top}"
            )
        if not 0 <= n <= top:
            raise HandlerError(
                f"compute/fibonacci: input={_short(n)} is out of range 0..{top} "
                "(fibonacci_max_input)"
            )
        a, b = 0, 1
        for _ in range(n):
            ctx.check()
            a, b = b, a + b
        return a

    # -- io/write_file ----------------------------------------------------------------------
    def _write_file(self, payload: Mapping[str, Any], ctx: TaskContext) -> dict[str, object]:
        path = payload.get("path")
        content = payload.get("content")
        if not isinstance(path, str) or not path:
            raise HandlerError(f"io/write_file: path={_short(path)} is not a non-empty string")
        if "\x00" in path:
            raise HandlerError(f"io/write_file: path={_short(path)} contains a NUL byte")
        if not isinstance(content, str):
            raise HandlerError(
                f"io/write_file: content is {type(content).__name__}, expected a string"
            )
        data = content.encode("utf-8")
        if len(data) > WRITE_MAX_BYTES:
            raise HandlerError(
                f"io/write_file: content is {len(data)} bytes (max {WRITE_MAX_BYTES})"
            )
        ws = self.config.workspace
        os.makedirs(ws, exist_ok=True)
        ws_real = os.path.realpath(ws)
        outside = SandboxViolation(
            f"io/write_file: path {path!r} is outside the workspace {ws_real!r} "
            "(the config's workspace); use a path relative to it"
        )
        parts = path.replace(os.sep, "/").split("/")
        if ".." in parts:
            raise SandboxViolation(
                f"io/write_file: path {path!r} has a '..' component; "
                f"paths must stay inside the workspace {ws_real!r}"
            )
        name = parts[-1]
        if name in ("", "."):
            raise HandlerError(f"io/write_file: path {path!r} does not name a file")
        candidate = path if os.path.isabs(path) else os.path.join(ws_real, path)
        parent_real = os.path.realpath(os.path.dirname(candidate))
        if not _inside(parent_real, ws_real):
            as_written = os.path.abspath(candidate)
            if not (_inside(as_written, ws_real) or _inside(as_written, os.path.abspath(ws))):
                raise outside
            raise SandboxViolation(
                f"io/write_file: path {path!r} goes through a symlink to {parent_real!r}, "
                f"outside the workspace {ws_real!r}"
            )
        rel_parent = os.path.relpath(parent_real, ws_real)
        folders = [] if rel_parent == "." else rel_parent.split(os.sep)
        rel = "/".join([*folders, name])
        ctx.check()
        try:
            written = _atomic_write(ws_real, folders, name, data, rel)
        except SandboxViolation:
            raise
        except OSError as exc:
            raise HandlerError(
                f"io/write_file: cannot write {rel!r} in {ws_real!r}: {exc.strerror or exc}"
            ) from exc
        return {"path": rel, "bytes": written}

    # -- network/http_get --------------------------------------------------------------------
    def _http_get(self, payload: Mapping[str, Any], ctx: TaskContext) -> dict[str, object]:
        url = payload.get("url")
        if not isinstance(url, str) or not url:
            raise HandlerError(f"network/http_get: url={_short(url)} is not a non-empty string")
        self._check_url(url, url)
        limit_s = min(self.config.http_timeout_s, ctx.remaining_s())
        if limit_s <= 0:
            ctx.check()
        deadline = time.monotonic() + limit_s
        max_bytes = self.config.http_max_bytes
        current = url
        for redirects in range(HTTP_MAX_REDIRECTS + 1):
            try:
                status, location, body = _fetch_once(current, deadline, max_bytes, ctx)
            except TimeoutError as exc:
                ctx.check()  # the context's deadline, not http_timeout: Cancelled
                raise HandlerError(
                    f"network/http_get {url}: timed out after {limit_s:g}s (http_timeout)"
                ) from exc
            except _BodyTooLarge as exc:
                raise HandlerError(
                    f"network/http_get {current}: response body exceeds http_max_bytes="
                    f"{max_bytes} ({exc})"
                ) from exc
            except (OSError, http.client.HTTPException) as exc:
                ctx.check()
                raise HandlerError(
                    f"network/http_get {current}: {type(exc).__name__}: {exc}"
                ) from exc
            if status in _REDIRECTS and location is not None:
                if redirects == HTTP_MAX_REDIRECTS:
                    raise HandlerError(
                        f"network/http_get {url}: more than {HTTP_MAX_REDIRECTS} redirects"
                    )
                target = urllib.parse.urljoin(current, location)
                self._check_url(target, url, redirect=True)
                current = target
                continue
            if status >= 400:
                raise HandlerError(f"network/http_get {current}: HTTP {status}")
            return {
                "status": status,
                "bytes": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
            }
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_url(self, url: str, original: str, *, redirect: bool = False) -> None:
        """Refuse a scheme or host the config does not allow, before any socket exists."""
        what = f"redirect from {original} to {url}" if redirect else f"url {url}"
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            raise HandlerError(f"network/http_get: {what} is malformed: {exc}") from exc
        if parts.scheme not in ("http", "https"):
            raise SandboxViolation(
                f"network/http_get: {what}: scheme {parts.scheme!r} is not allowed "
                "(only http and https)"
            )
        host = parts.hostname
        if not host:
            raise HandlerError(f"network/http_get: {what} has no host")
        if _norm_host(host) not in self._allow_hosts:
            allowed = ", ".join(self.config.http_allow_hosts)
            raise SandboxViolation(
                f"network/http_get: {what}: host {host!r} is not in http_allow_hosts "
                f"[{allowed}]; add it to the config to allow"
            )

    # -- crash / stuck -----------------------------------------------------------------------
    def _crash(self, payload: Mapping[str, Any], ctx: TaskContext) -> None:
        name = payload.get("signal", "KILL")
        if not self.allow_crash:
            raise HandlerError(
                "crash jobs are disabled; build HandlerRegistry(config, allow_crash=True) "
                "to let one kill the process"
            )
        if not isinstance(name, str):
            raise HandlerError(f"crash: signal={_short(name)} is not a signal name like 'KILL'")
        try:
            signum = signal.Signals["SIG" + name.upper().removeprefix("SIG")]
        except KeyError:
            raise HandlerError(f"crash: signal={name!r} is not a signal name like 'KILL'") from None
        os.kill(os.getpid(), signum)
        # a signal Python handles (TERM with a handler, INT) returns here
        raise HandlerError(f"crash: sent SIG{signum.name.removeprefix('SIG')} but still alive")

    def _stuck(self, payload: Mapping[str, Any], ctx: TaskContext) -> None:
        cap = payload.get("max_seconds", STUCK_MAX_S)
        if isinstance(cap, bool) or not isinstance(cap, int | float) or not cap >= 0:
            raise HandlerError(f"stuck: max_seconds={_short(cap)} is not a number >= 0")
        cap = min(float(cap), STUCK_MAX_S)
        # deliberately not ctx.wait: this kind ignores cancellation
        released = self._stuck_release.wait(cap)
        why = "released" if released else f"gave up after {cap:g}s"
        raise HandlerError(f"stuck: ignored cancellation and blocked; {why}")


# -- small kinds ------------------------------------------------------------------------------
def _noop(payload: object, ctx: TaskContext) -> None:
    return None


def _sleep(payload: Mapping[str, Any], ctx: TaskContext) -> dict[str, float]:
    seconds = payload.get("seconds", 0)
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or not 0 <= seconds <= SLEEP_MAX_S
    ):
        raise HandlerError(
            f"sleep: seconds={_short(seconds)} is not a number in 0..{SLEEP_MAX_S:g}"
        )
    if ctx.wait(seconds):
        ctx.check()
    return {"slept_s": float(seconds)}


def _fail(payload: Mapping[str, Any], ctx: TaskContext) -> dict[str, int]:
    times = payload.get("times")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 0):
        raise HandlerError(f"fail: times={_short(times)} is not an int >= 0")
    if times is None or ctx.attempt <= times:
        of = "every attempt" if times is None else f"attempts 1..{times}"
        raise HandlerError(f"fail: attempt {ctx.attempt} fails on purpose ({of} fail)")
    return {"attempt": ctx.attempt}


# -- helpers ----------------------------------------------------------------------------------
def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _norm_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _atomic_write(ws_real: str, folders: list[str], name: str, data: bytes, rel: str) -> int:
    """Write ``data`` to ``ws_real/folders.../name`` atomically and durably.

    Folders are opened one at a time relative to the previous one with ``O_NOFOLLOW``:
    ``folders`` is already symlink-free (it came from ``realpath``), so a symlink found
    now was planted after the check and is refused.
    """
    fds = [os.open(ws_real, _DIR_FLAGS)]
    tmp: str | None = None
    try:
        for folder in folders:
            created = False
            try:
                os.mkdir(folder, 0o755, dir_fd=fds[-1])
                created = True
            except FileExistsError:
                pass
            try:
                fd = os.open(folder, _DIR_FLAGS | _NOFOLLOW, dir_fd=fds[-1])
            except OSError as exc:
                raise SandboxViolation(
                    f"io/write_file: folder {folder!r} of {rel!r} is a symlink or not a "
                    f"folder (it changed during the write?): {exc.strerror}"
                ) from exc
            if created:
                os.fsync(fds[-1])  # the new folder's name is durable
            fds.append(fd)
        dir_fd = fds[-1]
        try:
            st = os.lstat(name, dir_fd=dir_fd)
        except FileNotFoundError:
            st = None
        if st is not None:
            if stat.S_ISLNK(st.st_mode):
                raise SandboxViolation(
                    f"io/write_file: {rel!r} is a symlink; refusing to write through it"
                )
            if not stat.S_ISREG(st.st_mode):
                raise HandlerError(f"io/write_file: {rel!r} exists and is not a regular file")
        tmp = f".{name}.{secrets.token_hex(6)}.tmp"
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
            0o644,
            dir_fd=dir_fd,
        )
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        tmp = None
        os.fsync(dir_fd)
        return len(data)
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp, dir_fd=fds[-1])
            except OSError:
                pass
        for fd in fds:
            os.close(fd)


class _BodyTooLarge(Exception):
    pass


def _fetch_once(
    url: str, deadline: float, max_bytes: int, ctx: TaskContext
) -> tuple[int, str | None, bytes]:
    """One GET of an already-checked ``url``: (status, Location, body).  Every socket
    operation is bounded by what is left before ``deadline``; raises ``TimeoutError``."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline passed")
        return remaining

    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            host, parts.port, timeout=left(), context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(host, parts.port, timeout=left())
    try:
        conn.connect()
        sock: socket.socket = conn.sock  # the response reads through this socket
        sock.settimeout(left())
        conn.request(
            "GET",
            target,
            headers={"User-Agent": "phase1", "Accept-Encoding": "identity", "Connection": "close"},
        )
        sock.settimeout(left())
        resp = conn.getresponse()
        status = resp.status
        location = resp.getheader("Location")
        if status in _REDIRECTS and location is not None:
            return status, location, b""
        declared = resp.getheader("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise _BodyTooLarge(f"Content-Length is {declared}")
        chunks: list[bytes] = []
        total = 0
        while not resp.isclosed():  # it closes itself once Content-Length bytes are read
            ctx.check()
            sock.settimeout(left())
            chunk = resp.read(min(HTTP_CHUNK_BYTES, max_bytes + 1 - total))
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                raise _BodyTooLarge(f"more than {max_bytes} bytes read")
            chunks.append(chunk)
        return status, location, b"".join(chunks)
    finally:
        conn.close()
