"""Tests for phase1.jobs: validation of untrusted jobs, the trusted round trip, the generator."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from phase1.errors import InvalidJobError
from phase1.jobs import (
    JOB_ID_MAX_CHARS,
    PAYLOAD_MAX_BYTES,
    Job,
    JobState,
    generate_test_jobs,
    job_from_dict,
    job_to_dict,
    parse_jobs,
    validate_job,
)

# The seed's data/test-jobs.json, inlined so the test does not depend on the data folder.
SEED_JOBS: list[dict[str, Any]] = [
    {
        "id": "task-001",
        "payload": {"type": "compute", "operation": "fibonacci", "input": 30},
        "attempt": 0,
        "status": "pending",
    },
    {
        "id": "task-002",
        "payload": {
            "type": "io",
            "operation": "write_file",
            "path": "/tmp/test.txt",
            "content": "Hello World",
        },
        "attempt": 0,
        "status": "pending",
    },
    {
        "id": "task-003",
        "payload": {"type": "network", "operation": "http_get", "url": "https://api.github.com"},
        "attempt": 0,
        "status": "pending",
    },
]

GOOD = {"id": "ok-0", "payload": {"n": 1}}


class Opaque:
    """A Python object with no JSON form."""


def job(**fields: Any) -> dict[str, Any]:
    return {"id": "j1", **fields}


# (case name, the bad item, the job id the message must name or None, the field it must name)
ERROR_TABLE: list[tuple[str, Any, str | None, str]] = [
    ("missing id", {"payload": 1}, None, "id"),
    ("non-string id", {"id": 7}, None, "id"),
    ("empty id", {"id": ""}, "", "id"),
    (
        "too long id",
        {"id": "x" * (JOB_ID_MAX_CHARS + 1)},
        "x" * 40 + "...",
        "id",
    ),  # shown truncated
    ("control char in id", {"id": "a\nb"}, "a\nb", "id"),
    ("DEL char in id", {"id": "a\x7fb"}, "a\x7fb", "id"),
    ("unknown field", job(colour="red"), "j1", "colour"),
    ("payload is a set", job(payload={1, 2}), "j1", "payload"),
    ("payload is a Python object", job(payload=Opaque()), "j1", "payload"),
    ("payload is NaN", job(payload=float("nan")), "j1", "payload"),
    ("payload int > 2**64", job(payload={"n": 2**64}), "j1", "payload"),
    ("payload int < -2**63", job(payload=[-(2**63) - 1]), "j1", "payload"),
    ("payload dict with int keys", job(payload={1: "a"}), "j1", "payload"),
    ("oversize payload", job(payload="x" * PAYLOAD_MAX_BYTES), "j1", "payload"),
    ("negative attempt", job(attempt=-1), "j1", "attempt"),
    ("bool attempt", job(attempt=True), "j1", "attempt"),
    ("float attempt", job(attempt=1.0), "j1", "attempt"),
    ("status not pending", job(status="completed"), "j1", "status"),
    ("priority -1", job(priority=-1), "j1", "priority"),
    ("priority 11", job(priority=11), "j1", "priority"),
    ("priority string", job(priority="5"), "j1", "priority"),
    ("priority bool", job(priority=True), "j1", "priority"),
    ("scheduled_at naive ISO", job(scheduled_at="2024-01-01T10:00:00"), "j1", "scheduled_at"),
    ("scheduled_at garbage", job(scheduled_at="tomorrow"), "j1", "scheduled_at"),
    ("scheduled_at negative", job(scheduled_at=-1), "j1", "scheduled_at"),
    ("scheduled_at bool", job(scheduled_at=True), "j1", "scheduled_at"),
    ("scheduled_at inf", job(scheduled_at=float("inf")), "j1", "scheduled_at"),
    ("scheduled_at a list", job(scheduled_at=[1]), "j1", "scheduled_at"),
    ("depends_on a string", job(depends_on="a"), "j1", "depends_on"),
    ("depends_on a dict", job(depends_on={"a": 1}), "j1", "depends_on"),
    ("depends_on non-string element", job(depends_on=["a", 3]), "j1", "depends_on[1]"),
    ("depends_on empty element", job(depends_on=[""]), "j1", "depends_on[0]"),
    ("depends_on itself", job(depends_on=["a", "j1"]), "j1", "depends_on[1]"),
]


@pytest.mark.parametrize(
    ("bad", "job_id", "field"),
    [case[1:] for case in ERROR_TABLE],
    ids=[case[0] for case in ERROR_TABLE],
)
def test_parse_jobs_rejects_bad_job_naming_item_id_and_field(
    bad: Any, job_id: str | None, field: str
) -> None:
    with pytest.raises(InvalidJobError) as info:
        parse_jobs([GOOD, bad], source="jobs.json")
    err = info.value
    msg = str(err)
    assert msg.startswith("jobs.json: item 1: "), msg
    assert err.field == field
    assert f"{field} " in msg or f"{field}=" in msg, msg
    if job_id is not None:
        assert f"job {job_id!r}: " in msg, msg
        assert err.job_id == job_id


@pytest.mark.parametrize(
    ("bad", "job_id", "field"),
    [case[1:] for case in ERROR_TABLE],
    ids=[case[0] for case in ERROR_TABLE],
)
def test_validate_job_rejects_bad_job_with_same_field(
    bad: Any, job_id: str | None, field: str
) -> None:
    with pytest.raises(InvalidJobError) as info:
        validate_job(bad)
    assert info.value.field == field
    assert field in str(info.value)


def test_validate_job_rejects_non_object_naming_position() -> None:
    with pytest.raises(InvalidJobError, match=r"^jobs\.json: item 0: job: job is a list"):
        parse_jobs([["id", "a"]], source="jobs.json")


def test_parse_jobs_rejects_duplicate_id_naming_second_item() -> None:
    with pytest.raises(InvalidJobError) as info:
        parse_jobs([{"id": "a"}, {"id": "b"}, {"id": "a"}], source="jobs.json")
    assert info.value.job_id == "a"
    assert info.value.field == "id"
    assert str(info.value).startswith("jobs.json: item 2: job 'a': id ")
    assert "duplicate" in str(info.value)


@pytest.mark.parametrize("text", [b"42", b'"jobs"', b"null", "true"])
def test_parse_jobs_rejects_top_level_not_an_array(text: bytes | str) -> None:
    with pytest.raises(InvalidJobError, match=r"^jobs\.json: expected a JSON array"):
        parse_jobs(text, source="jobs.json")


@pytest.mark.parametrize("text", [b"[{", "[1,]", b"", b"\xff"])
def test_parse_jobs_rejects_invalid_json_text_naming_source(text: bytes | str) -> None:
    with pytest.raises(InvalidJobError, match=r"^jobs\.json: not valid JSON"):
        parse_jobs(text, source="jobs.json")


def test_parse_jobs_accepts_a_single_object_as_a_batch_of_one() -> None:
    assert parse_jobs(b'{"id": "a"}') == [Job("a")]


# -- payloads and times that would not survive a JSON round trip ------------------------
@pytest.mark.parametrize("payload", [{"x": float("nan")}, [1.0, float("inf")]])
def test_validate_job_rejects_non_finite_float_inside_payload(payload: Any) -> None:
    with pytest.raises(InvalidJobError, match="payload"):
        validate_job(job(payload=payload))


@dataclasses.dataclass
class _Point:
    x: int


@pytest.mark.parametrize("payload", [{"at": dt.datetime(2024, 1, 1)}, _Point(1)])
def test_validate_job_rejects_payload_that_does_not_round_trip_through_json(
    payload: Any,
) -> None:
    with pytest.raises(InvalidJobError, match="payload"):
        validate_job(job(payload=payload))


def test_validate_job_rejects_huge_int_scheduled_at_with_invalid_job_error() -> None:
    with pytest.raises(InvalidJobError, match="scheduled_at"):
        validate_job(job(scheduled_at=10**400))


def test_validate_job_rejects_iso_time_before_1970_like_a_negative_number() -> None:
    with pytest.raises(InvalidJobError, match="scheduled_at"):
        validate_job(job(scheduled_at="1969-12-31T23:59:59Z"))


def test_validate_job_rejects_dependency_that_no_job_id_could_match() -> None:
    with pytest.raises(InvalidJobError, match=r"depends_on\[0\]"):
        validate_job(job(depends_on=["b\nc"]))


# -- valid input ---------------------------------------------------------------------------
def test_parse_jobs_accepts_the_seed_sample_jobs() -> None:
    jobs = parse_jobs(orjson.dumps(SEED_JOBS), source="data/test-jobs.json")
    assert [j.id for j in jobs] == ["task-001", "task-002", "task-003"]
    assert jobs[0].payload == {"type": "compute", "operation": "fibonacci", "input": 30}
    assert jobs[1].payload["operation"] == "write_file"
    assert jobs[2].payload["operation"] == "http_get"
    for j in jobs:
        assert (j.attempt, j.status) == (0, JobState.PENDING.value)
        assert (j.priority, j.scheduled_at, j.depends_on) == (0, None, ())
    assert [job_to_dict(j) for j in jobs] == SEED_JOBS


@pytest.mark.parametrize(
    ("text", "epoch_s"),
    [
        ("2024-01-01T10:00:00Z", 1704103200.0),
        ("2024-01-01T10:00:00+00:00", 1704103200.0),
        ("2024-01-01T18:00:00+08:00", 1704103200.0),
        ("2024-01-01T10:00:00.250Z", 1704103200.25),
    ],
)
def test_validate_job_reads_iso_times_with_zone_as_epoch_seconds(text: str, epoch_s: float) -> None:
    assert validate_job(job(scheduled_at=text)).scheduled_at == epoch_s


def test_validate_job_accepts_numeric_scheduled_at_as_float() -> None:
    scheduled = validate_job(job(scheduled_at=5)).scheduled_at
    assert scheduled == 5.0 and isinstance(scheduled, float)
    assert validate_job(job(scheduled_at=None)).scheduled_at is None


def test_validate_job_dedups_repeated_dependencies_keeping_first_order() -> None:
    assert validate_job(job(depends_on=["b", "a", "b", "a"])).depends_on == ("b", "a")
    assert validate_job(job(depends_on=None)).depends_on == ()
    assert validate_job(job(depends_on=("x",))).depends_on == ("x",)


def test_validate_job_accepts_priority_bounds_and_an_id_at_max_length() -> None:
    assert validate_job(job(priority=0)).priority == 0
    assert validate_job(job(priority=10)).priority == 10
    assert validate_job({"id": "x" * JOB_ID_MAX_CHARS}).id == "x" * JOB_ID_MAX_CHARS


# -- the trusted round trip ------------------------------------------------------------------
json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_value = st.recursive(
    json_leaf,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=4), kids, max_size=4)
    ),
    max_leaves=12,
)
job_ids = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF, exclude_characters="\x7f"),
    min_size=1,
    max_size=12,
)


@st.composite
def jobs(draw: st.DrawFn) -> Job:
    job_id = draw(job_ids)
    deps = draw(st.lists(job_ids.filter(lambda d: d != job_id), max_size=3, unique=True))
    return validate_job(
        {
            "id": job_id,
            "payload": draw(json_value),
            "attempt": draw(st.integers(0, 5)),
            "priority": draw(st.integers(0, 10)),
            "scheduled_at": draw(
                st.none() | st.floats(min_value=0, max_value=2e9, allow_nan=False)
            ),
            "depends_on": deps,
        }
    )


@given(jobs())
def test_job_from_dict_inverts_job_to_dict(j: Job) -> None:
    assert job_from_dict(job_to_dict(j)) == j


@given(jobs())
def test_job_survives_a_json_round_trip_like_the_wal(j: Job) -> None:
    assert job_from_dict(orjson.loads(orjson.dumps(job_to_dict(j)))) == j


def test_job_to_dict_writes_seed_fields_first_and_extras_only_when_set() -> None:
    assert list(job_to_dict(Job("a"))) == ["id", "payload", "attempt", "status"]
    full = Job("a", priority=3, scheduled_at=1.5, depends_on=("b",))
    assert job_to_dict(full)["depends_on"] == ["b"]
    assert list(job_to_dict(full))[4:] == ["priority", "scheduled_at", "depends_on"]


# -- the seed's generator ----------------------------------------------------------------------
def test_generate_test_jobs_is_deterministic_for_a_seed() -> None:
    first = generate_test_jobs(50, random.Random(42))
    again = generate_test_jobs(50, random.Random(42))
    assert first == again
    assert [j.id for j in first[:3]] == ["task-0000", "task-0001", "task-0002"]
    assert first[-1].id == "task-0049"
    assert [j.payload["index"] for j in first] == list(range(50))
    assert all(0 <= j.payload["value"] < 1000 for j in first)
    assert all(j.attempt == 0 and j.status == "pending" for j in first)


def test_generate_test_jobs_differs_for_another_seed() -> None:
    first = generate_test_jobs(50, random.Random(42))
    other = generate_test_jobs(50, random.Random(43))
    assert [j.id for j in first] == [j.id for j in other]
    assert [j.payload for j in first] != [j.payload for j in other]


def test_generate_test_jobs_start_offsets_ids() -> None:
    assert [j.id for j in generate_test_jobs(2, random.Random(1), start=10)] == [
        "task-0010",
        "task-0011",
    ]


def test_generated_jobs_pass_validation() -> None:
    for j in generate_test_jobs(20, random.Random(7)):
        assert validate_job(job_to_dict(j)) == j
