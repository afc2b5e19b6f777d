"""``cpu_affinity``: the config key, pinning every thread, and what the pool children get."""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from phase1.config import Config, ConfigError, load_config
from phase1.runtime import affinity

REPO = Path(__file__).resolve().parent.parent
linux_only = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only"
)


@pytest.fixture
def unpinned() -> object:
    """Whatever a test pins, the process gets its whole mask back afterwards."""
    before = affinity.available_cpus()
    yield before
    affinity.restore(before)


def test_default_is_null_and_lists_are_normalised() -> None:
    assert Config().cpu_affinity is None
    assert load_config(REPO / "configs" / "default.yaml").cpu_affinity is None
    assert Config(cpu_affinity=[1, 0, 1]).cpu_affinity == (0, 1)
    assert Config.from_mapping({"cpu_affinity": [0]}).to_mapping()["cpu_affinity"] == [0]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("0", "is a string"),
        ([], "is a list"),
        ([-1], "has -1"),
        ([True], "has True"),
        ([0.5], "has 0.5"),
        (3, "is an int"),
    ],
)
def test_bad_cpu_lists_are_one_line_naming_file_and_key(
    tmp_path: Path, value: object, says: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"cpu_affinity: {value!r}\n".replace("'", '"'))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: cpu_affinity") and says in message
    assert "\n" not in message


@linux_only
def test_pin_process_moves_threads_started_before_and_after(unpinned: frozenset[int]) -> None:
    cpu = min(unpinned)
    go = threading.Event()
    seen: dict[str, set[int]] = {}

    def body(name: str) -> None:
        go.wait()
        seen[name] = os.sched_getaffinity(0)

    early = threading.Thread(target=body, args=("early",))
    early.start()
    before = affinity.pin_process([cpu])
    late = threading.Thread(target=body, args=("late",))
    late.start()
    go.set()
    early.join()
    late.join()
    assert before == unpinned
    assert seen == {"early": {cpu}, "late": {cpu}}
    assert os.sched_getaffinity(0) == {cpu}
    assert affinity.mask_before_pinning() == unpinned
    affinity.restore(before)
    assert os.sched_getaffinity(0) == set(unpinned)
    assert affinity.mask_before_pinning() is None


@linux_only
def test_an_unavailable_cpu_is_refused_and_nothing_changes(unpinned: frozenset[int]) -> None:
    absent = max(unpinned) + 1000
    with pytest.raises(ConfigError, match=rf"c.yaml: cpu_affinity: CPU\(s\) \[{absent}\] not"):
        affinity.pin_process([absent], where="c.yaml: cpu_affinity")
    assert os.sched_getaffinity(0) == set(unpinned)
    assert affinity.mask_before_pinning() is None


def test_an_empty_list_is_refused() -> None:
    with pytest.raises(ConfigError, match="empty CPU list"):
        affinity.pin_process([])


def _my_cpus() -> set[int]:
    return os.sched_getaffinity(0)


@linux_only
def test_pool_children_leave_the_pinned_cpu(unpinned: frozenset[int]) -> None:
    """A spawned child inherits the pinned mask; the initializer gives it the old one."""
    affinity.pin_process([min(unpinned)])
    mask = affinity.mask_before_pinning()
    assert mask is not None
    with ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=affinity.child_initializer,
        initargs=(tuple(sorted(mask)),),
    ) as pool:
        assert pool.submit(_my_cpus).result(timeout=60) == set(unpinned)
