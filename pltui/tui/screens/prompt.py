"""Small input screens: a one-line prompt (`:` command line, `/` filter, a bundle path) and a
choice list (`g` group, `m` mark by state, `t` theme). Escape always backs out with None."""

from __future__ import annotations

from typing import Callable

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from pltui.sanitize import clean_line
from pltui.tui.screens.once import dismiss_once

MAX_INPUT = 4096


class CleanInput(Input):
    """An Input that never holds escapes or control bytes: a paste is cleaned before Input's own
    handler inserts it (Textual calls this class's `_on_paste`, then Input's, with the same
    event). Cleaning only on `Changed` left a frame where the raw bytes were on screen, and an
    Enter handled before that `Changed` submitted them."""

    def _on_paste(self, event: events.Paste) -> None:
        if event.text:
            event.text = clean_line(event.text.splitlines()[0], MAX_INPUT)


class PromptScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Back")]

    def __init__(self, title: str, *, value: str = "", placeholder: str = "", hint: Text | str = "",
                 suggestions: list[str] | None = None, prefix: str = "",
                 on_change: Callable[[str], None] | None = None):
        super().__init__()
        self.on_change = on_change         # called with each new value (incremental filter)
        self.title_text = title
        self.value = value
        self.placeholder = placeholder
        self.hint = hint if isinstance(hint, Text) else Text(hint, end="")
        self.suggestions = suggestions or []
        self.prefix = prefix

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box prompt-box"):
            yield Static(Text(self.title_text, style="bold", end=""))
            suggester = SuggestFromList(self.suggestions, case_sensitive=False) if self.suggestions else None
            yield CleanInput(value=self.value, placeholder=self.placeholder, suggester=suggester, id="prompt-input")
            if self.hint.plain:
                yield Static(self.hint, classes="hint")

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        self.app.release_keys()            # keys typed while this opened go to the input now

    def on_input_changed(self, event: Input.Changed) -> None:
        """A paste may carry escapes and control bytes: the input never shows (or returns) them."""
        safe = clean_line(event.value, MAX_INPUT)
        if safe != event.value:
            event.input.value = safe
            return                         # the cleaned value comes back as its own Changed
        if self.on_change is not None:
            self.on_change(safe)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        dismiss_once(self, clean_line(event.value, MAX_INPUT))

    def action_cancel(self) -> None:
        dismiss_once(self, None)


class ChoiceScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Back")]

    def __init__(self, title: str, choices: list[tuple[str, Text | str]], *, current: str | None = None,
                 hint: str = "enter choose · esc back"):
        super().__init__()
        self.title_text = title
        self.choices = choices
        self.current = current
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box choice-box"):
            yield Static(Text(self.title_text, style="bold", end=""))
            options = [Option(label if isinstance(label, Text) else Text(label, end=""), id=key)
                       for key, label in self.choices]
            yield OptionList(*options, id="choice-list")
            yield Static(Text(self.hint, end=""), classes="hint")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.focus()
        if self.current is not None:
            for index, (key, _) in enumerate(self.choices):
                if key == self.current:
                    options.highlighted = index
                    break
        self.app.release_keys()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        dismiss_once(self, event.option.id)

    def action_cancel(self) -> None:
        dismiss_once(self, None)
