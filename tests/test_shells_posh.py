"""posh as a node's /bin/sh: why it has no real-sshd node of its own (see tests/rigs/testshells.py).

pltui feeds node scripts to `/bin/sh -s`; posh refuses `-s`. Fed on stdin *without* `-s` (POSIX:
with no operand, sh reads its commands from stdin) posh runs logs.sh and release.sh, and
monitor.sh runs under it from start to stop. Run in a private mount namespace where /bin/sh is
posh, so every `sh` the scripts start is posh too. If posh ever gains `-s`, the first test fails:
then posh can get a full node in tests/test_shells.py (bind_sh=True)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rigs.testshells import ShellUnavailable, prepare

NODE = Path(__file__).resolve().parent.parent / "pltui" / "node"


@pytest.fixture(scope="module")
def posh():
    try:
        shell, _pw = prepare("posh")
    except ShellUnavailable as exc:
        pytest.skip(str(exc))
    return shell.binary


def as_sh(posh: str, script: str, stdin: bytes = b"", cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`script` run by /bin/sh in a mount namespace where /bin/sh is posh."""
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                           'mount --bind "$0" /bin/sh || exit 1; exec /bin/sh -c "$1"', posh, script],
                          input=stdin, capture_output=True, timeout=60, cwd=cwd)


def test_posh_refuses_sh_dash_s(posh):
    r = as_sh(posh, "exec /bin/sh -s", b"echo hi\n")
    assert r.returncode != 0 and b"-s" in r.stderr and r.stdout == b""


def test_posh_runs_logs_and_release_scripts_fed_without_dash_s(posh, tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.log").write_bytes(b"x\n")
    head = f"ROOT='{tmp_path}' MODE=list LOGS='logs/*'\n".encode()
    r = as_sh(posh, "exec /bin/sh", head + (NODE / "logs.sh").read_bytes())
    records = r.stdout.split(b"\0")
    assert records[0] == b"pltui-logs 1" and records[-2] == b"end", r.stderr
    assert any(rec.startswith(b"file 2 ") and rec.endswith(b" logs/a.log") for rec in records)
    head = f"ROOT='{tmp_path}' CMD=status ID=r1 SHA256=-\n".encode()
    r = as_sh(posh, "exec /bin/sh", head + (NODE / "release.sh").read_bytes())
    assert r.returncode == 0 and r.stdout.startswith(b"release-status 1\n") and r.stdout.endswith(b"end\n"), r.stderr


def test_monitor_runs_under_posh(posh, tmp_path):
    pl = tmp_path / ".pltui"
    pl.mkdir()
    (pl / "monitor.sh").write_bytes((NODE / "monitor.sh").read_bytes())
    (pl / "spec").write_text("SPEC_FORMAT=1\nINTERVAL=0.5\nNPROCS=1\nP1_NAME=web\nP1_START='exec sleep 1000'\n"
                             "P1_PIDFILE=.pltui/run/web.pid\nP1_STOP=''\nP1_RELOAD=''\nP1_STOP_TIMEOUT=3\n")
    script = ("export PLTUI_ROOT=\"$PWD\"; /bin/sh .pltui/monitor.sh start || exit 1; i=0; "
              "until grep -q '^proc web running' .pltui/state 2>/dev/null || [ $i -ge 100 ]; do "
              "sleep 0.1; i=$((i+1)); done; "
              "/bin/sh .pltui/monitor.sh status; s=$?; /bin/sh .pltui/monitor.sh stop-all; exit $s")
    r = as_sh(posh, script, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.decode()
    assert "monitor started" in out and "\nproc web running " in out and "web: stopped" in out, out
