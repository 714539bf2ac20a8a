"""Shared helpers of the fault-injection suite."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

# What must never reach an operator's terminal: C0 controls but TAB and LF (ESC, BEL, CR, BS...),
# DEL, and the C1 controls U+0080-U+009F (CSI 0x9b and OSC 0x9d among them).
FORBIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def assert_terminal_safe(data: bytes, what: str) -> str:
    """`data` (a command's stdout or stderr) is UTF-8 text holding no control character but tab
    and newline. Returns the text."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AssertionError(f"{what}: not UTF-8 at byte {exc.start}: {data[max(0, exc.start - 40):exc.start + 40]!r}") from None
    found = FORBIDDEN.search(text)
    assert found is None, (f"{what}: control character {found.group()!r} at {found.start()}: "
                           f"{text[max(0, found.start() - 60):found.start() + 60]!r}")
    return text


async def pltui(*argv: str, timeout: float = 120, stdin=subprocess.DEVNULL, env: dict | None = None,
                preexec_fn=None) -> tuple[int, bytes, bytes]:
    """`python -m pltui ARGV` in a subprocess, without blocking the loop serving simulated nodes."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "pltui", *argv, stdin=stdin,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                env=env, preexec_fn=preexec_fn)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"pltui {' '.join(argv)} did not finish within {timeout}s") from None
    return proc.returncode, out, err


def processes_with(needle: str) -> list[int]:
    """PIDs of live (non-zombie) processes whose command line contains `needle`."""
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        if needle in cmdline and stat[stat.rfind(b")") + 2: stat.rfind(b")") + 3] != b"Z":
            found.append(int(entry))
    return found


async def wait_gone(needle: str, timeout: float = 15) -> list[int]:
    """Wait (bounded) until no process carries `needle`; return those left."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = processes_with(needle)
        if not left or loop.time() >= deadline:
            return left
        await asyncio.sleep(0.1)


def fill(directory: Path) -> Path:
    """Fill the file system holding `directory` to the last byte (a file named `filler`)."""
    path = Path(directory) / "filler"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 16, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(fd)
    return path


def json_strings(value) -> list[str]:
    """Every string (keys included) in a JSON-like document."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in json_strings(k) + json_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in json_strings(v)]
    return []
