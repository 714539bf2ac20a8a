"""A yes/no question whose default is No: only a deliberate `y` says yes.

The question repeats what will happen and to how many nodes; an optional body (a rollout plan,
say) is shown scrollable below it. Enter, `n` and escape all answer No.
"""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from pltui.tui.screens.once import dismiss_once


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Yes, do it"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "No", show=False),
        Binding("enter", "answer(False)", "No", show=False),
    ]

    def __init__(self, title: str, question: Text | str, body: RenderableType | None = None, *,
                 yes: str = "yes"):
        super().__init__()
        self.title_text = Text(title, style="bold", end="")
        self.question = question if isinstance(question, Text) else Text(question, end="")
        self.body = body
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box", classes="modal-box"):
            yield Static(self.title_text, id="confirm-title")
            yield Static(self.question, id="confirm-question")
            if self.body is not None:
                with VerticalScroll(id="confirm-body"):
                    yield Static(self.body, id="confirm-plan")
            yield Static(self.key_text(), id="confirm-keys")

    def key_text(self) -> Text:
        """The answer keys (a subclass adds its own lines below them)."""
        keys = Text(end="")
        keys.append(" y ", "reverse bold")
        keys.append(f" {self.yes}    ")
        keys.append(" n ", "reverse")
        keys.append(" / esc / enter  no (default)")
        return keys

    def on_mount(self) -> None:
        self._fit_body()
        self.app.release_keys()

    def on_resize(self) -> None:
        self._fit_body()

    def _fit_body(self) -> None:
        """The body (a plan) scrolls in what the title, question and answer keys leave of the
        screen, so the y/n line is always visible (at 80x24 too)."""
        if self.body is None:
            return
        width = max(20, min(76, int(self.app.size.width * 0.96)) - 4)
        question = sum(max(1, -(-len(line) // width)) for line in self.question.plain.split("\n"))
        keys = len(self.key_text().plain.split("\n"))
        fixed = 2 + 1 + 2 + question + 1 + keys + 2 + 2      # borders, title, margins, keys, body border, slack
        self.query_one("#confirm-body").styles.max_height = max(3, self.app.size.height - fixed)

    def action_answer(self, value: bool) -> None:
        dismiss_once(self, value)
