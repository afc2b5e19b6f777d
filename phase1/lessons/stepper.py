"""A stepper: advance the real core one record or one event at a time and redraw its state.

Owns: ``Action`` (a label and a callable that drives the real package one step),
``Scenario`` (the actions plus a ``render`` that returns the state as text), ``Stepper``
(``step()``, ``run_all()``, ``goto(n)``, ``reset()``) and ``StepperView`` (the ipywidgets
face: Step / Run all / Reset buttons and a slider).

Must not know: what the steps do.  A scenario is built by a ``setup`` function, so
``reset`` and the slider can rebuild it from scratch and replay the first ``n`` steps:
everything the steps touch (a ``SimDisk``, a ``ManualClock``, a core) is created inside
``setup``, which keeps every run identical.

nbval: ``step()`` and ``run_all()`` return text (print it); the widget's text repr is
``StepperView.__repr__`` (no model id, no address) and the widget never prints: it writes
its state into an ``HTML`` widget, so nothing lands in the cell's stdout.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets

from phase1.lessons.views import state_html

__all__ = ["Action", "Scenario", "Stepper", "StepperView"]


@dataclass(frozen=True)
class Action:
    """One step: ``label`` says what happens; ``run()`` does it on the real package and may
    return a short note (e.g. ``"applied"``/``"skipped"``) shown after the label."""

    label: str
    run: Callable[[], object]


@dataclass(frozen=True)
class Scenario:
    """What ``setup`` returns: the actions, in order, the state as text, and optionally the
    objects the actions drive (``world``: a disk, a core...) for cells to inspect."""

    actions: Sequence[Action]
    render: Callable[[], str]
    world: Any = None


class Stepper:
    """Walk a scenario one action at a time, without widgets (nbval-friendly).

    >>> def setup():
    ...     box = []
    ...     acts = [Action(f"push {i}", lambda i=i: box.append(i)) for i in range(3)]
    ...     return Scenario(acts, lambda: f"box={box}")
    >>> s = Stepper(setup, title="demo")
    >>> s
    Stepper('demo', step 0/3)
    >>> s.step()
    '[1/3] push 0'
    >>> s.goto(3).state()
    'box=[0, 1, 2]'
    """

    def __init__(self, setup: Callable[[], Scenario], *, title: str = "") -> None:
        self._setup = setup
        self.title = title
        self.log: list[str] = []
        self.reset()

    # -- driving ---------------------------------------------------------------------------
    def reset(self) -> Stepper:
        """Rebuild the scenario from ``setup`` (fresh disk, clock and core); position 0."""
        self._scenario = self._setup()
        self.position = 0
        self.log = []
        return self

    @property
    def total(self) -> int:
        return len(self._scenario.actions)

    @property
    def world(self) -> Any:
        """The objects the current run drives (``Scenario.world``)."""
        return self._scenario.world

    @property
    def done(self) -> bool:
        return self.position >= self.total

    @property
    def labels(self) -> list[str]:
        return [a.label for a in self._scenario.actions]

    def step(self) -> str:
        """Run the next action; return ``"[k/n] label"`` (plus its note).  At the end,
        says so and changes nothing."""
        if self.done:
            return f"[{self.position}/{self.total}] (finished: reset to replay)"
        action = self._scenario.actions[self.position]
        note = action.run()
        self.position += 1
        line = f"[{self.position}/{self.total}] {action.label}"
        if note not in (None, ""):
            line += f" -> {note}"
        self.log.append(line)
        return line

    def run_all(self) -> list[str]:
        """Run every remaining action; return their lines."""
        lines = []
        while not self.done:
            lines.append(self.step())
        return lines

    def goto(self, n: int) -> Stepper:
        """Position ``n``: replay from a fresh setup when going back (steps are not undone)."""
        n = max(0, min(n, self.total))
        if n < self.position:
            self.reset()
        while self.position < n:
            self.step()
        return self

    def state(self) -> str:
        """The scenario's state as text (what the widget shows)."""
        return self._scenario.render()

    def show(self) -> str:
        """The last step's line and the state: one block to print after ``step()``."""
        head = self.log[-1] if self.log else f"[0/{self.total}] (start)"
        return head + "\n" + self.state()

    def widget(self) -> StepperView:
        """The ipywidgets view of this stepper (buttons, a slider, the state)."""
        return StepperView(self)

    def __repr__(self) -> str:
        return f"Stepper({self.title!r}, step {self.position}/{self.total})"


class StepperView(widgets.VBox):  # type: ignore[misc]
    """Buttons (Step, Run all, Reset), a slider over positions and the state as HTML.

    The state lives in an ``HTML`` widget (no ``Output`` widget, so nothing is printed);
    ``repr`` is deterministic: ``StepperView('Q1 timeline', step 0/8)``.
    """

    def __init__(self, stepper: Stepper, **kwargs: Any) -> None:
        self.stepper = stepper
        self._syncing = False
        self.step_button = widgets.Button(description="Step", button_style="primary")
        self.all_button = widgets.Button(description="Run all")
        self.reset_button = widgets.Button(description="Reset")
        self.slider = widgets.IntSlider(
            value=stepper.position,
            min=0,
            max=stepper.total,
            description="step",
            continuous_update=False,
        )
        self.label = widgets.HTML()
        self.screen = widgets.HTML()
        self.step_button.on_click(lambda _b: self._do(self.stepper.step))
        self.all_button.on_click(lambda _b: self._do(self.stepper.run_all))
        self.reset_button.on_click(lambda _b: self._do(self.stepper.reset))
        self.slider.observe(self._on_slider, names="value")
        bar = widgets.HBox([self.step_button, self.all_button, self.reset_button, self.slider])
        super().__init__([bar, self.label, self.screen], **kwargs)
        self.redraw()

    def _do(self, action: Callable[[], object]) -> None:
        action()
        self.redraw()

    def _on_slider(self, change: dict[str, Any]) -> None:
        if not self._syncing:
            self.stepper.goto(int(change["new"]))
            self.redraw()

    def redraw(self) -> None:
        s = self.stepper
        self._syncing = True
        try:
            self.slider.value = s.position
        finally:
            self._syncing = False
        self.step_button.disabled = s.done
        last = html.escape(s.log[-1] if s.log else f"[0/{s.total}] (start)")
        if not s.done:
            last += f"<br><i>next: {html.escape(s.labels[s.position])}</i>"
        self.label.value = f"<b>{html.escape(s.title)}</b>: {last}"
        self.screen.value = state_html(s.state())

    def __repr__(self) -> str:
        return f"StepperView({self.stepper.title!r}, step {self.stepper.position}/{self.stepper.total})"
