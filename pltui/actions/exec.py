"""Run one shell command on many nodes and gather identical answers, as `clush -b` does.

The operator's command is a shell command line by design (like `ssh host CMD` or `clush`): it
reaches each node's `/bin/sh -c` exactly as given. Nothing derived from a node is ever
interpreted by a shell.

- Fanout: nodes run in parallel, bounded by the transport's fanout.
- Timeout: the command is bounded on the node with timeout(1) (TERM at the timeout, KILL 5 s
  later), so a command that never exits is stopped *there*, not merely abandoned; a local
  timeout a little longer catches nodes without timeout(1) (the channel is then closed).
- Output: stdout is captured up to `max_output` bytes per node (stderr up to 64 KiB); a node
  that talks more is cut off (its command is closed) and reported as truncated.
- Results: one `ExecRecord` per node; `groups()` gathers nodes with the same outcome (exit
  status or error class, stdout and stderr). Unreachable nodes are grouped by error class, each
  keeping its own message.
- `outdir`: the raw bytes of each node's stdout and stderr, plus a `status` line, are written
  to `OUTDIR/<node>/` (files only; never to a terminal).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from pltui.actions.base import Action, ActionReport, Control, Emit
from pltui.fleet import Fleet
from pltui.model import SSHState
from pltui.nodesets import fold
from pltui.probe import shell_path
from pltui.sanitize import clean, clean_line
from pltui.ssh import NodeError, Transport, bounded
from pltui.store import Store

MAX_OUTPUT = 1024 * 1024
LOCAL_GRACE = 3.0           # the local timeout is the node's plus this, so the node stops it first
TIMEOUT_EXITS = (124, 137)  # timeout(1): 124 after TERM, 137 (128 + KILL) when it had to kill
ROOT_MISSING_EXIT = 125


def exit_text(status: int | None) -> str:
    if status is None:
        return "exit ? (the node sent no exit status)"
    if status == -1:
        return "exit -1 (killed by a signal)"
    return f"exit {status}"


@dataclass
class ExecRecord:
    """One node's outcome.

    kind: "exit" (the command ran and exited), "timeout" (stopped after the timeout),
    "truncated" (output over the cap; reading stopped and the command was closed), or "error"
    (could not run it: `error_class` is the SSH state, `message` says why).
    """

    node: str
    kind: str
    exit_status: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    error_class: str | None = None
    message: str = ""
    elapsed: float | None = None

    @property
    def ok(self) -> bool:
        return self.kind == "exit" and self.exit_status == 0

    def key(self) -> tuple:
        if self.kind == "error":
            return ("error", self.error_class, b"", b"")
        return (self.kind, self.exit_status, self.stdout, self.stderr)

    def status_line(self, timeout: float) -> str:
        if self.kind == "exit":
            return exit_text(self.exit_status)
        if self.kind == "timeout":
            return f"timeout: stopped after {timeout:g}s" + (f" (exit {self.exit_status})" if self.exit_status is not None else "")
        if self.kind == "truncated":
            return "truncated: output exceeded the capture limit; the command was closed"
        return f"{self.error_class}: {self.message}"

    def to_json(self, timeout: float) -> dict[str, Any]:
        return {
            "outcome": self.kind,
            "exit_status": self.exit_status,
            "error_class": self.error_class,
            "error": self.message or None,
            "status": clean(self.status_line(timeout), limit=400),
            "stdout": clean(self.stdout, limit=MAX_OUTPUT, newlines=True),
            "stderr": clean(self.stderr, limit=MAX_OUTPUT, newlines=True),
            "stdout_bytes": len(self.stdout),
            "stderr_bytes": len(self.stderr),
            "elapsed": round(self.elapsed, 3) if self.elapsed is not None else None,
        }


@dataclass
class ExecGroup:
    """Nodes that answered the same: same outcome kind, exit status / error class, and output."""

    kind: str
    exit_status: int | None
    error_class: str | None
    stdout: bytes
    stderr: bytes
    nodes: list[str] = field(default_factory=list)
    messages: dict[str, str] = field(default_factory=dict)  # error groups: node -> message

    @property
    def folded(self) -> str:
        return fold(self.nodes)

    def to_json(self) -> dict[str, Any]:
        return {
            "nodes": self.folded,
            "node_list": list(self.nodes),
            "count": len(self.nodes),
            "outcome": self.kind,
            "exit_status": self.exit_status,
            "error_class": self.error_class,
            "stdout": clean(self.stdout, limit=MAX_OUTPUT, newlines=True),
            "stderr": clean(self.stderr, limit=MAX_OUTPUT, newlines=True),
            "errors": dict(self.messages) if self.messages else None,
        }


def group_records(records: Iterable[ExecRecord], order: list[str]) -> list[ExecGroup]:
    """Gather records with the same outcome and output. Groups that ran come first (largest
    first, then by first node in `order`), then the errors, by class."""
    index = {n: i for i, n in enumerate(order)}
    groups: dict[tuple, ExecGroup] = {}
    for rec in sorted(records, key=lambda r: index.get(r.node, len(index))):
        key = rec.key()
        group = groups.get(key)
        if group is None:
            group = groups[key] = ExecGroup(rec.kind, rec.exit_status if rec.kind != "error" else None,
                                            rec.error_class, rec.stdout, rec.stderr)
        group.nodes.append(rec.node)
        if rec.kind == "error":
            group.messages[rec.node] = rec.message
    ran = [g for g in groups.values() if g.kind != "error"]
    errors = [g for g in groups.values() if g.kind == "error"]
    ran.sort(key=lambda g: (g.kind != "exit", -len(g.nodes), index.get(g.nodes[0], 0)))
    errors.sort(key=lambda g: (g.error_class or "", index.get(g.nodes[0], 0)))
    return ran + errors


def safe_component(name: str) -> str:
    """A node name as one directory name (never `.`, `..`, or containing a slash)."""
    cleaned = name.replace("/", "_").replace("\x00", "_")
    if cleaned in ("", ".", ".."):
        cleaned = f"_{cleaned}_"
    return cleaned


class ExecAction(Action):
    kind = "exec"
    mutating = True  # an arbitrary command may change things: take node locks (see lock=)

    def __init__(self, fleet: Fleet, transport: Transport, store: Store | None, nodes: Iterable[str], *,
                 command: str, timeout: float | None = None, in_root: bool = False,
                 max_output: int = MAX_OUTPUT, outdir: str | os.PathLike | None = None, lock: bool = True,
                 emit: Emit | None = None, control: Control | None = None, action_id: str | None = None):
        super().__init__(fleet, transport, store, nodes, emit=emit, control=control, action_id=action_id)
        if not command or not command.strip():
            raise ValueError("empty command")
        self.command = command
        self.timeout = float(timeout or transport.command_timeout)
        self.in_root = in_root
        self.max_output = max_output
        self.outdir = Path(outdir) if outdir is not None else None
        self.mutating = lock
        self.records: dict[str, ExecRecord] = {}

    # -- planning -----------------------------------------------------------------------------

    def node_command(self, name: str) -> str:
        """The shell command line sent to one node (before the timeout(1) wrapper)."""
        if not self.in_root:
            return self.command
        root = shell_path(self.fleet.nodes[name].root)
        # A newline, not `&&`: the operator's line stays one whole list of its own.
        return (f"cd {root} || {{ echo 'pltui: cannot enter the service root' >&2; exit {ROOT_MISSING_EXIT}; }}\n"
                f"{self.command}")

    def plan(self) -> dict[str, Any]:
        return {"kind": self.kind, "nodes": self.nodes, "command": self.command, "timeout": self.timeout,
                "in_root": self.in_root, "outdir": str(self.outdir) if self.outdir else None}

    def arguments(self) -> dict[str, Any]:
        return {"command": self.command, "timeout": self.timeout, "in_root": self.in_root,
                "outdir": str(self.outdir) if self.outdir else None, "locked": self.mutating}

    # -- running ------------------------------------------------------------------------------

    async def run_one(self, name: str) -> ExecRecord:
        node = self.fleet.nodes[name]
        self.progress(name, "running", clean(self.command, limit=80))
        command = bounded(self.node_command(name), self.timeout)
        started = time.monotonic()
        try:
            result = await self.transport.run(node, command, timeout=self.timeout + LOCAL_GRACE,
                                              max_output=self.max_output, bound_on_node=False, what="the command")
        except NodeError as exc:
            if exc.state == SSHState.TIMEOUT:
                self.transport.drop(name)  # its channel may still be busy
                return ExecRecord(name, "timeout", message=exc.message, elapsed=time.monotonic() - started)
            return ExecRecord(name, "error", error_class=exc.state.value, message=exc.message,
                              elapsed=time.monotonic() - started)
        except Exception as exc:  # an unforeseen library error is this node's problem only
            return ExecRecord(name, "error", error_class=SSHState.ERROR.value,
                              message=clean(f"internal error: {type(exc).__name__}: {exc}", limit=300),
                              elapsed=time.monotonic() - started)
        if result.truncated:
            return ExecRecord(name, "truncated", None, result.stdout, result.stderr, elapsed=result.elapsed)
        if result.exit_status in TIMEOUT_EXITS and result.elapsed >= self.timeout - 0.05:
            return ExecRecord(name, "timeout", result.exit_status, result.stdout, result.stderr, elapsed=result.elapsed)
        # asyncssh: -1 when the command died of a signal, None when the node sent no status at all
        return ExecRecord(name, "exit", result.exit_status, result.stdout, result.stderr, elapsed=result.elapsed)

    def write_outdir(self, rec: ExecRecord) -> str | None:
        """Write one node's raw output; return a problem message or None."""
        if self.outdir is None:
            return None
        try:
            directory = self.outdir / safe_component(rec.node)
            directory.mkdir(parents=True, exist_ok=True)
            if rec.kind != "error":
                (directory / "stdout").write_bytes(rec.stdout)
                (directory / "stderr").write_bytes(rec.stderr)
            else:
                for stale in ("stdout", "stderr"):
                    (directory / stale).unlink(missing_ok=True)
            (directory / "status").write_text(rec.status_line(self.timeout) + "\n", "utf-8")
        except OSError as exc:
            return f"cannot write {self.outdir}/{safe_component(rec.node)}: {exc.strerror or exc}"
        return None

    async def execute(self) -> ActionReport:
        outdir_problems: dict[str, str] = {}

        blobs: dict[bytes, bytes] = {}

        async def work(name: str) -> None:
            rec = await self.run_one(name)
            # identical outputs share one bytes object: a thousand nodes, one copy
            rec.stdout = blobs.setdefault(rec.stdout, rec.stdout)
            rec.stderr = blobs.setdefault(rec.stderr, rec.stderr)
            self.records[name] = rec
            problem = self.write_outdir(rec)
            if problem:
                outdir_problems[name] = problem
            state = ("done" if rec.ok else "failed") if rec.kind != "error" else (
                "unreachable" if rec.error_class in ("refused", "unreachable") else "failed")
            self.result(name, state, clean(rec.status_line(self.timeout), limit=300), **rec.to_json(self.timeout))

        await self.for_each(self.nodes, work, self.fleet.ssh.fanout)
        groups = self.groups()
        # Per-node records name their group; the output itself is in the group, once.
        for index, group in enumerate(groups):
            for node in group.nodes:
                data = self.results[node].data
                data.pop("stdout", None)
                data.pop("stderr", None)
                data["group"] = index
        summary = {
            "command": self.command,
            "timeout": self.timeout,
            "in_root": self.in_root,
            "groups": [g.to_json() for g in groups],
        }
        if self.outdir is not None:
            summary["outdir"] = str(self.outdir)
        if outdir_problems:
            summary["outdir_problems"] = outdir_problems
        stopped = None
        if self.control.aborted:
            stopped = "aborted by the operator"
        return self.report(stopped_because=stopped, summary=summary)

    def groups(self) -> list[ExecGroup]:
        return group_records(self.records.values(), self.nodes)


INDENT = "  "


def _indented(data: bytes) -> list[str]:
    """Node output as display lines, each indented: the left margin belongs to pltui's own
    headers and annotations, so no node can print a line that reads as one of them."""
    text = clean(data, limit=MAX_OUTPUT, newlines=True)
    if text.endswith("\n"):
        text = text[:-1]
    return [INDENT + line if line else "" for line in text.split("\n")] if text else []


def render_groups(groups: list[ExecGroup], timeout: float) -> list[str]:
    """Human text for gathered groups (clush -b style, output indented so it cannot be forged).
    Lines still hold node text: print them only through a sanitising writer (`pltui.cli.out`)."""
    lines: list[str] = []
    for group in groups:
        lines.append(f"---------------- {group.folded} ({len(group.nodes)}) ----------------")
        if group.kind == "error":
            lines.append(f"[{group.error_class}]")
            for node in group.nodes:
                lines.append(f"{INDENT}{node}: {clean_line(group.messages.get(node, ''), 1000)}")
            continue
        lines += _indented(group.stdout)
        err = _indented(group.stderr)
        if err:
            lines.append("[stderr]")
            lines += err
        if group.kind == "exit":
            lines.append(f"[{exit_text(group.exit_status)}]")
        elif group.kind == "timeout":
            lines.append(f"[timed out after {timeout:g}s: stopped]")
        else:
            lines.append("[output truncated: over the capture limit, command closed]")
    return lines


def summary_line(records: Iterable[ExecRecord]) -> str:
    records = list(records)
    zero = sum(1 for r in records if r.ok)
    nonzero = sum(1 for r in records if r.kind == "exit" and not r.ok)
    timeouts = sum(1 for r in records if r.kind == "timeout")
    truncated = sum(1 for r in records if r.kind == "truncated")
    errors = sum(1 for r in records if r.kind == "error")
    parts = [f"{zero} exit 0", f"{nonzero} exit non-zero"]
    if timeouts:
        parts.append(f"{timeouts} timed out")
    if truncated:
        parts.append(f"{truncated} truncated")
    parts.append(f"{errors} not run (unreachable or SSH error)")
    return f"{len(records)} nodes: " + ", ".join(parts)
