"""Config: YAML loading, durations, and the one-line errors that name file and key."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from phase1.config import (
    DEFAULTS,
    Config,
    format_duration,
    load_config,
    parse_duration,
)
from phase1.errors import ConfigError, QueueKitError

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    return message


# -- durations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3s", 3.0),
        ("500ms", 0.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("10ns", 1e-8),
        ("1.5s", 1.5),
        ("1m30s", 90.0),
        ("1h2m3.5s", 3723.5),
        (".5s", 0.5),
        ("0", 0.0),
        ("0s", 0.0),
        (" 3s ", 3.0),
        (3, 3.0),
        (0.25, 0.25),
        (0, 0.0),
    ],
)
def test_parse_duration_accepts(text: object, seconds: float) -> None:
    assert parse_duration(text, "k") == seconds


@pytest.mark.parametrize(
    "text",
    ["3 sec", "3", "3S", "-1s", "s", "", "1x", "1s 2s", "1e3s", "ms", True, False, None, [], -1,
     math.inf, math.nan],
)  # fmt: skip
def test_parse_duration_rejects_with_where_and_value(text: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(text, "f.yaml: task_timeout")
    assert str(info.value) == (
        f"f.yaml: task_timeout={text!r} is not a duration like '3s' or '500ms'"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (1e-8, "10ns"), (0.00025, "250us"), (0.5, "500ms"), (0.0015, "1.5ms"),
     (3, "3s"), (1.5, "1.5s"), (90, "1m30s"), (3600, "1h"), (3723.5, "1h2m3.5s"), (-2, "-2s")],
)  # fmt: skip
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=10**15))
def test_format_then_parse_round_trips_whole_nanoseconds(ns: int) -> None:
    seconds = ns / 1e9
    assert math.isclose(parse_duration(format_duration(seconds)), seconds, rel_tol=1e-12)


# -- the exact message from STYLE.md -------------------------------------------------


def test_bad_duration_message_names_file_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "test.yaml").write_text("task_timeout: 3 sec\n")
    with pytest.raises(ConfigError) as info:
        load_config("configs/test.yaml")
    assert str(info.value) == (
        "configs/test.yaml: task_timeout='3 sec' is not a duration like '3s' or '500ms'"
    )


# -- wrong values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("worker_count: true", "worker_count=True is a bool, expected an int >= 1"),
        ("max_retry: yes", "max_retry=True is a bool, expected an int >= 1"),
        ("worker_count: 2.5", "worker_count=2.5 is a float, expected an int >= 1"),
        ("metrics_port: '9090'", "metrics_port='9090' is a string, expected an int in 0..65535"),
        ("worker_count: 0", "worker_count=0 is out of range, expected an int >= 1"),
        ("metrics_port: 70000", "metrics_port=70000 is out of range, expected an int in 0..65535"),
        ("metrics_port: -1", "metrics_port=-1 is out of range"),
        ("batch_size: 0", "batch_size=0 is out of range"),
        ("snapshots_kept: 0", "snapshots_kept=0 is out of range"),
        ("task_timeout: 0s", "task_timeout='0s' must be a duration > 0"),
        ("snapshot_interval: 0", "snapshot_interval=0 must be a duration > 0"),
        ("commit_policy: sometimes", "commit_policy='sometimes' is not one of 'always' | 'batch'"),
        ("wal_path: 7", "wal_path=7 is an int, expected a non-empty string"),
        ("wal_path: ''", "wal_path='' is a string, expected a non-empty string"),
        ("drain_on_stop: 1", "drain_on_stop=1 is an int, expected true or false"),
        (
            "pack_payloads: maybe",
            "pack_payloads='maybe' is a string, expected true, false or 'auto'",
        ),
        ("pack_payloads: 1", "pack_payloads=1 is an int, expected true, false or 'auto'"),
        (
            "http_allow_hosts: localhost",
            "http_allow_hosts='localhost' is a string, expected a list",
        ),
        ("http_allow_hosts: [localhost, 7]", "http_allow_hosts has 7 (an int)"),
        ("fsync_latency_s_mean: -0.1", "fsync_latency_s_mean=-0.1 is out of range"),
        (
            "recovery_cost_fixed_s: fast",
            "recovery_cost_fixed_s='fast' is a string, expected a number",
        ),
        ("wal_path: ./a\nsnapshot_path: ./a", "wal_path and snapshot_path are both './a'"),
    ],
)
def test_bad_value_names_file_key_and_value(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in load_error(tmp_path, text + "\n")


def test_metrics_port_zero_means_pick_a_free_port(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "metrics_port: 0\n")).metrics_port == 0


@pytest.mark.parametrize(("text", "value"), [("auto", "auto"), ("true", True), ("false", False)])
def test_pack_payloads_takes_auto_or_a_bool(tmp_path: Path, text: str, value: object) -> None:
    assert load_config(write(tmp_path, f"pack_payloads: {text}\n")).pack_payloads == value


def test_batch_interval_zero_is_allowed(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "batch_interval: 0\n")).batch_interval_s == 0.0


# -- keys and file shape ---------------------------------------------------------------------


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    message = load_error(tmp_path, "worker_cout: 4\n")
    assert message.endswith("unknown key 'worker_cout' (did you mean 'worker_count'?)")


def test_unit_suffixed_attribute_name_suggests_the_yaml_key(tmp_path: Path) -> None:
    assert "did you mean 'task_timeout'?" in load_error(tmp_path, "task_timeout_s: 3s\n")


def test_unknown_key_without_a_close_match_lists_known_keys(tmp_path: Path) -> None:
    message = load_error(tmp_path, "zzz: 1\n")
    assert "unknown key 'zzz' (known keys: worker_count, task_timeout," in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such config file"):
        load_config(path)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    message = load_error(tmp_path, "worker_count: 2\nmax_retry: [1, 2\nwal_path: x\n")
    assert message.startswith(f"{tmp_path / 'c.yaml'}:")
    assert "YAML syntax error" in message
    line = int(message.split(":")[1])
    assert line in (2, 3, 4)


def test_duplicate_key_is_refused_with_its_line(tmp_path: Path) -> None:
    message = load_error(tmp_path, "worker_count: 2\nmax_retry: 1\nworker_count: 3\n")
    assert message == f"{tmp_path / 'c.yaml'}:3: YAML syntax error: duplicate key 'worker_count'"


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    assert "top level is" in load_error(tmp_path, text)


def test_non_string_key_is_refused(tmp_path: Path) -> None:
    assert "key 1 is an int" in load_error(tmp_path, "1: x\n")


def test_empty_file_means_all_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "# nothing here\n")) == Config()


def test_config_error_is_a_queuekit_error() -> None:
    assert issubclass(ConfigError, QueueKitError)


def test_relative_paths_stay_as_written(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "wal_path: ./x/wal.log\nworkspace: ws\n"))
    assert (config.wal_path, config.workspace) == ("./x/wal.log", "ws")
    assert (config.wal_dir, config.snapshot_dir) == ("./x", "./data")
    assert Config(wal_path="wal.log").wal_dir == "."


# -- shipped files -----------------------------------------------------------------------------


def test_default_yaml_holds_the_seeds_values_and_every_default() -> None:
    config = load_config(REPO / "configs" / "default.yaml")
    assert config.worker_count == 8
    assert config.task_timeout_s == 3.0
    assert config.snapshot_interval_s == 2.0
    assert config.max_retry == 3
    assert config.wal_path == "./data/wal.log"
    assert config.snapshot_path == "./data/snapshot.json"
    assert config.metrics_port == 9090
    assert config == Config()


def test_test_yaml_holds_the_seeds_values() -> None:
    config = load_config(REPO / "configs" / "test.yaml")
    seed = (2, 1.0, 0.5, 2, "./test-data/wal.log", "./test-data/snapshot.json", 9091)
    assert (
        config.worker_count,
        config.task_timeout_s,
        config.snapshot_interval_s,
        config.max_retry,
        config.wal_path,
        config.snapshot_path,
        config.metrics_port,
    ) == seed


@pytest.mark.parametrize("name", ["default.yaml", "test.yaml"])
def test_shipped_yaml_lists_every_key_with_the_seed_keys_first(name: str) -> None:
    data = yaml.safe_load((REPO / "configs" / name).read_text(encoding="utf-8"))
    seed_keys = ["worker_count", "task_timeout", "snapshot_interval", "max_retry", "wal_path",
                 "snapshot_path", "metrics_port"]  # fmt: skip
    assert list(data)[:7] == seed_keys
    assert sorted(data) == sorted(DEFAULTS)


def test_tmp_config_fixture_points_inside_tmp_path(tmp_config: Config, tmp_path: Path) -> None:
    for path in (tmp_config.wal_path, tmp_config.snapshot_path, tmp_config.workspace):
        assert Path(path).is_relative_to(tmp_path)
    assert tmp_config.worker_count == 2


# -- Config in code --------------------------------------------------------------------


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().worker_count = 3  # type: ignore[misc]


def test_replace_returns_a_validated_copy() -> None:
    base = Config()
    changed = base.replace(worker_count=2, task_timeout_s="1500ms", http_allow_hosts=["h"])
    assert (changed.worker_count, changed.task_timeout_s) == (2, 1.5)
    assert changed.http_allow_hosts == ("h",)
    assert base.worker_count == 8


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"worker_count": 0}, "Config.replace: worker_count=0 is out of range"),
        ({"worker_count": True}, "Config.replace: worker_count=True is a bool"),
        ({"task_timeout_s": "3 sec"}, "Config.replace: task_timeout_s='3 sec' is not a duration"),
        (
            {"worker_cont": 2},
            "Config.replace: unknown key 'worker_cont' (did you mean 'worker_count'?)",
        ),
        ({"task_timeout": 2}, "did you mean 'task_timeout_s'?"),
    ],
)
def test_replace_rejects_bad_changes(changes: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config().replace(**changes)
    assert expected in str(info.value)


def test_constructor_validates_too() -> None:
    with pytest.raises(ConfigError, match="Config: max_retry=0 is out of range"):
        Config(max_retry=0)


def test_from_mapping_names_its_source() -> None:
    with pytest.raises(ConfigError, match=r"^<notebook>: batch_size=-5 is out of range"):
        Config.from_mapping({"batch_size": -5}, source="<notebook>")


def test_to_mapping_round_trips_through_from_mapping() -> None:
    config = Config().replace(commit_policy="always", batch_interval_s=0.0)
    assert Config.from_mapping(config.to_mapping()) == config
    assert dict(DEFAULTS) == Config().to_mapping()
