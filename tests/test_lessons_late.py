"""Helpers of lessons 10 and 13: metrics_view, framing and their exercise checks."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phase1.core import RECORD_TYPES, Record
from phase1.jobs import Job
from phase1.lessons import exercises_late as ex
from phase1.lessons.framing import (
    HEADER_BYTES,
    TYPE_CODES,
    FrameCorruption,
    FrameError,
    decode_frame,
    encode_frame,
    encode_frames,
    frame_layout,
    hexdump,
    read_frames,
    sample_records,
    size_table,
    speed_table,
)
from phase1.lessons.metrics_view import (
    _extrapolated_rate,
    dashboard_panels,
    draw_dashboard,
    duration_buckets,
    exposition_excerpt,
    histogram_quantile,
    promql,
    promql_at,
    run_virtual,
    samples_frame,
)
from phase1.runtime.dashboard import SEED_PROMQL
from phase1.runtime.metrics import QueueMetrics
from phase1.wal import decode_line, encode_record

T0_MS = 1_704_103_200_000


# == framing: round trip ===================================================================
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
ids = st.text(min_size=1, max_size=20)


@st.composite
def records(draw: st.DrawFn) -> Record:
    rtype = draw(st.sampled_from(RECORD_TYPES))
    job_id = draw(ids)
    job = None
    if rtype == "ENQUEUE":
        job = Job(
            id=job_id,
            payload=draw(json_values),
            attempt=draw(st.integers(0, 5)),
            priority=draw(st.integers(0, 10)),
            scheduled_at=draw(st.none() | st.floats(0, 4e9, allow_nan=False)),
            depends_on=tuple(draw(st.lists(ids, max_size=3))),
        )
    return Record(
        seq=draw(st.integers(1, 2**63)),
        type=rtype,
        job_id=job_id,
        timestamp_ms=draw(st.integers(0, 253_402_300_799_999)),
        attempt=draw(st.integers(0, 65_535)),
        worker_id=draw(st.none() | st.integers(-(2**31), 2**31 - 1)),
        deadline_ms=draw(st.none() | st.integers(0, 2**62)),
        reason=draw(st.none() | st.text(max_size=40)),
        job=job,
    )


@given(records())
def test_frame_round_trip_equals_the_record_and_the_json_line(rec: Record) -> None:
    frame = encode_frame(rec)
    back, end = decode_frame(frame)
    assert end == len(frame)
    assert back == rec and repr(back) == repr(rec)
    assert decode_line(encode_record(rec)[:-1]) == back  # both framings carry the same record


@given(st.lists(records(), min_size=1, max_size=6))
def test_read_frames_reads_back_a_stream(recs: list[Record]) -> None:
    read = read_frames(encode_frames(recs))
    assert read.records == recs and read.torn is None


def test_type_codes_cover_every_record_type() -> None:
    assert set(TYPE_CODES) == set(RECORD_TYPES)
    assert len(set(TYPE_CODES.values())) == len(TYPE_CODES)


def test_encode_frame_refuses_what_the_wal_refuses_and_what_does_not_fit() -> None:
    bad = [
        Record(1, "ENQUEUE", "a", T0_MS),  # no job
        Record(1, "ACK", "a", T0_MS, job=Job("a")),  # job on a non-ENQUEUE
        Record(1, "ENQUEUE", "a", T0_MS, job=Job("b")),  # job id differs
        Record(1, "NOPE", "a", T0_MS),
    ]
    for rec in bad:
        with pytest.raises(ValueError):
            encode_record(rec)
        with pytest.raises(ValueError):
            encode_frame(rec)
    with pytest.raises(ValueError, match="attempt"):
        encode_frame(Record(1, "ACK", "a", T0_MS, attempt=70_000))
    with pytest.raises(ValueError, match="worker_id"):
        encode_frame(Record(1, "DISPATCH", "a", T0_MS, worker_id=2**31))


def test_a_dispatch_frame_is_the_header_plus_its_job_id() -> None:
    rec = Record(
        7, "DISPATCH", "task-0001", T0_MS, attempt=1, worker_id=2, deadline_ms=T0_MS + 3000
    )
    assert len(encode_frame(rec)) == HEADER_BYTES + len("task-0001") == 51
    layout = frame_layout(rec)
    assert list(layout["offset"])[:3] == [0, 4, 8]
    assert layout["bytes"].sum() == 51


def test_hexdump_is_xxd_like() -> None:
    text = hexdump(b"ab\x00" * 7, width=16)
    assert text.splitlines()[0].startswith("00000000  61 62 00")
    assert text.splitlines()[1].startswith("00000010")


# == framing: torn tails vs corruption =====================================================
@pytest.fixture(scope="module")
def five() -> tuple[list[Record], bytes, list[int]]:
    recs = sample_records(20)[:5]
    blob = encode_frames(recs)
    bounds = [0]
    for r in recs:
        bounds.append(bounds[-1] + len(encode_frame(r)))
    return recs, blob, bounds


def test_every_cut_is_a_torn_tail_that_keeps_every_whole_frame(five) -> None:
    recs, blob, bounds = five
    for cut in range(len(blob) + 1):
        read = read_frames(blob[:cut])
        whole = sum(1 for b in bounds[1:] if b <= cut)
        assert read.records == recs[:whole]
        if cut in bounds:
            assert read.torn is None
        else:
            assert read.torn is not None and read.torn.offset == bounds[whole]
            assert read.torn.dropped_bytes == cut - bounds[whole]


def test_zero_filled_tail_after_power_loss_is_torn(five) -> None:
    recs, blob, _ = five
    read = read_frames(blob + b"\x00" * 50)
    assert read.records == recs and read.torn is not None and read.torn.offset == len(blob)


@pytest.mark.parametrize("where", ["length", "crc", "body"])
def test_damage_with_a_valid_frame_after_it_is_corruption(five, where: str) -> None:
    recs, blob, bounds = five
    damaged = bytearray(blob)
    at = {"length": bounds[2] + 1, "crc": bounds[2] + 5, "body": bounds[2] + 20}[where]
    damaged[at] ^= 0x01
    with pytest.raises(FrameCorruption) as info:
        read_frames(bytes(damaged))
    assert info.value.offset == bounds[2] and info.value.next_valid == bounds[3]
    naive = read_frames(bytes(damaged), resync=False)  # the mistake: 2 frames lost silently
    assert naive.records == recs[:2] and naive.torn is not None


def test_damage_in_the_last_frame_is_a_torn_tail(five) -> None:
    recs, blob, bounds = five
    damaged = bytearray(blob)
    damaged[bounds[4] + 20] ^= 0x01
    read = read_frames(bytes(damaged))
    assert read.records == recs[:4] and read.torn is not None
    assert "checksum" in read.torn.reason


def test_the_crc_covers_the_length_field(five) -> None:
    _, blob, bounds = five
    frame = bytearray(blob[: bounds[1]])
    frame[0] ^= 0x01  # one byte shorter: still inside the buffer
    with pytest.raises(FrameError):
        decode_frame(bytes(frame))


# == framing: measurements =================================================================
def test_sample_records_are_deterministic_and_cover_every_type() -> None:
    a, b = sample_records(200, seed=7), sample_records(200, seed=7)
    assert a == b
    assert {r.type for r in sample_records()} == set(RECORD_TYPES)
    assert [r.seq for r in a] == list(range(1, len(a) + 1))


def test_size_table_counts_bytes_of_both_framings() -> None:
    recs = sample_records(50)
    table = size_table(recs).set_index("type")
    total_json = sum(len(encode_record(r)) for r in recs)
    assert table.loc["all", "records"] == len(recs)
    assert table.loc["all", "json_bytes_per_record"] == round(total_json / len(recs), 1)
    assert table.loc["DISPATCH", "binary_bytes_per_record"] == HEADER_BYTES + len("task-0000")
    assert (table["json_over_binary"] > 1).all()


def test_speed_table_has_both_formats() -> None:
    table = speed_table(sample_records(20), repeat=1)
    assert list(table["format"]) == ["JSON lines", "binary frames"]
    assert (table[["encode_records_per_s", "decode_records_per_s"]] > 0).all().all()


# == metrics_view: histogram_quantile and rate =============================================
# Prometheus's own promql/testdata/histograms.test: buckets 5, 7, 11, 12 at le 0.1, 0.2, 1, +Inf.
PROM_BUCKETS = [(0.1, 5.0), (0.2, 7.0), (1.0, 11.0), (math.inf, 12.0)]


@pytest.mark.parametrize("q, expected", [(0.2, 0.048), (0.5, 0.15), (0.8, 0.72), (0.0, 0.0)])
def test_histogram_quantile_matches_prometheus(q: float, expected: float) -> None:
    assert histogram_quantile(q, PROM_BUCKETS) == pytest.approx(expected)


def test_histogram_quantile_edge_cases() -> None:
    assert histogram_quantile(0.99, PROM_BUCKETS) == 1.0  # rank in +Inf: largest finite le
    assert math.isnan(histogram_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]))
    assert math.isnan(histogram_quantile(0.5, [(0.1, 1.0), (1.0, 2.0)]))  # no +Inf bucket
    assert math.isnan(histogram_quantile(0.5, [(math.inf, 3.0)]))
    assert histogram_quantile(1.5, PROM_BUCKETS) == math.inf
    assert histogram_quantile(-1, PROM_BUCKETS) == -math.inf
    shuffled = list(reversed(PROM_BUCKETS))
    assert histogram_quantile(0.5, shuffled) == pytest.approx(0.15)
    bumpy = [(0.1, 5.0), (0.2, 4.9), (1.0, 11.0), (math.inf, 12.0)]  # rate() float noise
    assert histogram_quantile(0.3, bumpy) == pytest.approx(0.1 * 3.6 / 5.0)


def test_histogram_quantile_of_the_exercise() -> None:
    assert histogram_quantile(0.95, ex.EXERCISE_10_BUCKETS) == pytest.approx(0.8125)


def test_rate_of_a_steady_counter_is_its_slope() -> None:
    ts = [float(t) for t in range(65, 125, 5)]  # window (60, 120], aligned scrapes
    vs = [3.0 * t for t in ts]
    assert _extrapolated_rate(ts, vs, 60.0, 120.0) == pytest.approx(3.0)
    assert math.isnan(_extrapolated_rate([120.0], [1.0], 60.0, 120.0))


def test_rate_does_not_extrapolate_a_counter_below_zero() -> None:
    # counter started at 0 at t=100; window (60, 120]: extrapolation stops at the zero
    assert _extrapolated_rate(
        [100.0, 110.0, 120.0], [0.0, 10.0, 20.0], 60.0, 120.0
    ) == pytest.approx(20.0 / 60.0)


# == metrics_view: the run, the evaluator, the pictures ====================================
@pytest.fixture(scope="module")
def short_run():
    return run_virtual(42, duration_s=90.0, burst_s=(30.0, 60.0))


def test_run_virtual_is_deterministic(short_run) -> None:
    again = run_virtual(42, duration_s=90.0, burst_s=(30.0, 60.0))
    assert again.scrapes.equals(short_run.scrapes)
    assert again.durations_s == short_run.durations_s


def test_run_virtual_counters_agree_with_its_facts(short_run) -> None:
    m = short_run.metrics
    assert m.value("queue_jobs_completed_total") == len(short_run.durations_s)
    assert m.value("queue_job_duration_seconds_count") == len(short_run.durations_s)
    assert m.value("queue_job_duration_seconds_sum") == pytest.approx(sum(short_run.durations_s))
    assert set(short_run.scrapes["t_s"]) == {float(t) for t in range(0, 91, 5)}


def test_samples_frame_is_sorted_and_has_no_created_stamps() -> None:
    m = QueueMetrics()
    m.on_dispatch(2)
    frame = samples_frame(m)
    assert not frame["sample"].str.endswith("_created").any()
    assert list(frame.itertuples(index=False)) == sorted(frame.itertuples(index=False))
    only = samples_frame(m, ["queue_jobs_dispatched_total"])
    assert list(only["value"]) == [2.0]
    text = exposition_excerpt(m, "queue_jobs_dispatched_total")
    assert text.splitlines()[-1] == "queue_jobs_dispatched_total 2.0"
    assert "_created" not in text
    m.on_retry("fail")
    retried = exposition_excerpt(m, "queue_jobs_retried_total").splitlines()
    assert retried[-1] == "queue_jobs_retried_total 1.0" and "by_cause" not in "".join(retried)
    assert len(exposition_excerpt(m, "queue_job_duration_seconds").splitlines()) == 2 + 15 + 2


def test_promql_throughput_and_p95_from_our_samples(short_run) -> None:
    end = 90.0
    p95 = promql_at(short_run.scrapes, SEED_PROMQL["latency_p95"], end)
    # a 5m window covers the whole 90 s run, so it is the quantile of the final buckets
    assert p95["{}"] == pytest.approx(
        histogram_quantile(0.95, duration_buckets(short_run.metrics)), rel=1e-3
    )
    thr = promql(short_run.scrapes, SEED_PROMQL["throughput"])
    assert list(thr.columns) == ["{}"] and thr["{}"].max() > 0
    ratio = promql_at(short_run.scrapes, SEED_PROMQL["retry_ratio"], end)
    assert list(ratio) == ["{}"] and 0 < ratio["{}"] < 1  # the seed's text: one series
    # a label on one side only breaks one-to-one matching; summing it away mends it
    by_cause = "rate(queue_jobs_retried_by_cause_total[1m])"
    dispatched = "rate(queue_jobs_dispatched_total[1m])"
    assert promql(short_run.scrapes, f"{by_cause} / {dispatched}").empty
    summed = promql_at(short_run.scrapes, f"sum without (cause) ({by_cause}) / {dispatched}", end)
    assert summed == pytest.approx(ratio)
    depth = promql_at(short_run.scrapes, "queue_depth_gauge", end)
    assert depth['{state="completed"}'] == short_run.metrics.value("queue_jobs_completed_total")


def test_promql_refuses_shapes_it_does_not_know(short_run) -> None:
    with pytest.raises(ValueError, match="shapes"):
        promql(short_run.scrapes, "avg_over_time(queue_depth_gauge[1m])")


def test_draw_dashboard_uses_the_json_panels(short_run) -> None:
    import matplotlib.pyplot as plt

    panels = dashboard_panels()
    assert len(panels) == 4
    fig = draw_dashboard(short_run.scrapes)
    titles = sorted(ax.get_title(loc="left") for ax in fig.axes if ax.get_visible())
    assert titles == sorted(p["title"] for p in panels)
    plt.close(fig)


# == exercise checks =======================================================================
CHECKS = [
    (ex.check_10_p95, 0.8125),
    (ex.check_10_retry_ratio, None),
    (ex.check_10_label, "cause"),
    (ex.check_13_dispatch_bytes, 51),
    (ex.check_13_records_after_damaged_length, 5),
    (ex.check_13_size_ratio, None),
]


@pytest.mark.parametrize("check", [c for c, _ in CHECKS], ids=lambda c: c.__name__)
@pytest.mark.parametrize("empty", [..., None, "  "])
def test_checks_give_a_hint_on_an_empty_answer(check, empty, capsys) -> None:
    fb = check(empty)
    assert fb.startswith("not answered yet") and "Hint:" in fb and not fb.correct
    assert capsys.readouterr().out.strip() == fb


@pytest.mark.parametrize(
    "check, right",
    [c for c in CHECKS if c[1] is not None],
    ids=lambda c: getattr(c, "__name__", ""),
)
def test_checks_accept_the_right_answer_and_hint_on_a_wrong_one(check, right) -> None:
    assert check(right).correct
    wrong = check("wrong" if isinstance(right, str) else 12345)
    assert wrong.startswith("not quite") and "Hint:" in wrong


def test_retry_ratio_and_size_ratio_checks_compute_from_the_package() -> None:
    run = run_virtual(42)
    m = run.metrics
    retries = m.value("queue_jobs_retried_total") or 0
    assert retries == sum(
        m.value("queue_jobs_retried_by_cause_total", cause=c) or 0
        for c in ("fail", "timeout", "recovered")
    )
    assert ex.check_10_retry_ratio(retries / (m.value("queue_jobs_dispatched_total") or 1)).correct
    recs = sample_records()
    ratio = size_table(recs).set_index("type").loc["all", "json_over_binary"]
    assert ex.check_13_size_ratio(ratio).correct
