"""`!` on a node: an interactive OpenSSH session into the service root, and the real reason
when it fails.

Built here (not by string pasting): every value from the fleet file is checked before it
reaches ssh's command line (a host or user starting with `-` would be read as an option:
`-oProxyCommand=...` runs a command on this machine), `--` ends ssh's options before the
destination, and the root keeps its `~/` home expansion on the node (`cd '~/svc'` would look
for a directory literally named `~`). ssh's own messages go to a log file (`-E`), so after the
terminal comes back the console can say "Connection refused" instead of "exited with 255".
"""

from __future__ import annotations

import os
import subprocess
import tempfile

from pltui.fleet import Fleet, Node, ssh_word_problem
from pltui.jumps import check_jump
from pltui.ssh import ssh_command_line
from pltui.sanitize import clean_line

SSH_FAILED = 255      # OpenSSH's own failure status; anything else is the remote shell's


class ShellRefused(ValueError):
    """A fleet value that must not reach ssh's command line."""


def _check(what: str, value: str | None, node: str) -> None:
    """The fleet loader's own checks (ssh_word_problem; check_jump for a ProxyJump chain)."""
    if value is None:
        return
    why = "is empty" if not value else check_jump(value) if what == "proxy_jump" else ssh_word_problem(value)
    if why:
        raise ShellRefused(f"node {node}: {what} {value!r} is not usable on an ssh command line: {why}")


def shell_argv(fleet: Fleet, node: Node, log_file: str | None = None) -> list[str]:
    """argv for an interactive session to `node`; ShellRefused for an unsafe fleet value (checked
    again here: a fleet object may not come from the loader that validates them)."""
    _check("host", node.host, node.name)
    _check("user", node.user, node.name)
    _check("proxy_jump", node.proxy_jump, node.name)
    return ssh_command_line(fleet, node, log_file)


def ssh_failure(log_file: str) -> str:
    """The last meaningful lines ssh wrote about why it failed (one line)."""
    try:
        with open(log_file, encoding="utf-8", errors="replace") as fh:
            lines = [ln.strip() for ln in fh.read()[-4000:].splitlines() if ln.strip()]
    except OSError:
        return ""
    lines = [ln for ln in lines if not ln.startswith(("debug", "Pseudo-terminal will not"))]
    return clean_line("; ".join(lines[-2:]), 300)


def run_shell(argv_for, call=subprocess.call) -> tuple[int, str]:
    """Run ssh with its log captured: (exit status, ssh's own error when it failed)."""
    fd, log_file = tempfile.mkstemp(prefix="pltui-ssh-", suffix=".log")
    os.close(fd)
    try:
        code = call(argv_for(log_file))
        return code, ssh_failure(log_file) if code == SSH_FAILED else ""
    finally:
        try:
            os.unlink(log_file)
        except OSError:
            pass
