"""`pltui web FLEET`: the console in a browser, served by textual-serve.

textual-serve starts one console process per browser tab (a shell command line, which is why
every word of it is quoted here) and relays it over a websocket. Those consoles share the fleet's
state directory: one of them sweeps, the others follow its results (SweepLock), so ten viewers
do not mean ten sweeps. The console runs `--readonly` unless `allow_actions`.

It binds 127.0.0.1 by default and has no authentication of its own: to let others in, put it
behind an SSH tunnel (`ssh -L 8000:127.0.0.1:8000 mgmt-host`) or a reverse proxy doing auth and
TLS, and pass that address as `public_url` (the page opens its websocket there).
"""

from __future__ import annotations

import ipaddress
import shlex
import sys
from typing import Sequence

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def console_command(fleet: str, *, allow_actions: bool = False, state: str | None = None,
                    selection: Sequence[str] = (), python: str | None = None) -> str:
    """The shell command textual-serve runs per browser tab, every word quoted."""
    argv = [python or sys.executable, "-m", "pltui", "console", fleet]
    if not allow_actions:
        argv.append("--readonly")
    if state:
        argv += ["--state", state]
    argv += list(selection)
    return shlex.join(argv)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def make_server(command: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, title: str = "pltui",
                public_url: str | None = None):
    from textual_serve.server import Server

    return Server(command, host=host, port=port, title=title, public_url=public_url)
