"""`pltui console FLEET` (and `pltui FLEET`): options, and a real run on a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
import fcntl

from pltui.cli import build_parser
from pltui.commands.console import run_console


def test_console_options():
    args = build_parser().parse_args(["console", "f.toml", "--readonly", "--no-mouse", "-g", "alpha",
                                      "-x", "node01", "--theme", "light", "--state", "/tmp/s"])
    assert args.func is run_console
    assert args.readonly and args.no_mouse and args.groups == ["alpha"] and args.exclude == ["node01"]
    assert args.theme == "light" and args.state == "/tmp/s"


def _drain(master: int, seconds: float) -> bytes:
    out = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            try:
                out += os.read(master, 65536)
            except OSError:
                break
    return out


def test_pltui_fleet_runs_on_a_terminal_and_quits(fleet_file, tmp_path):
    """`pltui FLEET --readonly` on a pty: it draws the fleet, sweeps (the nodes refuse), and `q`
    quits with status 0."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = dict(os.environ, TERM="xterm-256color", XDG_CONFIG_HOME=str(tmp_path / "xdg"),
               PLTUI_STATE=str(tmp_path / "state"))
    proc = subprocess.Popen([sys.executable, "-m", "pltui", str(fleet_file), "--readonly", "--no-mouse"],
                            stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    try:
        seen = _drain(master, 0.5)
        deadline = time.monotonic() + 30
        while b"refused" not in seen and time.monotonic() < deadline:
            seen += _drain(master, 0.5)
        assert b"testfleet" in seen and b"read-only" in seen and b"refused" in seen
        os.write(master, b"q")
        deadline = time.monotonic() + 15
        while proc.poll() is None and time.monotonic() < deadline:
            _drain(master, 0.2)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
