"""`!`: the ssh argv (no option injection, `--` before the destination, the root's `~/` expanded
on the node) and the real cause shown when ssh fails (a real OpenSSH client here)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess

import pytest
from conftest import wait_for
from fleetdata import feed

from pltui.ssh import interactive_command as remote_command
from pltui.tui.shell import ShellRefused, shell_argv


def test_the_remote_command_enters_a_home_relative_root(tmp_path):
    home = tmp_path / "home"
    (home / "svc root").mkdir(parents=True)
    shell = tmp_path / "fake-login-shell"
    shell.write_text("#!/bin/sh\npwd\n")
    shell.chmod(0o755)
    env = {"HOME": str(home), "SHELL": str(shell), "PATH": os.environ["PATH"]}
    for sh in ("/bin/sh", "/bin/bash", shutil.which("busybox") and "busybox-sh", "/bin/mksh"):
        if not sh or (sh.startswith("/") and not os.path.exists(sh)):
            continue
        argv = ["busybox", "sh"] if sh == "busybox-sh" else [sh]
        done = subprocess.run(argv + ["-c", remote_command("~/svc root")], env=env, capture_output=True,
                              text=True, cwd=tmp_path)
        assert done.stdout.strip() == str(home / "svc root"), (sh, done)
    done = subprocess.run(["/bin/sh", "-c", remote_command("~/missing")], env=env, capture_output=True, text=True,
                          cwd=tmp_path)
    assert "cannot enter the service root" in done.stderr and done.stdout.strip() == str(tmp_path)


def test_argv_refuses_option_like_values_and_ends_options(engine):
    fleet = engine.fleet
    node = fleet.nodes["node01"]
    argv = shell_argv(fleet, node)
    assert argv[-3] == "--" and argv[-2] == "127.0.0.1"
    for field, value in (("host", "-oProxyCommand=touch /tmp/x"), ("user", "-oProxyCommand=x"),
                         ("proxy_jump", "-J evil"), ("host", "a b"), ("host", "")):
        with pytest.raises(ShellRefused, match=field):
            shell_argv(fleet, dataclasses.replace(node, **{field: value}))


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")
async def test_a_failed_shell_says_why(engine, console, monkeypatch):
    app = console(engine)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        feed(engine)
        await pilot.pause(0.2)
        monkeypatch.setattr(type(app), "suspend", lambda self: contextlib.nullcontext())
        monkeypatch.setattr(subprocess, "call", lambda argv: subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=30).returncode)
        app.open_shell("node01")                         # 127.0.0.1:9: nothing listens there
        await wait_for(pilot, lambda: any("failed" in str(n.message) for n in app._notifications))
        messages = [str(n.message) for n in app._notifications]
        assert any("Connection refused" in m for m in messages), messages
        assert not any("exited with 255" in m for m in messages)
        engine.fleet.nodes["node02"] = dataclasses.replace(engine.fleet.nodes["node02"], host="-oProxyCommand=x")
        app.open_shell("node02")
        await pilot.pause(0.1)
        assert any("starts with '-'" in str(n.message) for n in app._notifications)
