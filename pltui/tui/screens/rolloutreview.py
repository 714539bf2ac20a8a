"""The rollout review: the plan, the options it was built with, and keys to change them before
saying yes (the CLI's --reload, --failhard, --batch, --parallel, --max-fail).

Every change re-builds the rollout (same bundle, same nodes) and shows the new plan, so the plan
on the screen is always the one that runs; an option that does not validate leaves the rollout
as it was and says why in one line. The default answer stays No.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Static

from pltui.sanitize import clean_line
from pltui.tui.dispatch import RolloutOptions
from pltui.tui.screens.confirm import ConfirmScreen
from pltui.tui.screens.prompt import PromptScreen

# key -> (option, what the prompt asks, an example accepted as the CLI accepts it)
ASKED = {
    "batch": ("Batch sizes for every stage (empty: the fleet's own)", 'e.g. 5, 10% or 1,10%,*'),
    "parallel": ("Nodes at once within a batch (empty: the fleet's own)", "a whole number, at least 1"),
    "max_fail": ("Failure budget per batch (empty: the fleet's own)", "e.g. 0, 2 or 5%"),
}


def options_text(opts: RolloutOptions) -> Text:
    """One line naming every option and its value, in the CLI's words ("fleet": not given, the
    fleet's own stages decide, as the plan below shows)."""
    out = Text(end="")
    parts = [("reload", "on" if opts.reload else "off"), ("failhard", "on" if opts.failhard else "off"),
             ("batch", opts.batch or "fleet"), ("parallel", str(opts.parallel) if opts.parallel else "fleet"),
             ("max_fail", opts.max_fail or "fleet")]
    for i, (name, value) in enumerate(parts):
        if i:
            out.append(" · ")
        out.append(f"{name} ")
        out.append(clean_line(value, 24), "bold")
    return out


class RolloutReviewScreen(ConfirmScreen):
    BINDINGS = ConfirmScreen.BINDINGS + [
        Binding("e", "toggle('reload')", "Reload on/off"),
        Binding("f", "toggle('failhard')", "Failhard on/off"),
        Binding("b", "ask('batch')", "Batch sizes"),
        Binding("p", "ask('parallel')", "Parallel"),
        Binding("m", "ask('max_fail')", "Max fail"),
    ]

    def __init__(self, title: str, head: Text, opts: RolloutOptions, action: Any, plan: dict, *,
                 rebuild: Callable[[RolloutOptions], tuple[Any, dict]], render: Callable[[dict], Text],
                 yes: str):
        self.head = head
        self.opts = opts
        self.rollout = action               # what runs on yes: always built from self.opts
        self.rollout_plan = plan
        self.rebuild = rebuild
        self.render_plan = render
        super().__init__(title, self._question(), render(plan), yes=yes)

    def _question(self) -> Text:
        question = self.head.copy()
        question.append("\n")
        question.append_text(options_text(self.opts))
        return question

    def key_text(self) -> Text:
        keys = super().key_text()
        keys.append("\n")
        for key, what in (("e", "reload"), ("f", "failhard"), ("b", "batch"), ("p", "parallel"),
                          ("m", "max_fail")):
            keys.append(f" {key} ", "reverse")
            keys.append(f" {what}  ")
        return keys

    def action_toggle(self, name: str) -> None:
        self._apply(dataclasses.replace(self.opts, **{name: not getattr(self.opts, name)}))

    def action_ask(self, name: str) -> None:
        title, hint = ASKED[name]
        current = getattr(self.opts, name)

        def answered(value: str | None) -> None:
            if value is None:                  # esc: nothing changes
                return
            value = value.strip()
            if not value:
                self._apply(dataclasses.replace(self.opts, **{name: None}))
            elif name == "parallel":
                if not value.isdigit():
                    self.app.notify(f"--parallel {clean_line(value, 40)!r}: not a whole number; expected {hint}",
                                    title="rollout options", severity="error")
                    return
                self._apply(dataclasses.replace(self.opts, parallel=int(value)))
            else:
                self._apply(dataclasses.replace(self.opts, **{name: value}))

        self.app.push_screen(PromptScreen(title, value="" if current is None else str(current), hint=hint),
                             answered)

    def _apply(self, opts: RolloutOptions) -> None:
        """Re-build with `opts`; on a bad option keep what was there and say why."""
        try:
            action, plan = self.rebuild(opts)
        except Exception as exc:           # ActionError from validation; anything else must not crash
            self.app.notify(clean_line(str(exc), 300), title="rollout options", severity="error")
            return
        self.opts, self.rollout, self.rollout_plan = opts, action, plan
        self.query_one("#confirm-question", Static).update(self._question())
        self.query_one("#confirm-plan", Static).update(self.render_plan(plan))
        self._fit_body()
