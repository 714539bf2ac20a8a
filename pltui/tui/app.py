"""The console app: wires one sweep engine to the screens.

Engine events arrive on a queue read by one worker (`_pump`). The pump only records what
changed (dirty nodes, event lines, action runs) and schedules a flush; the flush applies
everything in one `batch_update()` at most `1 / flush_interval` times a second, at most
FLUSH_ROWS rows at a time (those on screen first). No timer does work when nothing changed,
except the header's 1 s clock and the 30 s "seen" clock (both touch the screen only when their
text changes) and a progress poll while an action runs.
"""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path
from typing import Callable

from rich.text import Text
from textual.app import App
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.timer import Timer

from pltui.model import (ActionFinished, ActionProgress, HealDone, NodeTransition, NodeUpdated, Notice,
                         SweepFinished, SweepStarted)
from pltui.sanitize import clean, clean_line
from pltui.sweep import Engine
from pltui.tui import settings, themes
from pltui.tui.cells import AGE_TICK
from pltui.tui.commands import CommandLine
from pltui.tui.dispatch import ActionRun
from pltui.tui.keyhold import KeyHold
from pltui.tui.operations import Operations
from pltui.tui.screens.confirm import ConfirmScreen
from pltui.tui.screens.detail import DetailScreen
from pltui.tui.screens.help import HelpScreen
from pltui.tui.screens.main import MainScreen
from pltui.tui.screens.progress import ProgressScreen
from pltui.tui.screens.prompt import ChoiceScreen
from pltui.tui.view import ConsoleView
from pltui.tui.widgets.event_pane import TRANSITION_LEVEL, event_line, transition_message
from pltui.tui.widgets.header_bar import header_text

def run_state(run: ActionRun) -> str:
    """What a running action is doing, for the header: a rollout stopped at a stage gate is not
    "running", it waits for the operator."""
    if run.control.waiting_at_gate:
        return "waiting for you"
    if run.control.aborted:
        return "aborting"
    if run.control.paused:
        return "paused"
    return "running"


FLUSH_INTERVAL = 0.25
FLUSH_ROWS = 300       # rows recomputed per flush at most (rows on screen first); the rest next time


class ConsoleApp(KeyHold, CommandLine, Operations, App):
    CSS_PATH = Path(__file__).with_name("pltui.tcss")   # absolute: subclasses live elsewhere
    TITLE = "pltui"
    BINDINGS = [
        Binding("q", "quit_console", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("t", "choose_theme", "Theme", show=False),
    ]

    def __init__(self, engine: Engine, *, readonly: bool = False, start_engine: bool = True,
                 clock: Callable[[], float] = time.time, config_dir: Path | None = None,
                 flush_interval: float = FLUSH_INTERVAL, theme: str | None = None, state_dir: str | None = None):
        super().__init__()
        self.state_dir = state_dir
        self.view = ConsoleView(engine, clock=clock, readonly=readonly)
        self.start_engine = start_engine
        self.config_dir = config_dir
        self.flush_interval = flush_interval
        self.engine_task: asyncio.Task | None = None
        self.runs: list[ActionRun] = []
        self.events_unseen = 0
        self.changes_unseen = 0           # node transitions not yet seen in the event pane
        self.bell_on_trouble = False      # setting `bell`: ring the terminal bell when a node goes bad
        self.flushes = 0
        self._queue: asyncio.Queue | None = None
        self._dirty: set[str] = set()
        self._heap_frozen = False
        self._lines: list[tuple[float, str, str, str | None]] = []
        self._flush_timer: Timer | None = None
        self._last_flush = 0.0
        self._consensus_seen = engine.consensus
        self._startup_notes: list[tuple[str, str]] = []
        self._loading_theme = True
        self._setup_themes(theme)
        self._loading_theme = False

    # -- themes -----------------------------------------------------------------------------

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(themes.PLTUI_VARIABLES)

    def _setup_themes(self, wanted: str | None) -> None:
        user_dir = (self.config_dir / "themes") if self.config_dir else None
        found = themes.discover(user_dir)
        self.pltui_themes = list(found.themes)
        for theme in found.themes.values():
            self.register_theme(theme)
        for problem in found.problems:
            self._startup_notes.append(("error", f"theme skipped: {problem}"))
        saved, problem = settings.load(self.config_dir)
        if problem:
            self._startup_notes.append(("warning", problem))
        self.bell_on_trouble = bool(saved.get("bell", False))
        name = wanted or saved.get("theme") or themes.DEFAULT_THEME
        if name not in self.available_themes:
            self._startup_notes.append(("warning", f"theme {name!r} not found; using {themes.DEFAULT_THEME}"))
            name = themes.DEFAULT_THEME
        self.theme = name
        self._update_styles()

    def _update_styles(self) -> None:
        theme = self.current_theme
        derived = {"node-up": theme.success, "node-degraded": theme.warning, "node-down": theme.error,
                   "drift": theme.accent, "isolated": theme.secondary}
        self.view.styles = {
            var: themes.rich_style(theme.variables.get(var) or derived.get(var) or default)
            for var, default in themes.PLTUI_VARIABLES.items()
        }

    def watch_theme(self, name: str) -> None:
        self._update_styles()
        if self._loading_theme:
            return
        main = self.main
        if main is not None:
            main.table.restyle()
            self.refresh_header()
        problem = settings.save({"theme": name}, self.config_dir)
        if problem:
            self.notify(problem, severity="warning")

    def action_choose_theme(self) -> None:
        names = list(self.pltui_themes) + [n for n in sorted(self.available_themes) if n not in self.pltui_themes]
        choices = [(n, n + ("  (pltui)" if n in self.pltui_themes else "")) for n in names]

        def chosen(name: str | None) -> None:
            if name:
                self.set_theme(name)

        self.push_screen(ChoiceScreen("Theme", choices, current=self.theme), chosen)

    def set_theme(self, name: str) -> None:
        if name not in self.available_themes:
            self.notify(f"no theme {name!r}; have: {', '.join(self.pltui_themes)}", severity="error")
            return
        self.theme = name
        self.notify(f"theme {name}")

    def notify(self, message, *, title: str = "", severity="information", timeout: float | None = None,
               markup: bool = False) -> None:
        """Every toast of the console is plain text: messages quote what the operator typed and
        what nodes sent (`[/x]` must show as `[/x]`, not end the app with a MarkupError), so markup
        is never parsed, whatever a caller asks, and control bytes are replaced."""
        super().notify(clean(str(message), limit=2000, newlines=True), title=clean_line(str(title), 120),
                       severity=severity, timeout=timeout, markup=False)

    def add_startup_note(self, level: str, message: str) -> None:
        """A notification shown once the console is up (store or file-descriptor warnings)."""
        self._startup_notes.append((level, message))

    # -- screens ----------------------------------------------------------------------------

    def get_default_screen(self) -> Screen:
        return MainScreen()

    def push_screen(self, screen, callback=None, wait_for_dismiss: bool = False, **kwargs):
        """Keys that arrive while the screen opens wait for it (see keyhold)."""
        self.hold_keys()
        return super().push_screen(screen, callback, wait_for_dismiss, **kwargs)

    @property
    def main(self) -> MainScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        return None

    def open_detail(self, name: str | None) -> None:
        if name:
            self.push_screen(DetailScreen(name))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.view.readonly))

    # -- engine wiring ----------------------------------------------------------------------

    def on_mount(self) -> None:
        for level, message in self._startup_notes:
            self.notify(message, severity="error" if level == "error" else "warning", timeout=10)
        self._queue = self.view.engine.subscribe()
        self.run_worker(self._pump(), name="engine-events", group="engine", exit_on_error=False)
        if self.start_engine:
            self.engine_task = self.view.engine.start()
        self.set_interval(1.0, self.refresh_header, name="header-clock")
        self.set_interval(AGE_TICK, self._refresh_ages, name="age-clock")

    def on_unmount(self) -> None:
        if self._queue is not None:
            self.view.engine.unsubscribe(self._queue)

    async def _pump(self) -> None:
        queue = self._queue
        assert queue is not None
        while True:
            event = await queue.get()
            self.ingest(event)
            while not queue.empty():
                self.ingest(queue.get_nowait())
            self.schedule_flush()

    def ingest(self, event) -> None:
        """Record one engine event; the screen changes at the next flush."""
        if isinstance(event, NodeUpdated):
            self.view.note(event.status)
            if event.status.node in self.view.index:
                self._dirty.add(event.status.node)
        elif isinstance(event, SweepFinished):
            if not self._heap_frozen:
                # After the first sweep the heap is mostly long-lived (a connection per node, the
                # statuses): collect once, then move it out of the collector's sight, so later
                # full collections do not stall the screen for 100+ ms on big fleets
                # (bench/bench_tui.py --real-sweep).
                gc.collect()
                gc.freeze()
                gc.enable()
                self._heap_frozen = True
            consensus = self.view.engine.consensus      # protocol and checksum cells may change
            self._dirty |= self.view.consensus_changes(self._consensus_seen, consensus)
            self._consensus_seen = consensus
            health = event.summary.get("health", {})
            self._line(event.time, "info", f"{'checksum ' if event.checksums else ''}sweep {event.sweep_id} done: "
                       + ", ".join(f"{v} {k}" for k, v in health.items() if v))
        elif isinstance(event, SweepStarted):
            if not self._heap_frozen:
                # The first sweep builds that long-lived heap (~150 objects per node): full
                # collections during it would scan a growing heap again and again, each a pause.
                gc.disable()
        elif isinstance(event, NodeTransition):
            self._transition(event)
        elif isinstance(event, HealDone):
            self._dirty.add(event.node)
            self._line(event.time, "ok" if event.ok else "error", event.message, event.node)
        elif isinstance(event, Notice):
            self._line(event.time, event.level, event.message, event.node)
        elif isinstance(event, (ActionProgress, ActionFinished)):
            for run in self.runs:
                if run.apply(event):
                    break
            if isinstance(event, ActionFinished):
                self._line(event.time, "ok" if event.ok else "error",
                           f"{event.kind} {event.action_id} finished " + ("ok" if event.ok else "with failures"))
            elif event.node is None or event.state in ("failed", "rolled-back", "unreachable"):
                self._line(event.time, "error" if event.node else "info",
                           f"{event.kind}: {event.state} {event.detail}".strip(), event.node)

    def _transition(self, event: NodeTransition) -> None:
        """A node changed state: one line in the event pane with since when, a badge until the
        pane is seen, and the bell (if asked for) when a node goes bad."""
        if event.node in self.view.index:
            self._dirty.add(event.node)
        level = TRANSITION_LEVEL.get(event.kind, "info")
        self._line(event.time, level, transition_message(event), event.node, count=False)
        main = self.main
        if main is None or not main.events.display:
            self.changes_unseen += 1
        if self.bell_on_trouble and level == "error":
            self.bell()

    def set_bell(self, on: bool) -> None:
        self.bell_on_trouble = on
        problem = settings.save({"bell": on}, self.config_dir)
        self.notify(problem or f"bell {'on: rings when a node goes down or crash-loops' if on else 'off'}",
                    severity="warning" if problem else "information")

    def _line(self, when: float, level: str, message: str, node: str | None = None, count: bool = True) -> None:
        self._lines.append((when, level, message, node))
        main = self.main
        if count and level in ("error", "warning") and (main is None or not main.events.display):
            self.events_unseen += 1

    def schedule_flush(self) -> None:
        if self._flush_timer is None:
            delay = max(0.01, self._last_flush + self.flush_interval - time.monotonic())
            self._flush_timer = self.set_timer(delay, self.flush, name="flush")

    def flush(self) -> None:
        """Apply everything recorded since the last flush, in one batch."""
        self._flush_timer = None
        self._last_flush = time.monotonic()
        self.flushes += 1
        main = self.main
        if main is None or not main.is_mounted:
            return
        with self.batch_update():
            if self._dirty and not self.view.paused:
                dirty = self._take_dirty(main)
                main.table.refresh_nodes(dirty)
                for screen in self.screen_stack:
                    if hasattr(screen, "nodes_changed"):
                        screen.nodes_changed(dirty)
            if self._lines:
                lines, self._lines = self._lines, []
                for when, level, message, node in lines[-1000:]:
                    main.events.write(event_line(when, level, message, node, self.view.styles))
            for screen in self.screen_stack:
                if isinstance(screen, ProgressScreen) and screen.job.dirty:
                    screen.update_run()
            self.refresh_header()

    def _take_dirty(self, main: MainScreen) -> set[str]:
        """Up to FLUSH_ROWS dirty nodes, those on screen first; the rest wait for the next flush."""
        if len(self._dirty) <= FLUSH_ROWS:
            dirty, self._dirty = self._dirty, set()
            return dirty
        take = [n for n in main.table.in_view() if n in self._dirty][:FLUSH_ROWS]
        rest = iter(self._dirty)
        chosen = set(take)
        while len(chosen) < FLUSH_ROWS:
            chosen.add(next(rest))
        self._dirty -= chosen
        self.schedule_flush()
        return chosen

    def refresh_header(self) -> None:
        main = self.main
        if main is None or not main.is_mounted:
            return
        try:
            header = main.header
        except NoMatches:                  # the screen is being taken down (quitting)
            return
        running = [f"{r.kind} {run_state(r)}" for r in self.runs if not r.finished]
        header.show(header_text(self.view, events_unseen=self.events_unseen, running=running,
                                changes_unseen=self.changes_unseen))

    def _refresh_ages(self) -> None:
        main = self.main
        if main is not None and main.is_mounted and not self.view.paused:
            with self.batch_update():
                main.table.refresh_ages()

    def set_paused(self, paused: bool) -> None:
        self.view.freeze(paused)
        main = self.main
        if not paused and main is not None:
            self._dirty.update(self.view.names)
            self.schedule_flush()
        self.refresh_header()

    # -- quitting ---------------------------------------------------------------------------

    def action_quit_console(self) -> None:
        running = [r for r in self.runs if not r.finished]
        if not running:
            self.exit()
            return
        what = ", ".join(f"{r.kind} on {len(r.nodes)} nodes" for r in running)
        question = Text(f"An action is running ({clean_line(what, 200)}). Quit anyway? It will be aborted.", end="")

        def answered(yes: bool | None) -> None:
            if yes:
                for run in running:
                    run.control.abort()
                self.exit()

        self.push_screen(ConfirmScreen("Quit", question, yes="quit"), answered)

    async def action_quit(self) -> None:
        self.action_quit_console()
