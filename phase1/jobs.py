"""Jobs: the unit of work, its states, and validation of untrusted job input.

Owns: ``Job`` (the seed's id / payload / attempt / status plus the three challenges:
priority 0-10, ``scheduled_at``, ``depends_on``), ``JobState``, turning untrusted dicts or
JSON into jobs (``validate_job``, ``parse_jobs``), the trusted fast path used by the WAL and
snapshots (``job_to_dict`` / ``job_from_dict``), and the seed's test-job generator.

Must not know: files, clocks, threads, where randomness comes from (the generator takes a
``random.Random``-like object from its caller).

Invariants kept: a ``Job`` that exists passed validation; ``job_from_dict(job_to_dict(j))
== j``; every ``InvalidJobError`` names the job (or its position) and the field.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

import orjson

from phase1.errors import InvalidJobError

__all__ = [
    "Job",
    "JobState",
    "PRIORITY_MIN",
    "PRIORITY_MAX",
    "JOB_ID_MAX_CHARS",
    "PAYLOAD_MAX_BYTES",
    "validate_job",
    "parse_jobs",
    "job_to_dict",
    "job_from_dict",
    "generate_test_jobs",
    "generate_mixed_jobs",
]

PRIORITY_MIN = 0
PRIORITY_MAX = 10
JOB_ID_MAX_CHARS = 256
DEPENDS_MAX = 1_000
PAYLOAD_MAX_BYTES = 1 << 20  # a queue is not a blob store: 1 MiB per payload
_TIME_MAX_S = 253_402_300_799.0  # 9999-12-31T23:59:59Z
_PAYLOAD_MAX_DEPTH = 64
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what orjson (and most JSON peers) keep exactly
_FIELDS = frozenset(
    {"id", "payload", "attempt", "status", "priority", "scheduled_at", "depends_on"}
)


class JobState(StrEnum):
    """Where a job is.  A job is in exactly one state (``QueueCore.check`` verifies it).

    ``FAILED`` is transient: an attempt ended (FAIL or TIMEOUT) and the RETRY-or-DEAD
    decision is in the same step.  It is seen only if a crash tears the WAL between the
    two records; recovery settles it.
    """

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    FAILED = "failed"
    COMPLETED = "completed"
    DEAD = "dead"


class Job(NamedTuple):
    """A job as submitted (``attempt`` and ``status`` as of the moment it was read).

    ``scheduled_at`` is seconds on the queue's clock (epoch seconds in the runtime,
    virtual seconds in the simulator); ``None`` means "as soon as possible".  Immutable: a
    changed copy is ``job._replace(attempt=2)``.  A ``NamedTuple`` rather than a frozen
    dataclass because it is built about five times faster (recovery and snapshots build a
    million of them) for the same memory.
    """

    id: str
    payload: Any = None
    attempt: int = 0
    status: str = JobState.PENDING.value
    priority: int = 0
    scheduled_at: float | None = None
    depends_on: tuple[str, ...] = ()


_new = tuple.__new__


class _Rng(Protocol):
    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int: ...


def _bad(where: str, job_id: str | None, field: str, what: str) -> InvalidJobError:
    who = f"job {job_id!r}" if job_id is not None else "job"
    return InvalidJobError(f"{where}{who}: {field} {what}", job_id=job_id, field=field)


def _parse_time(value: Any, where: str, job_id: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise _bad(where, job_id, "scheduled_at", f"={value!r} is not a timestamp")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
        shown = value if seconds != math.inf or isinstance(value, float) else "a huge number"
        return _in_range(seconds, shown, where, job_id)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise _bad(
                where,
                job_id,
                "scheduled_at",
                f"={value!r} is not an ISO 8601 time like '2024-01-01T10:00:00Z'",
            ) from None
        if parsed.tzinfo is None:
            raise _bad(where, job_id, "scheduled_at", f"={value!r} has no time zone (add 'Z')")
        return _in_range(parsed.timestamp(), value, where, job_id)
    raise _bad(where, job_id, "scheduled_at", f"has type {type(value).__name__}")


def _in_range(seconds: float, shown: Any, where: str, job_id: str) -> float:
    if not math.isfinite(seconds) or not 0 <= seconds <= _TIME_MAX_S:
        raise _bad(where, job_id, "scheduled_at", f"={shown!r} is not a time from 1970 to 9999")
    return seconds


def _id_problem(text: str) -> str:
    """Why ``text`` cannot be a job id ("" when it can)."""
    if not text:
        return "is empty"
    if len(text) > JOB_ID_MAX_CHARS:
        return f"is longer than {JOB_ID_MAX_CHARS}"
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return "contains control characters"
    return ""


def _json_problem(value: Any) -> str:
    """Why ``value`` would not survive a JSON round trip unchanged ("" when it would).

    Stricter than ``orjson.dumps``, which quietly writes NaN as null and serialises
    datetimes and dataclasses: a payload must come back from the WAL exactly as given.
    """
    stack: list[tuple[Any, str, int]] = [(value, "payload", 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > _PAYLOAD_MAX_DEPTH:
            return f"{path} nests deeper than {_PAYLOAD_MAX_DEPTH} levels"
        if item is None or isinstance(item, str | bool):
            continue
        if isinstance(item, int):
            if not _INT_MIN <= item <= _INT_MAX:
                return f"{path} is an integer outside the 64-bit range"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{path} is {item!r}, which JSON cannot hold"
        elif isinstance(item, dict):
            for key, sub in item.items():
                if not isinstance(key, str):
                    return f"{path} has a non-string key {key!r}"
                stack.append((sub, f"{path}.{key}", depth + 1))
        elif isinstance(item, list):
            stack.extend((sub, f"{path}[{i}]", depth + 1) for i, sub in enumerate(item))
        else:
            return f"{path} is a {type(item).__name__}"
    return ""


def validate_job(obj: Any, *, where: str = "") -> Job:
    """Turn one untrusted job (a dict from JSON) into a ``Job`` or raise ``InvalidJobError``.

    ``where`` prefixes the message (e.g. ``"data/jobs.json: item 3: "``).

    >>> validate_job({"id": "a", "payload": {"n": 1}, "priority": 5}).priority
    5
    >>> validate_job({"id": ""})
    Traceback (most recent call last):
    ...
    phase1.errors.InvalidJobError: job '': id is empty
    """
    if not isinstance(obj, Mapping):
        raise _bad(where, None, "job", f"is a {type(obj).__name__}, not an object")
    if "id" not in obj:
        raise _bad(where, None, "id", "is missing")
    job_id = obj["id"]
    if not isinstance(job_id, str):
        raise _bad(where, None, "id", f"={job_id!r} is not a string")
    problem = _id_problem(job_id)
    if problem:
        shown = job_id if len(job_id) <= JOB_ID_MAX_CHARS else job_id[:40] + "..."
        raise _bad(where, shown, "id", problem)
    unknown = sorted(set(obj) - _FIELDS)
    if unknown:
        raise _bad(where, job_id, unknown[0], f"is not a job field (known: {sorted(_FIELDS)})")

    payload = obj.get("payload")
    problem = _json_problem(payload)
    if problem:
        raise _bad(where, job_id, "payload", f"is not JSON: {problem}")
    encoded = orjson.dumps(payload)
    if len(encoded) > PAYLOAD_MAX_BYTES:
        raise _bad(where, job_id, "payload", f"is {len(encoded)} bytes (max {PAYLOAD_MAX_BYTES})")

    attempt = obj.get("attempt", 0)
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise _bad(where, job_id, "attempt", f"={attempt!r} is not an integer >= 0")

    status = obj.get("status", JobState.PENDING.value)
    if status != JobState.PENDING.value:
        raise _bad(where, job_id, "status", f"={status!r}: a new job must be 'pending'")

    priority = obj.get("priority", 0)
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not PRIORITY_MIN <= priority <= PRIORITY_MAX
    ):
        raise _bad(
            where,
            job_id,
            "priority",
            f"={priority!r} is not an integer from {PRIORITY_MIN} to {PRIORITY_MAX}",
        )

    scheduled_at = _parse_time(obj.get("scheduled_at"), where, job_id)

    deps_raw = obj.get("depends_on", [])
    if deps_raw is None:
        deps_raw = []
    if not isinstance(deps_raw, list | tuple):
        raise _bad(where, job_id, "depends_on", "must be a list of job ids")
    if len(deps_raw) > DEPENDS_MAX:
        raise _bad(where, job_id, "depends_on", f"has more than {DEPENDS_MAX} ids")
    deps: list[str] = []
    for i, dep in enumerate(deps_raw):
        if not isinstance(dep, str) or _id_problem(dep):
            raise _bad(where, job_id, f"depends_on[{i}]", f"={dep!r} is not a job id")
        if dep == job_id:
            raise _bad(where, job_id, f"depends_on[{i}]", "names the job itself")
        if dep not in deps:
            deps.append(dep)

    return Job(
        id=job_id,
        payload=payload,
        attempt=attempt,
        priority=priority,
        scheduled_at=scheduled_at,
        depends_on=tuple(deps),
    )


def parse_jobs(data: bytes | str | Sequence[Any], *, source: str = "<jobs>") -> list[Job]:
    """Validate a JSON array of jobs (bytes, text or already decoded); rejects duplicates.

    Nothing is partially accepted: the first bad job raises and no job is returned.
    """
    if isinstance(data, bytes | str):
        try:
            decoded = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise InvalidJobError(f"{source}: not valid JSON: {exc}") from None
    else:
        decoded = data
    if isinstance(decoded, Mapping):
        decoded = [decoded]
    if not isinstance(decoded, list | tuple):
        raise InvalidJobError(f"{source}: expected a JSON array of jobs")
    jobs: list[Job] = []
    seen: set[str] = set()
    for index, item in enumerate(decoded):
        job = validate_job(item, where=f"{source}: item {index}: ")
        if job.id in seen:
            raise InvalidJobError(
                f"{source}: item {index}: job {job.id!r}: id is a duplicate in this batch",
                job_id=job.id,
                field="id",
            )
        seen.add(job.id)
        jobs.append(job)
    return jobs


def job_to_dict(job: Job) -> dict[str, Any]:
    """The on-disk shape: the seed's four fields, then ours only when not default."""
    out: dict[str, Any] = {
        "id": job.id,
        "payload": job.payload,
        "attempt": job.attempt,
        "status": job.status,
    }
    if job.priority:
        out["priority"] = job.priority
    if job.scheduled_at is not None:
        out["scheduled_at"] = job.scheduled_at
    if job.depends_on:
        out["depends_on"] = list(job.depends_on)
    return out


def job_from_dict(d: Mapping[str, Any]) -> Job:
    """Trusted fast path for records phase1 wrote itself (their checksum already held)."""
    deps = d.get("depends_on")
    # tuple.__new__ skips the NamedTuple's Python-level __new__ (keyword calls cost ~5x).
    return _new(
        Job,
        (
            d["id"],
            d.get("payload"),
            d.get("attempt", 0),
            d.get("status", "pending"),
            d.get("priority", 0),
            d.get("scheduled_at"),
            tuple(deps) if deps else (),
        ),
    )


def generate_test_jobs(count: int, rng: _Rng, *, start: int = 0) -> list[Job]:
    """The seed's ``generateTestJobs``: ids ``task-0000``..., payload ``{index, value}``.

    ``rng`` is an explicit ``random.Random(seed)``: the same seed gives the same jobs.
    """
    return [
        Job(id=f"task-{i:04d}", payload={"index": i, "value": rng.randrange(1000)})
        for i in range(start, start + count)
    ]


class _Draws(Protocol):
    def random(self) -> float: ...
    def uniform(self, a: float, b: float) -> float: ...


def generate_mixed_jobs(count: int, rng: _Draws) -> list[dict[str, Any]]:
    """Job dicts of mixed runtime kinds for crash tests and benchmarks: ~45% ``noop``,
    ~40% ``sleep`` 5-20 ms, ~15% ``fail`` once, and every 80th (from 7) failing always
    (dead at ``max_retry``).  Deterministic for a seeded ``rng``."""
    jobs = []
    for i in range(count):
        roll = rng.random()
        payload: dict[str, Any]
        if i % 80 == 7:
            payload = {"kind": "fail"}  # always fails: dead at max_retry
        elif roll < 0.45:
            payload = {"kind": "noop"}
        elif roll < 0.85:
            payload = {"kind": "sleep", "seconds": round(rng.uniform(0.005, 0.020), 4)}
        else:
            payload = {"kind": "fail", "times": 1}
        jobs.append({"id": f"task-{i:04d}", "payload": payload})
    return jobs


def ids(jobs: Iterable[Job]) -> list[str]:
    """The ids of ``jobs`` in order (a small notebook verb)."""
    return [job.id for job in jobs]
