"""Clocks: the real one is monotonic, the manual one moves only when told to."""

from __future__ import annotations

import time

import pytest

from phase1.clock import Clock, ManualClock, RealClock


def test_both_clocks_satisfy_the_protocol() -> None:
    assert isinstance(RealClock(), Clock)
    assert isinstance(ManualClock(), Clock)


def test_real_clock_now_is_monotonic_and_wall_is_epoch() -> None:
    clock = RealClock()
    first = clock.now_s()
    clock.sleep(0.001)
    clock.sleep(-1)  # a negative sleep returns at once
    assert clock.now_s() >= first + 0.001
    assert abs(clock.wall_s() - time.time()) < 5


def test_manual_clock_sleep_advances_virtual_time_without_blocking() -> None:
    clock = ManualClock(start_s=5.0)
    started = time.monotonic()
    clock.sleep(3600)
    assert time.monotonic() - started < 1
    assert clock.now_s() == clock.wall_s() == 3605.0


def test_manual_clock_advance_and_set() -> None:
    clock = ManualClock()
    clock.advance(1.5)
    clock.set(10)
    clock.sleep(-2)
    assert clock.now_s() == 10.0


@pytest.mark.parametrize("move", [lambda c: c.advance(-0.1), lambda c: c.set(0.5)])
def test_manual_clock_refuses_to_go_backwards(move: object) -> None:
    clock = ManualClock(start_s=1.0)
    with pytest.raises(ValueError, match="backwards"):
        move(clock)  # type: ignore[operator]
    assert clock.now_s() == 1.0
