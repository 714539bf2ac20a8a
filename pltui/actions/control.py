"""Control of the service through the node monitor: bootstrap, start, stop, restart, reboot-node.

Everything goes through `ROOT/.pltui/monitor.sh`, so a process stopped on purpose stays
stopped (the monitor honours its marker) and restart is stop-all then start-all. Bootstrap is
idempotent: a node whose monitor script and spec already match, with a live monitor, is left
untouched ("current").
"""

from __future__ import annotations

import hashlib
import shlex

from pltui.actions.base import Action, ActionError, ActionReport
from pltui.monitorspec import monitor_script, render_spec
from pltui.nodesha import SHA256_FUNCTION
from pltui.probe import ProbeError, shell_path
from pltui.probe import install as install_probe
from pltui.sanitize import clean_line
from pltui.ssh import NodeError

MONITOR = ".pltui/monitor.sh"
SPEC = ".pltui/spec"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _failure(result) -> str:
    text = clean_line(result.stderr or result.stdout, 200)
    return text or f"exit status {result.exit_status}"


class Bootstrap(Action):
    """Install or upgrade the monitor and its spec on nodes, and start it."""

    kind = "bootstrap"

    def __init__(self, *args, cron: bool | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.cron = cron
        self.script = monitor_script()
        self.spec = render_spec(self.fleet.service).encode()
        self.script_sha = _sha256(self.script)
        self.spec_sha = _sha256(self.spec)

    def arguments(self) -> dict:
        return {"cron": self.cron, "monitor_sha256": self.script_sha, "spec_sha256": self.spec_sha}

    def plan(self) -> dict:
        return {"kind": self.kind, "nodes": self.nodes, "monitor_sha256": self.script_sha,
                "spec_sha256": self.spec_sha, "cron": self.cron}

    async def _state(self, node) -> tuple[str | None, str | None, bool]:
        root = shell_path(node.root)
        command = (
            f"cd {root} 2>/dev/null || exit 3; "
            f"{SHA256_FUNCTION}; "  # sha256sum, else busybox, openssl, shasum (pltui.nodesha)
            f"for f in {MONITOR} {SPEC}; do if [ -f \"$f\" ]; then pltui_sha256 < \"$f\" | cut -c 1-64; else echo -; fi; done; "
            f"pid=$(head -n 1 .pltui/monitor.pid 2>/dev/null | tr -cd 0-9); "
            f"if [ -n \"$pid\" ] && kill -0 \"$pid\" 2>/dev/null; then echo alive; else echo dead; fi"
        )
        result = await self.transport.run(node, command)
        if result.exit_status == 3:
            raise ActionError(f"service root {node.root} does not exist")
        lines = result.stdout.decode("ascii", "replace").split()
        if len(lines) != 3:
            raise ActionError(f"unexpected answer while checking the monitor: {_failure(result)}")
        script, spec, alive = lines
        return (None if script == "-" else script), (None if spec == "-" else spec), alive == "alive"

    async def _write(self, node, path: str, data: bytes, mode: str) -> None:
        root = shell_path(node.root)
        tmp = f"{path}.tmp"
        command = (f"cd {root} && mkdir -p .pltui && umask 077 && cat > {shlex.quote(tmp)} && "
                   f"chmod {mode} {shlex.quote(tmp)} && mv -f {shlex.quote(tmp)} {shlex.quote(path)}")
        result = await self.transport.run(node, command, input=data)
        if result.exit_status != 0:
            raise ActionError(f"cannot write {path}: {_failure(result)}")

    async def _monitor(self, node, *words: str) -> None:
        root = shell_path(node.root)
        command = f"cd {root} && /bin/sh {MONITOR} " + " ".join(shlex.quote(w) for w in words)
        result = await self.transport.run(node, command)
        if result.exit_status != 0:
            raise ActionError(f"monitor.sh {' '.join(words)} failed: {_failure(result)}")

    async def bootstrap_node(self, name: str) -> None:
        node = self.fleet.nodes[name]
        try:
            self.progress(name, "checking")
            script, spec, alive = await self._state(node)
            try:  # the sweep's probe, installed so that sweeps need not send it (pltui.probe)
                await install_probe(self.transport, node)
            except ProbeError as exc:
                raise ActionError(str(exc)) from None
            changed = script != self.script_sha or spec != self.spec_sha
            if not changed and alive and self.cron is None:
                self.result(name, "skipped", "current: monitor and spec up to date, monitor alive")
                return
            if changed:
                self.progress(name, "installing")
                await self._write(node, SPEC, self.spec, "600")
                await self._write(node, MONITOR, self.script, "700")
                if alive:
                    await self._monitor(node, "stop")  # the service keeps running
            self.progress(name, "starting")
            await self._monitor(node, "start")
            if self.cron is True:
                await self._monitor(node, "cron-install")
            elif self.cron is False:
                await self._monitor(node, "cron-remove")
            what = "installed" if script is None else ("upgraded" if changed else "started")
            self.result(name, "done", f"monitor {what}")
        except NodeError as exc:
            self.result(name, "unreachable", exc.message)
        except ActionError as exc:
            self.result(name, "failed", str(exc))

    async def execute(self) -> ActionReport:
        await self.for_each(self.nodes, self.bootstrap_node, self.fleet.ssh.fanout)
        return self.report()


class ServiceControl(Action):
    """start / stop / restart / reload processes through the node monitor."""

    VERBS = {"start": "proc-start", "stop": "proc-stop", "restart": "proc-restart", "reload": "reload"}

    def __init__(self, *args, verb: str, process: str | None = None, **kwargs):
        if verb not in self.VERBS:
            raise ActionError(f"unknown control verb {verb!r}")
        self.kind = verb
        super().__init__(*args, **kwargs)
        self.verb = verb
        names = [p.name for p in self.fleet.service.processes]
        if process is not None and process not in names:
            raise ActionError(f"unknown process {process!r} (configured: {', '.join(names) or 'none'})")
        self.process = process

    def arguments(self) -> dict:
        return {"process": self.process or "all"}

    def plan(self) -> dict:
        return {"kind": self.kind, "nodes": self.nodes, "process": self.process or "all"}

    async def control_node(self, name: str) -> None:
        node = self.fleet.nodes[name]
        root = shell_path(node.root)
        target = shlex.quote(self.process or "all")
        command = (f"cd {root} 2>/dev/null || {{ echo 'service root missing' >&2; exit 3; }}; "
                   f"[ -f {MONITOR} ] || {{ echo 'node monitor not installed (run pltui bootstrap)' >&2; exit 4; }}; "
                   f"exec /bin/sh {MONITOR} {self.VERBS[self.verb]} {target}")
        self.progress(name, self.verb + "ing" if not self.verb.endswith("p") else "stopping")
        timeout = max(self.transport.command_timeout,
                      2 * sum(p.stop_timeout for p in self.fleet.service.processes) + 10)
        try:
            result = await self.transport.run(node, command, timeout=timeout)
        except NodeError as exc:
            self.result(name, "unreachable", exc.message)
            return
        if result.exit_status == 0:
            self.result(name, "done", clean_line(result.stdout, 200) or f"{self.verb} {self.process or 'all'}")
        else:
            self.result(name, "failed", _failure(result))

    async def execute(self) -> ActionReport:
        await self.for_each(self.nodes, self.control_node, self.fleet.ssh.fanout)
        return self.report()


class RebootNode(Action):
    """Run the fleet's configured node reboot command (only with explicit confirmation)."""

    kind = "reboot-node"

    def __init__(self, *args, confirmed: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.fleet.service.reboot_command:
            raise ActionError("the fleet file sets no [service].reboot_command")
        if not confirmed:
            raise ActionError("rebooting nodes needs the explicit --yes-reboot flag")

    def arguments(self) -> dict:
        return {"command": self.fleet.service.reboot_command}

    async def reboot(self, name: str) -> None:
        node = self.fleet.nodes[name]
        self.progress(name, "rebooting")
        try:
            result = await self.transport.run(node, self.fleet.service.reboot_command)
        except NodeError as exc:
            # A reboot often drops the connection before the command returns.
            if exc.state.value == "error" and "connection lost" in exc.message:
                self.result(name, "done", "reboot started (connection dropped)")
            else:
                self.result(name, "unreachable", exc.message)
            return
        if result.exit_status == 0:
            self.result(name, "done", "reboot command accepted")
        else:
            self.result(name, "failed", _failure(result))

    async def execute(self) -> ActionReport:
        await self.for_each(self.nodes, self.reboot, self.fleet.ssh.fanout)
        return self.report()
