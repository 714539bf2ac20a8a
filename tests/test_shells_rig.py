"""The shell-node rig's refusals: a shell that cannot be had here is a clear one-line reason
(tests turn it into a skip), never a failure or a half-built node."""

from __future__ import annotations

import pytest

from rigs import testshells
from rigs.sshd_fleet import SshdFleet, find_sshd
from rigs.testshells import ShellUnavailable, NodeShell


def test_unknown_shell_is_named():
    with pytest.raises(ShellUnavailable, match=r"unknown test shell 'csh' \(known: dash, bash"):
        testshells.prepare("csh")


def test_missing_shell_binary_names_it_and_the_installer(monkeypatch):
    monkeypatch.setitem(testshells.SHELLS, "ghost", NodeShell("ghost", "/nonexistent/ghostsh", "not installed"))
    with pytest.raises(ShellUnavailable) as info:
        testshells.prepare("ghost")
    message = str(info.value)
    assert "/nonexistent/ghostsh is not installed" in message and "scripts/test.sh" in message
    assert "\n" not in message


def test_shells_on_unknown_nodes_are_refused_before_anything_starts(tmp_path):
    if find_sshd() is None:
        pytest.skip("OpenSSH sshd is not installed (scripts/test.sh installs openssh-server)")
    try:
        testshells.prepare("dash")
    except ShellUnavailable as exc:
        pytest.skip(str(exc))
    with pytest.raises(ValueError, match="shells names unknown nodes: nope001"):
        SshdFleet.start(1, tmp_path / "sshd", shells={"nope001": "dash"})
