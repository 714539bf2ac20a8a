"""A running (or finished) action: per-node state, stage line, byte progress, pause / continue /
abort, the stage-gate question, and the final report (exec output grouped by identical result).

Fed by the app's flush (never per event); a 0.5 s poll runs only while the action runs, to notice
a stage gate (Control has no event for it).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from pltui.format import human_bytes
from pltui.nodesets import fold
from pltui.sanitize import clean, clean_line
from pltui.tui.dispatch import ActionRun, group_results
from pltui.tui.screens.once import dismiss_once

MESSAGES_PER_STATE = 5
STATE_VAR = {"done": "node-up", "ok": "node-up", "skipped": "muted", "failed": "node-down",
             "unreachable": "node-down", "rolled-back": "node-degraded", "untouched": "muted",
             "pending": "muted"}


def _bar(done: int, total: int, width: int = 24) -> str:
    if total <= 0:
        return f"{human_bytes(done)}"
    share = min(1.0, done / total)
    filled = int(share * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {share * 100:3.0f}% {human_bytes(done)}/{human_bytes(total)}"


def head_text(run: ActionRun, styles) -> Text:
    out = Text(end="")
    out.append(f" {clean_line(run.kind, 32)} ", "reverse bold")
    out.append(f" {clean_line(run.action_id, 80)}  on {len(run.nodes)} node{'s' if len(run.nodes) != 1 else ''}  ")
    word = run.status_word
    var = "node-up" if word == "finished ok" else "node-down" if word.startswith(("finished with", "failed", "abort")) \
        else "node-degraded" if word.startswith(("paused", "waiting")) else ""
    out.append(word, (styles.get(var) or "") if var else "bold")
    out.append("\n")
    counts = run.counts()
    out.append("  ".join(f"{state} {n}" for state, n in sorted(counts.items(), key=lambda kv: -kv[1])))
    total = run.bytes()
    if total is not None:
        out.append("\nbytes " + _bar(*total))
    if run.stage:
        out.append("\n")
        out.append(run.stage, "bold")
    return out


def gate_text(run: ActionRun) -> Text:
    out = Text(end="")
    if run.control.waiting_at_gate and not run.finished:
        out.append(f" stage gate: {clean_line(run.control.gate_name or '', 64)} ", "reverse bold")
        out.append("  go on with the next stage?  ")
        out.append(" y ", "reverse bold")
        out.append(" go on   ")
        out.append(" n ", "reverse")
        out.append(" stop here")
    return out


def _block(out: Text, value: object, indent: str = "    ", max_lines: int = 40) -> None:
    text = clean(str(value), limit=20000, newlines=True).rstrip("\n")
    lines = text.split("\n")
    for line in lines[:max_lines]:
        out.append(f"{indent}{line}\n")
    if len(lines) > max_lines:
        out.append(f"{indent}... {len(lines) - max_lines} more lines\n")


def exec_groups(groups: list[dict], styles) -> Text:
    """clush -b style: each group of nodes that answered the same, with its output once."""
    out = Text(end="")
    muted = styles.get("muted") or ""
    for group in groups:
        count = group.get("count", 0)
        out.append(f"---- {clean_line(str(group.get('nodes', '')), 200)} ({count}) ----\n", "bold")
        if group.get("outcome") == "error":
            out.append(f"  [{clean_line(str(group.get('error_class')), 32)}]\n", styles.get("node-down") or "")
            for node, message in (group.get("errors") or {}).items():
                out.append(f"  {clean_line(node, 64)}: {clean_line(str(message), 200)}\n")
            continue
        if group.get("stdout"):
            _block(out, group["stdout"], "  ")
        if group.get("stderr"):
            out.append("  [stderr]\n", muted)
            _block(out, group["stderr"], "  ")
        outcome = group.get("outcome")
        word = f"exit {group.get('exit_status')}" if outcome == "exit" else clean_line(str(outcome), 32)
        ok = outcome == "exit" and group.get("exit_status") == 0
        out.append(f"  [{word}]\n", styles.get("node-up" if ok else "node-down") or "")
    return out


def report_renderable(run: ActionRun, styles) -> Text:
    """The final report as one Text: outcome, counts, then exec groups or nodes grouped by outcome."""
    out = Text(end="")
    if not run.finished:
        return out
    out.append("report: ", "bold")
    out.append(run.status_word + "\n")
    if run.error:
        out.append(f"{run.error}\n", styles.get("node-down") or "")
    report = run.report or {}
    if report.get("stopped_because"):
        out.append(f"stopped because: {clean_line(str(report['stopped_because']), 300)}\n",
                   styles.get("node-down") or "")
    summary = dict(report.get("summary") or {})
    groups = summary.pop("groups", None)
    counts = summary.pop("counts", None)
    if counts:
        out.append(clean_line(", ".join(f"{k} {v}" for k, v in counts.items()), 300) + "\n")
    simple = {k: v for k, v in summary.items() if isinstance(v, (str, int, float, bool)) or v is None}
    if simple:
        out.append(clean_line(", ".join(f"{k}: {v}" for k, v in simple.items()), 500) + "\n",
                   styles.get("muted") or "")
    if isinstance(groups, list) and groups and isinstance(groups[0], dict):
        out.append_text(exec_groups(groups, styles))
    elif report.get("nodes"):
        for nodes, state, details in group_results(report)[:20]:
            out.append(f"{clean_line(state, 32)} ({len(nodes)}): ", styles.get(STATE_VAR.get(state, "")) or "bold")
            out.append(clean_line(fold(nodes), 300) + "\n")
            for group, message in details[:MESSAGES_PER_STATE]:
                out.append(f"    {clean_line(message, 200)}")
                if len(details) > 1:
                    out.append(f"  ({clean_line(fold(group), 120)})", styles.get("muted") or "")
                out.append("\n")
            if len(details) > MESSAGES_PER_STATE:
                out.append(f"    ... {len(details) - MESSAGES_PER_STATE} more distinct messages\n",
                           styles.get("muted") or "")
    next_line = next_steps(run)
    if next_line:
        out.append("next: ", "bold")
        out.append(next_line + "\n")
    return out


UNDO = {"stop": "start", "start": "stop"}


def next_steps(run: ActionRun) -> str:
    """How to go on from here: the key or command that resumes, retries or undoes this run."""
    report = run.report or {}
    nodes = report.get("nodes") or {}
    failed = [n for n, r in nodes.items() if str(r.get("state")) not in ("done", "ok", "skipped")]
    action_id = clean_line(run.action_id, 80)
    if run.kind == "rollout":
        return (f"R on the rollouts screen (:rollouts) resumes {action_id}, B rolls it back; "
                f"CLI: pltui rollout FLEET --resume {action_id} / --rollback {action_id}")
    parts = []
    if failed:
        parts.append(f"retry the {len(failed)} not done: :mark {clean_line(fold(failed), 120)} then :{run.kind}")
    if run.kind in UNDO and len(failed) < len(nodes):
        parts.append(f"undo: :{UNDO[run.kind]} on the same nodes")
    if run.kind in ("logs", "capture") and isinstance(report.get("summary"), dict) and report["summary"].get("dest"):
        parts.append(f"files in {clean_line(str(report['summary']['dest']), 120)}")
    return "; ".join(parts)


class ProgressScreen(Screen):
    BINDINGS = [
        Binding("p", "pause", "Pause"),
        Binding("c", "resume", "Continue"),
        Binding("a", "abort", "Abort"),
        Binding("y", "gate(True)", "Go on"),
        Binding("n", "gate(False)", "Stop"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, run: ActionRun):
        super().__init__()
        self.job = run
        self._rows: dict[str, tuple] = {}
        self._poll = None
        self._gate_shown = False
        self._keys: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static(id="progress-head")
        yield Static(id="progress-gate")
        yield DataTable(id="progress-nodes", cursor_type="row", show_row_labels=False)
        with VerticalScroll(id="progress-report"):
            yield Static(id="progress-report-body")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        node_width = min(max((len(n) for n in self.job.nodes), default=8), 28)
        columns = [("node", "node", node_width)]
        if self.job.placement:
            columns.append(("stage", "stage/batch", 16))
        columns += [("state", "state", 12), ("detail", "detail", 44), ("bytes", "bytes", 16)]
        self._keys = [key for key, _, _ in columns]
        for key, label, width in columns:
            table.add_column(Text(label, style="bold"), key=key, width=width)
        for node in self.job.nodes:
            table.add_row(*self._cells(node), key=node)
            self._rows[node] = self._signature(node)
        table.focus()
        if not self.job.finished:
            self._poll = self.set_interval(0.5, self._tick)
        self.update_run(force=True)
        self.app.release_keys()

    def _styles(self):
        return self.app.view.styles

    def _cells(self, node: str) -> list[Text]:
        p = self.job.states[node]
        style = self._styles().get(STATE_VAR.get(p.state, ""), "") or ""
        size = "-"
        if p.bytes_total is not None or p.bytes_done is not None:
            size = f"{human_bytes(p.bytes_done or 0)}/{human_bytes(p.bytes_total)}" if p.bytes_total else human_bytes(p.bytes_done)
        cells = {"node": Text(clean_line(node, 64), end=""),
                 "stage": Text(self.job.placement.get(node, "-"), end=""),
                 "state": Text(p.state, style=style, end=""),
                 "detail": Text(clean_line(p.detail, 200), no_wrap=True, overflow="ellipsis", end=""),
                 "bytes": Text(size, end="")}
        return [cells[key] for key in self._keys]

    def _signature(self, node: str) -> tuple:
        p = self.job.states[node]
        return p.state, p.detail, p.bytes_done, p.bytes_total

    def _tick(self) -> None:
        gate = self.job.control.waiting_at_gate
        if gate != self._gate_shown or self.job.dirty:
            self.update_run()
        if self.job.finished and self._poll is not None:
            self._poll.stop()
            self._poll = None

    def update_run(self, force: bool = False) -> None:
        """Apply what the run learnt since the last call (called by the app's flush)."""
        if not (self.job.dirty or force or self.job.control.waiting_at_gate != self._gate_shown):
            return
        self.job.dirty = False
        styles = self._styles()
        table = self.query_one(DataTable)
        for node in list(self.job.states):
            sig = self._signature(node)
            if node not in self._rows:
                table.add_row(*self._cells(node), key=node)
            elif self._rows[node] != sig:
                for key, value in zip(self._keys, self._cells(node)):
                    table.update_cell(node, key, value)
            self._rows[node] = sig
        self.query_one("#progress-head", Static).update(head_text(self.job, styles))
        self._gate_shown = self.job.control.waiting_at_gate
        gate = self.query_one("#progress-gate", Static)
        gate.update(gate_text(self.job))
        gate.display = self._gate_shown and not self.job.finished
        self.set_class(self.job.finished, "-finished")
        self.query_one("#progress-report-body", Static).update(report_renderable(self.job, styles))
        self.refresh_bindings()

    def check_action(self, action: str, parameters) -> bool | None:
        run = self.job
        if action == "pause":
            return not run.finished and not run.control.paused
        if action == "resume":
            return not run.finished and run.control.paused
        if action == "abort":
            return not run.finished and not run.control.aborted
        if action == "gate":
            return not run.finished and run.control.waiting_at_gate
        return True

    def action_pause(self) -> None:
        self.job.control.pause()
        self.app.notify(f"{self.job.kind}: paused (c to continue)")
        self.update_run(force=True)

    def action_resume(self) -> None:
        self.job.control.resume()
        self.update_run(force=True)

    def action_abort(self) -> None:
        self.job.control.abort()
        self.app.notify(f"{self.job.kind}: abort requested; nodes in flight finish their step", severity="warning")
        self.update_run(force=True)

    def action_gate(self, go_on: bool) -> None:
        self.job.control.answer_gate(go_on)
        self.update_run(force=True)

    def action_back(self) -> None:
        dismiss_once(self)
