"""Configuration: the seed's YAML keys plus ours, loaded into one frozen ``Config``.

Owns: the table of keys (YAML name, attribute, kind, default, bounds), YAML loading,
duration parsing/formatting and every check on a value.  It must not know what the
values are used for beyond their documented meaning, and it reads no clock.

Invariants kept:

* A ``Config`` that exists is valid: ``Config()``, ``Config.from_mapping``,
  ``load_config`` and ``Config.replace`` all run the same checks.
* Every error is one ``ConfigError`` line naming the source (file or ``Config``), the
  key, the value and what was expected, e.g.
  ``configs/test.yaml: task_timeout='3 sec' is not a duration like '3s' or '500ms'``.
* YAML keys are the seed's verbatim (``task_timeout``); attributes carry their unit last
  (``task_timeout_s``).  Durations are stored as float seconds.
* Relative paths (``wal_path``, ``snapshot_path``, ``workspace``) are kept as written:
  they are relative to the current directory, like the seed's ``./data/wal.log``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Literal

import yaml

from phase1.disk import folder_of
from phase1.errors import ConfigError

__all__ = [
    "Config",
    "CommitPolicyName",
    "DEFAULTS",
    "COMMIT_POLICIES",
    "load_config",
    "parse_duration",
    "format_duration",
]

CommitPolicyName = Literal["always", "batch", "never"]
COMMIT_POLICIES: tuple[str, ...] = ("always", "batch", "never")

# -- durations -----------------------------------------------------------------------

_UNIT_S: dict[str, Decimal] = {
    "h": Decimal(3600),
    "m": Decimal(60),
    "s": Decimal(1),
    "ms": Decimal("0.001"),
    "us": Decimal("0.000001"),
    "µs": Decimal("0.000001"),
    "ns": Decimal("0.000000001"),
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")
_WHOLE = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:h|ms|m|s|us|µs|ns))+")


def parse_duration(text: object, where: str = "duration") -> float:
    """Seconds in ``text``: a number of seconds or a string like ``3s``, ``500ms``, ``1m30s``.

    Units: ``h``, ``m``, ``s``, ``ms``, ``us`` (or ``µs``), ``ns``; parts add up
    (``1h2m3.5s``).  Negative, infinite and unit-less strings (other than ``"0"``) are
    refused with a ``ConfigError`` that starts with ``where``.

    >>> parse_duration("1m30s"), parse_duration("250us"), parse_duration(2)
    (90.0, 0.00025, 2.0)
    """
    bad = ConfigError(f"{where}={text!r} is not a duration like '3s' or '500ms'")
    if isinstance(text, bool):
        raise bad
    if isinstance(text, int | float):
        if not math.isfinite(text) or text < 0:
            raise bad
        return float(text)
    if not isinstance(text, str):
        raise bad
    s = text.strip()
    if s == "0":
        return 0.0
    if not _WHOLE.fullmatch(s):
        raise bad
    # Decimal keeps '500ms' == 0.5 exactly instead of 500 * 0.001 in binary floating point.
    total = sum((Decimal(n) * _UNIT_S[u] for n, u in _PART.findall(s)), Decimal(0))
    return float(total)


def format_duration(seconds: float) -> str:
    """The shortest readable string that ``parse_duration`` maps back to ``seconds``.

    >>> [format_duration(x) for x in (0, 0.00025, 0.5, 3, 90, 3600)]
    ['0s', '250us', '500ms', '3s', '1m30s', '1h']
    """
    if not math.isfinite(seconds):
        raise ValueError(f"format_duration({seconds!r}): not a finite number of seconds")
    sign = "-" if seconds < 0 else ""
    ns = round(abs(Decimal(repr(float(seconds)))) * Decimal(10**9))
    if ns == 0:
        return "0s"
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_trim(Decimal(ns) / Decimal(1_000))}us"
    if ns < 1_000_000_000:
        return f"{sign}{_trim(Decimal(ns) / Decimal(1_000_000))}ms"
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    out = sign
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if rest:
        out += f"{_trim(Decimal(rest) / Decimal(10**9))}s"
    return out


def _trim(d: Decimal) -> str:
    text = format(d, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


# -- the key table -------------------------------------------------------------------

_Kind = Literal["int", "float", "duration", "str", "bool", "hosts", "choice", "pack", "cpus"]


@dataclass(frozen=True, slots=True)
class _Key:
    yaml: str
    attr: str
    kind: _Kind
    lo: float | None = None  # inclusive lower bound for numbers and durations
    hi: float | None = None  # inclusive upper bound
    positive: bool = False  # durations: strictly > 0


_KEYS: tuple[_Key, ...] = (
    # the seed's keys
    _Key("worker_count", "worker_count", "int", lo=1),
    _Key("task_timeout", "task_timeout_s", "duration", positive=True),
    _Key("snapshot_interval", "snapshot_interval_s", "duration", positive=True),
    _Key("max_retry", "max_retry", "int", lo=1),
    _Key("wal_path", "wal_path", "str"),
    _Key("snapshot_path", "snapshot_path", "str"),
    _Key("metrics_port", "metrics_port", "int", lo=0, hi=65535),
    # phase1 additions
    _Key("commit_policy", "commit_policy", "choice"),
    _Key("batch_size", "batch_size", "int", lo=1),
    _Key("batch_interval", "batch_interval_s", "duration"),
    _Key("segment_bytes", "segment_bytes", "int", lo=1),
    _Key("preallocate_bytes", "preallocate_bytes", "int", lo=0),
    _Key("snapshots_kept", "snapshots_kept", "int", lo=1),
    _Key("metrics_host", "metrics_host", "str"),
    _Key("workspace", "workspace", "str"),
    _Key("http_allow_hosts", "http_allow_hosts", "hosts"),
    _Key("http_timeout", "http_timeout_s", "duration", positive=True),
    _Key("http_max_bytes", "http_max_bytes", "int", lo=1),
    _Key("fibonacci_max_input", "fibonacci_max_input", "int", lo=0),
    _Key("timeout_check_interval", "timeout_check_interval_s", "duration", positive=True),
    _Key("recovery_cost_fixed_s", "recovery_cost_fixed_s", "float", lo=0),
    _Key("recovery_cost_per_snapshot_job_s", "recovery_cost_per_snapshot_job_s", "float", lo=0),
    _Key("recovery_cost_per_finished_job_s", "recovery_cost_per_finished_job_s", "float", lo=0),
    _Key("recovery_cost_per_wal_record_s", "recovery_cost_per_wal_record_s", "float", lo=0),
    _Key("fsync_latency_s_mean", "fsync_latency_s_mean", "float", lo=0),
    _Key("drain_on_stop", "drain_on_stop", "bool"),
    _Key("pack_payloads", "pack_payloads", "pack"),
    _Key("cpu_affinity", "cpu_affinity", "cpus"),
)
_BY_YAML: dict[str, _Key] = {k.yaml: k for k in _KEYS}
_BY_ATTR: dict[str, _Key] = {k.attr: k for k in _KEYS}


def _type_name(value: object) -> str:
    return {bool: "a bool", int: "an int", float: "a float", str: "a string"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _expected(key: _Key) -> str:
    if key.kind == "int":
        if key.hi is not None:
            return f"an int in {key.lo:g}..{key.hi:g}"
        return f"an int >= {key.lo:g}"
    if key.kind == "float":
        return "a number >= 0"
    if key.kind == "str":
        return "a non-empty string"
    if key.kind == "bool":
        return "true or false"
    if key.kind == "hosts":
        return "a list of host names"
    if key.kind == "choice":
        return " | ".join(repr(c) for c in COMMIT_POLICIES)
    if key.kind == "pack":
        return "true, false or 'auto'"
    if key.kind == "cpus":
        return "null or a non-empty list of CPU numbers like [0]"
    return "a duration like '3s' or '500ms'"


def _convert(key: _Key, value: object, where: str) -> object:
    """The normalized ``value`` for ``key``, or a ``ConfigError`` starting with ``where``."""
    wrong = ConfigError(f"{where}={value!r} is {_type_name(value)}, expected {_expected(key)}")
    if key.kind == "duration":
        seconds = parse_duration(value, where)
        if key.positive and seconds <= 0:
            raise ConfigError(f"{where}={value!r} must be a duration > 0, like '3s' or '500ms'")
        return seconds
    if key.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        if (key.lo is not None and value < key.lo) or (key.hi is not None and value > key.hi):
            raise ConfigError(f"{where}={value!r} is out of range, expected {_expected(key)}")
        return value
    if key.kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong
        if not math.isfinite(value) or (key.lo is not None and value < key.lo):
            raise ConfigError(f"{where}={value!r} is out of range, expected {_expected(key)}")
        return float(value)
    if key.kind == "bool":
        if not isinstance(value, bool):
            raise wrong
        return value
    if key.kind == "str":
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value.strip():
            raise wrong
        return value
    if key.kind == "pack":
        if value is not True and value is not False and value != "auto":
            raise wrong
        return value
    if key.kind == "cpus":
        if value is None:
            return None
        if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
            raise wrong
        for cpu in value:
            if isinstance(cpu, bool) or not isinstance(cpu, int) or cpu < 0:
                raise ConfigError(
                    f"{where} has {cpu!r} ({_type_name(cpu)}), expected {_expected(key)}"
                )
        return tuple(sorted(set(value)))
    if key.kind == "choice":
        if value not in COMMIT_POLICIES:
            raise ConfigError(f"{where}={value!r} is not one of {_expected(key)}")
        return value
    # hosts
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise wrong
    for host in value:
        if not isinstance(host, str) or not host.strip():
            raise ConfigError(
                f"{where} has {host!r} ({_type_name(host)}), expected {_expected(key)}"
            )
    return tuple(value)


def _unknown(name: str, known: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(known)
    return ConfigError(f"{where}: unknown key {name!r} ({hint})")


def _validate(values: dict[str, Any], source: str, by: Literal["yaml", "attr"]) -> None:
    """Normalize ``values`` (keyed by attribute) in place; errors name keys the ``by`` way."""
    for attr, value in values.items():
        key = _BY_ATTR[attr]
        name = key.yaml if by == "yaml" else key.attr
        values[attr] = _convert(key, value, f"{source}: {name}")
    if values["wal_path"] == values["snapshot_path"]:
        names = ("wal_path", "snapshot_path")
        raise ConfigError(
            f"{source}: {names[0]} and {names[1]} are both {values['wal_path']!r};"
            " give them different files"
        )


# -- Config --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Config:
    """Every setting of a phase1 queue; defaults are the seed's ``configs/default.yaml``.

    >>> Config().replace(worker_count=2).worker_count
    2
    """

    # the seed's keys
    worker_count: int = 8
    task_timeout_s: float = 3.0
    snapshot_interval_s: float = 2.0
    max_retry: int = 3
    wal_path: str = "./data/wal.log"
    snapshot_path: str = "./data/snapshot.json"
    metrics_port: int = 9090  # 0 = pick a free port
    # phase1 additions
    commit_policy: CommitPolicyName = "batch"
    batch_size: int = 100  # cap on records per fsync
    batch_interval_s: float = (
        0.0  # max wait for batch_size records before an fsync; 0 = leader/follower
    )
    segment_bytes: int = 64 * 1024 * 1024  # rotate the WAL segment when larger
    preallocate_bytes: int = 1 << 20  # pad the active WAL segment ahead in these steps; 0 = off
    snapshots_kept: int = 2
    metrics_host: str = "127.0.0.1"
    workspace: str = "./data/workspace"  # the only folder io/write_file may touch
    http_allow_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")
    http_timeout_s: float = 5.0
    http_max_bytes: int = 1_048_576
    fibonacci_max_input: int = 90
    timeout_check_interval_s: float = 1.0  # the seed's timeoutLoop tick
    recovery_cost_fixed_s: float = 5.165e-05
    recovery_cost_per_snapshot_job_s: float = 9.985e-07
    recovery_cost_per_finished_job_s: float = 1.320e-07
    recovery_cost_per_wal_record_s: float = 4.390e-07
    fsync_latency_s_mean: float = 1.640e-04
    drain_on_stop: bool = True
    # hold waiting payloads packed (less memory, more CPU): true, false, or "auto" = only
    # once a deep backlog waits (phase1.core.PACK_ABOVE jobs)
    pack_payloads: bool | Literal["auto"] = "auto"
    # `phase1 run` pins every thread to these CPUs (null = wherever the OS likes); one CPU
    # makes the GIL's hand-over between many producer threads cheap (phase1.runtime.affinity)
    cpu_affinity: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        values = {k.attr: getattr(self, k.attr) for k in _KEYS}
        _validate(values, "Config", "attr")
        for attr, value in values.items():
            if value is not getattr(self, attr):
                object.__setattr__(self, attr, value)

    # -- constructors --------------------------------------------------------------
    @classmethod
    def from_mapping(cls, mapping: Mapping[Any, Any], source: str = "<mapping>") -> Config:
        """A ``Config`` from YAML-named keys; missing keys take their defaults."""
        if not isinstance(mapping, Mapping):
            raise ConfigError(
                f"{source}: top level is {_type_name(mapping)}, expected a mapping of keys"
            )
        values: dict[str, Any] = {k.attr: getattr(_DEFAULT, k.attr) for k in _KEYS}
        known = list(_BY_YAML)
        for name, value in mapping.items():
            if not isinstance(name, str):
                raise ConfigError(f"{source}: key {name!r} is {_type_name(name)}, expected a name")
            key = _BY_YAML.get(name)
            if key is None:
                raise _unknown(name, known, source)
            values[key.attr] = value
        _validate(values, source, "yaml")
        return cls(**values)

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` (attribute names, e.g. ``task_timeout_s``), re-validated."""
        values: dict[str, Any] = {k.attr: getattr(self, k.attr) for k in _KEYS}
        for name, value in changes.items():
            if name not in _BY_ATTR:
                raise _unknown(name, list(_BY_ATTR), "Config.replace")
            values[name] = value
        _validate(values, "Config.replace", "attr")
        return dataclasses.replace(self, **values)

    # -- views ---------------------------------------------------------------------
    def to_mapping(self) -> dict[str, object]:
        """YAML-named keys and plain values (durations in seconds); ``from_mapping`` inverts it."""
        out: dict[str, object] = {}
        for key in _KEYS:
            value = getattr(self, key.attr)
            out[key.yaml] = list(value) if isinstance(value, tuple) else value
        return out

    @property
    def wal_dir(self) -> str:
        """The folder holding ``wal_path`` (``"."`` for a bare name)."""
        return folder_of(self.wal_path)

    @property
    def snapshot_dir(self) -> str:
        """The folder holding ``snapshot_path`` (``"."`` for a bare name)."""
        return folder_of(self.snapshot_path)


_DEFAULT = Config()
DEFAULTS: Mapping[str, object] = MappingProxyType(_DEFAULT.to_mapping())
"""The default of every key, by YAML name (durations in seconds)."""


# -- loading YAML --------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice (plain PyYAML keeps the last silently)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return dict(loader.construct_mapping(node))


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read a YAML config file; every problem is one ``ConfigError`` line naming the file."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError as exc:
        raise ConfigError(f"{name}: no such config file (start from configs/default.yaml)") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read config file ({exc.strerror or exc})") from exc
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from exc
    if data is None:  # an empty file (or only comments) means "all defaults"
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: top level is {_type_name(data)}, expected a mapping of keys")
    return Config.from_mapping(data, source=name)
