"""The console's state apart from any widget: marks, filter, sort, pause, styles, the clock.

Screens and widgets read it; the app changes it. Kept free of Textual so it can be reasoned
about (and tested) on its own.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Callable, Iterable

from rich.style import Style

from pltui.nodesets import Selector, fold
from pltui.sweep import Engine
from pltui.tui.cells import COLUMNS, Context, row_cells, sort_key
from pltui.tui.filters import Filter, node_states

ALL_KEYS = tuple(c.key for c in COLUMNS)


class ConsoleView:
    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time, readonly: bool = False):
        self.engine = engine
        self.fleet = engine.fleet
        self.names: list[str] = list(engine.nodes)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.refresh_selector()
        self.clock = clock
        self.readonly = readonly
        self.marks: set[str] = set()
        self.filter: Filter | None = None
        self.sort_column = "node"
        self.sort_reverse = False
        self.paused = False
        self.styles: dict[str, Style] = {}
        self._group_cache: dict[str, str] = {}
        self._frozen: tuple[dict, object] | None = None
        # node -> when it last answered: from the store for nodes down at start, then as seen
        self.answered: dict[str, float] = dict(engine.last_answered()) if hasattr(engine, "last_answered") else {}
        for _name, status in engine.statuses.items():
            self.note(status)

    def note(self, status) -> None:
        """Remember when a node answered, so a down node can say since when it is silent."""
        if status.reachable and status.observed:
            self.answered[status.node] = status.observed

    def refresh_selector(self) -> None:
        """Node-set expressions against the console's nodes and the fleet's (saved) groups."""
        self.selector = Selector(self.names, {g: [m for m in ms if m in self.index]
                                              for g, ms in self.fleet.group_members.items()})

    # -- live or frozen (Z) -----------------------------------------------------------------

    @property
    def statuses(self):
        return self._frozen[0] if self._frozen else self.engine.statuses

    @property
    def consensus(self):
        return self._frozen[1] if self._frozen else self.engine.consensus

    def freeze(self, on: bool) -> None:
        """Pause the view: show the statuses as they are now until unpaused."""
        self.paused = on
        self._frozen = (dict(self.engine.statuses), self.engine.consensus) if on else None

    # -- rendering context ------------------------------------------------------------------

    def context(self) -> Context:
        stale = max(2 * self.fleet.sweep.interval, 60.0)
        return Context(self.fleet, self.consensus, self.marks, self.styles, self.clock(), stale,
                       self._group_cache, self.answered)

    def states_of(self, name: str) -> frozenset:
        """The filter's state words for one node (down, drift, stale, version=X...)."""
        if name not in self.index:
            return frozenset()
        stale = max(2 * self.fleet.sweep.interval, 60.0)
        node = self.fleet.nodes.get(name)
        return node_states(name, self.statuses[name], self.consensus, self.marks, self.clock(), stale,
                           node.track if node is not None else None, self.answered.get(name, 0.0))

    def troubled(self, name: str) -> bool:
        return "trouble" in self.states_of(name)

    def cells(self, name: str, ctx: Context) -> dict[str, object]:
        return row_cells(self.statuses[name], ctx, ALL_KEYS)

    def row_key(self, name: str, ctx: Context) -> tuple:
        return sort_key(self.sort_column, self.statuses[name], ctx, self.index[name])

    # -- selection --------------------------------------------------------------------------

    def marked(self) -> list[str]:
        return [n for n in self.names if n in self.marks]

    def targets(self, cursor: str | None) -> list[str]:
        """What an action applies to: the marked nodes, else the cursor's node."""
        marked = self.marked()
        if marked:
            return marked
        return [cursor] if cursor else []

    def describe(self, names: Iterable[str]) -> str:
        names = list(names)
        if len(names) == 1:
            return names[0]
        return f"{len(names)} nodes ({fold(names)})"

    def consensus_changes(self, old, new) -> set[str]:
        """Nodes whose protocol or checksum cells a new consensus changes (not every node)."""
        if old is None:
            return set(self.names)
        changed = (old.isolated ^ new.isolated) | (old.checked ^ new.checked)
        changed |= {n for n in set(old.drift) | set(new.drift) if old.drift.get(n) != new.drift.get(n)}
        tracks = {t for t in set(old.no_quorum) | set(new.no_quorum)
                  if bool(old.no_quorum.get(t)) != bool(new.no_quorum.get(t))}
        if tracks:
            changed |= {n for n in self.names if self.fleet.nodes[n].track in tracks}
        return changed & set(self.index)

    # -- summaries --------------------------------------------------------------------------

    def health_counts(self) -> Counter:
        statuses = self.statuses
        return Counter(statuses[n].health for n in self.names)

