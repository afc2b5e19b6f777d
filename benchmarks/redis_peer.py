"""redis as a durable peer: ``redis-server --appendonly yes --appendfsync always``.

Started like beanstalkd (``benchmarks.e2e``): on a free port of 127.0.0.1, its data folder a
fresh ``temp_dir`` (the repo's disk, never tmpfs), killed and removed afterwards; skipped
with a note when the binary is absent (never installed by this harness).  One synchronous
client speaks RESP over a socket (no client library):

* ``peer.redis_lpush``: one ``LPUSH`` of a ~100-byte job (a ``Job`` as JSON) per
  call: redis writes and fsyncs its append-only file before it replies;
* ``peer.redis_reliable_e2e``: the reliable-queue pattern per job: ``LPUSH`` (enqueue),
  ``LMOVE`` to a processing list (take), ``LREM`` from it (ack): three durable writes.

And the peer of ``durable.threads16_leader``: ``peer.redis_lpush_threads16``, 16 producer
threads with a connection each, one ``LPUSH`` per call.  redis writes every command of
one event-loop pass to its AOF and fdatasyncs once before it replies to any of them (its
group commit), so this is redis at its strongest for one-job calls.

``PHASE1_BENCH_REDIS_SERVER`` names another binary (the tests point it at a missing path
to check the skipped rows).
"""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import orjson

from benchmarks._harness import Context, run_threads, temp_dir
from phase1.jobs import Job

DEFAULT_REDIS_SERVER = "/usr/bin/redis-server"


def redis_server_path() -> str:
    return os.environ.get("PHASE1_BENCH_REDIS_SERVER", DEFAULT_REDIS_SERVER)


def job_body(i: int) -> bytes:
    """A job as redis would queue it: a ``Job``'s id, payload, attempt, priority and
    scheduled_at as JSON (~100 bytes)."""
    job = Job(id=f"task-{i:04d}", payload={"index": i, "value": (i * 7919) % 1000})
    fields = ("id", "payload", "attempt", "priority", "scheduled_at")
    return orjson.dumps({k: getattr(job, k) for k in fields})


class RespError(RuntimeError):
    pass


class Resp:
    """A minimal synchronous RESP2 client: one command, one reply."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")

    def call(self, *args: bytes | str | int) -> object:
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(parts))
        return self._reply()

    def _reply(self) -> object:
        line = self.file.readline()
        if not line.endswith(b"\r\n"):
            raise RespError(f"redis closed the connection ({line!r})")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RespError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.file.read(size + 2)[:-2]
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._reply() for _ in range(count)]
        raise RespError(f"unknown RESP reply {line!r}")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    client: Resp
    version: str
    folder: str
    pid: int
    port: int


@contextmanager
def redis_server(prefix: str) -> Iterator[RedisServer]:
    """A fresh ``redis-server`` (AOF, fsync every write, no RDB snapshots) in a temp folder,
    with a connected client; the server is stopped (killed if it lingers) and the folder
    removed whatever happens."""
    binary = redis_server_path()
    with temp_dir(prefix) as d:
        port = _free_port()
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                d,
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                os.path.join(d, "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = None
        try:
            for _ in range(500):
                if proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {proc.returncode}")
                try:
                    client = Resp(port)
                    if client.call("PING") == b"PONG":
                        break
                    raise RespError("PING: no PONG yet")
                except (OSError, RespError):
                    if client is not None:
                        client.close()
                    client = None
                time.sleep(0.01)
            if client is None:
                raise RuntimeError("redis-server did not accept connections")
            info = client.call("INFO", "server")
            assert isinstance(info, bytes)
            version = next(
                (
                    ln.split(b":", 1)[1].decode()
                    for ln in info.splitlines()
                    if ln.startswith(b"redis_version:")
                ),
                "?",
            )
            if client.call("CONFIG", "GET", "appendfsync") != [b"appendfsync", b"always"]:
                raise RuntimeError("redis-server is not running with appendfsync always")
            yield RedisServer(client, version, d, proc.pid, port)
        finally:
            if client is not None:
                client.close()
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _measure(ctx: Context, prefix: str, e2e: bool) -> dict[str, float | str]:
    window = ctx.seconds(3.0)
    with redis_server(prefix) as server:
        call, version = server.client.call, server.version
        for i in range(20):  # warm-up (the AOF file, the connection)
            call("LPUSH", "warm", job_body(i))
        call("DEL", "warm")
        gc.collect()
        n = 0
        started = time.perf_counter()
        deadline = started + window
        while True:
            body = job_body(n)
            if not isinstance(call("LPUSH", "q", body), int):  # the list's new length
                raise RespError("LPUSH: no length in the reply")
            if e2e:
                taken = call("LMOVE", "q", "processing", "RIGHT", "LEFT")
                if taken != body:
                    raise RespError(f"LMOVE returned {taken!r}, expected {body!r}")
                if call("LREM", "processing", 1, taken) != 1:
                    raise RespError("LREM did not remove the taken job")
            n += 1
            if n % 8 == 0 and time.perf_counter() >= deadline:
                break
        elapsed = time.perf_counter() - started
        left = call("LLEN", "q")
        if left != (0 if e2e else n):
            raise RespError(f"LLEN q = {left!r} after {n} jobs")
    return {"per_s": n / elapsed, "jobs": n, "version": version, "bytes": len(job_body(n))}


def _measure_threads(ctx: Context, prefix: str, threads: int) -> dict[str, float | str]:
    """``threads`` producers, each with its own connection, one ``LPUSH`` per call."""
    with redis_server(prefix) as server:
        clients: list[Resp] = []
        try:
            clients.extend(Resp(server.port) for _ in range(threads))
            for t, client in enumerate(clients):  # warm-up: connections, the AOF file
                client.call("LPUSH", "warm", job_body(t))
            server.client.call("DEL", "warm")

            def produce(t: int, deadline: float) -> int:
                call, n = clients[t].call, 0
                while time.perf_counter() < deadline:
                    if not isinstance(call("LPUSH", "q", job_body(n)), int):
                        raise RespError("LPUSH: no length in the reply")
                    n += 1
                return n

            total, elapsed, cpu_s = run_threads(produce, ctx.seconds(3.0), threads)
            left = server.client.call("LLEN", "q")
            if left != total:
                raise RespError(f"LLEN q = {left!r} after {total} LPUSHes")
        finally:
            for client in clients:
                client.close()
    return {
        "per_s": total / elapsed,
        "jobs": total,
        "version": server.version,
        "client_cpu_us_per_job": 1e6 * cpu_s / max(total, 1),
    }


def redis_lpush_threads(ctx: Context, threads: int) -> dict[str, float | str] | None:
    """``threads`` synchronous clients, one ``LPUSH`` per job each: jobs/s (``None``: not
    installed)."""
    if not os.path.exists(redis_server_path()):
        return None
    result: dict[str, float | str] = ctx.shared(
        f"peer.redis_lpush_threads{threads}",
        lambda: _measure_threads(ctx, f"redis-lpush{threads}", threads),
    )
    return result


def redis_lpush(ctx: Context) -> dict[str, float | str] | None:
    """One synchronous client, one ``LPUSH`` per job: jobs/s (``None``: not installed)."""
    if not os.path.exists(redis_server_path()):
        return None
    result: dict[str, float | str] = ctx.shared(
        "peer.redis_lpush", lambda: _measure(ctx, "redis-lpush", e2e=False)
    )
    return result


def redis_reliable_e2e(ctx: Context) -> dict[str, float | str] | None:
    """One synchronous client, LPUSH + LMOVE + LREM per job: jobs/s (``None``: absent)."""
    if not os.path.exists(redis_server_path()):
        return None
    result: dict[str, float | str] = ctx.shared(
        "peer.redis_e2e", lambda: _measure(ctx, "redis-e2e", e2e=True)
    )
    return result
