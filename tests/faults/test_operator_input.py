"""Bad operator input: every CLI flag given nonsense, node-set expressions that are malformed or
match nothing, bundles that are not bundles. Each is refused before any node is contacted, with
exit status 2, one clear line on stderr (no traceback), nothing but text on the terminal.

The nodes of the fleet used here refuse connections: an input that slipped through validation
would reach them and end with exit status 1 instead of 2.

Already proven elsewhere (not repeated here): fleet-file problems (tests/test_fleet.py,
tests/test_cli_check.py), node-set errors at the Selector level (tests/test_nodesets.py), bad
bundles at the Bundle level (tests/test_rollout.py::test_bad_bundles_are_refused_with_one_clear_line).
"""

from __future__ import annotations

import gzip
import io
import socket
import tarfile

import pytest

from pltui.cli import main

from .helpers import assert_terminal_safe

FLEET = """
[fleet]
name = "f"
nodes = ["n[1-3]"]

[groups]
web = "n[1-2]"

[ssh]
connect_timeout = "1s"
command_timeout = "2s"
known_hosts = "{known}"

[service]
logs = ["logs/*"]
state = ["state"]

[[service.process]]
name = "web"
start = "sleep 1"

[node.n1]
host = "127.0.0.1"
port = {port}
[node.n2]
host = "127.0.0.1"
port = {port}
[node.n3]
host = "127.0.0.1"
port = {port}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("input")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = closed.getsockname()[1]
    fleet = base / "f.toml"
    fleet.write_text(FLEET.format(port=port, known=base / "known_hosts"))
    bundles = base / "bundles"
    bundles.mkdir()
    (bundles / "no-version" / "bin").mkdir(parents=True)
    (bundles / "no-version" / "bin" / "svc").write_text("#!/bin/sh\n")
    (bundles / "not-a-tarball.tar.gz").write_text("this is not a tarball\n")
    (bundles / "empty.tar.gz").write_bytes(b"")
    (bundles / "gzip-not-tar.tar.gz").write_bytes(gzip.compress(b"plain text, gzipped\n" * 100))
    with tarfile.open(bundles / "tar-without-version.tar.gz", "w:gz") as tar:
        data = b"#!/bin/sh\n"
        info = tarfile.TarInfo("bin/svc")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with tarfile.open(bundles / "version-is-a-dir.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("VERSION")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    (bundles / "good" / "bin").mkdir(parents=True)
    (bundles / "good" / "VERSION").write_text("1.0\n")
    (base / "a-file").write_text("not a directory\n")
    try:
        yield base
    finally:
        closed.close()


def cases():
    """(id, argv, fragment expected on stderr or None). FLEET, STATE, BASE are replaced."""
    F = "FLEET"
    state = ["--state", "STATE"]
    out = [
        # top level
        ("no-such-option", ["--bogus"], "unrecognized arguments"),
        ("console-missing-fleet", ["BASE/nope.toml"], "nope.toml"),
        ("check-missing-fleet", ["check", "BASE/nope.toml"], "nope.toml"),
        # node sets
        ("w-malformed", ["sweep", F, *state, "-w", "n["], "n["),
        ("w-no-match", ["sweep", F, *state, "-w", "nosuch"], "nosuch"),
        ("w-empty", ["sweep", F, *state, "-w", ""], None),
        ("w-reversed-range", ["sweep", F, *state, "-w", "n[3-1]"], None),
        ("w-huge-range", ["sweep", F, *state, "-w", "n[1-99999999]"], None),
        ("w-escape", ["sweep", F, *state, "-w", "n1\x1b[2J\x07,x\x9b1m"], None),
        ("w-unknown-group", ["sweep", F, *state, "-w", "@nogroup"], "nogroup"),
        ("g-unknown", ["sweep", F, *state, "-g", "nogroup"], "nogroup"),
        ("x-everything", ["sweep", F, *state, "-x", "n[1-3]"], None),
        ("X-all", ["sweep", F, *state, "-X", "all"], None),
        ("w-and-x-cancel", ["exec", F, *state, "-w", "@web", "-x", "n[1-2]", "--", "true"], None),
        ("heal-bogus", ["sweep", F, *state, "--heal", "always"], "--heal"),
        # history
        ("history-limit-text", ["history", F, *state, "--limit", "lots"], "--limit"),
        ("history-limit-negative", ["history", F, *state, "--limit", "-5"], "--limit"),
        ("history-limit-zero", ["history", F, *state, "--limit", "0"], "--limit"),
        # exec
        ("exec-no-command", ["exec", F, *state], "no command"),
        ("exec-blank-command", ["exec", F, *state, "--", "  "], "no command"),
        ("exec-timeout-text", ["exec", F, *state, "-t", "soon", "--", "true"], "--timeout"),
        ("exec-timeout-negative", ["exec", F, *state, "-t", "-1s", "--", "true"], "--timeout"),
        ("exec-timeout-zero", ["exec", F, *state, "-t", "0", "--", "true"], "--timeout"),
        ("exec-timeout-inf", ["exec", F, *state, "-t", "inf", "--", "true"], "--timeout"),
        ("exec-timeout-nan", ["exec", F, *state, "-t", "nan", "--", "true"], "--timeout"),
        ("exec-timeout-huge", ["exec", F, *state, "-t", "1e400", "--", "true"], "--timeout"),
        ("exec-outdir-under-a-file", ["exec", F, *state, "--outdir", "BASE/a-file/out", "--", "true"], "--outdir"),
        # logs
        ("logs-no-dest", ["logs", F, *state], "--dest"),
        ("logs-parallel-zero", ["logs", F, *state, "--dest", "BASE/d", "--parallel", "0"], "--parallel"),
        ("logs-parallel-negative", ["logs", F, *state, "--dest", "BASE/d", "--parallel", "-3"], "--parallel"),
        ("logs-parallel-text", ["logs", F, *state, "--dest", "BASE/d", "--parallel", "many"], "--parallel"),
        ("logs-compress-bogus", ["logs", F, *state, "--dest", "BASE/d", "--compress", "rar"], "--compress"),
        ("logs-dest-under-a-file", ["logs", F, *state, "--dest", "BASE/a-file/d"], "a-file"),
        ("logs-dest-is-a-file", ["logs", F, *state, "--dest", "BASE/a-file"], "a-file"),
        # capture
        ("capture-no-dest", ["capture", F, *state], "--dest"),
        ("capture-parallel-zero", ["capture", F, *state, "--dest", "BASE/c", "--parallel", "0"], "--parallel"),
        ("capture-timeout-zero", ["capture", F, *state, "--dest", "BASE/c", "--timeout", "0"], "--timeout"),
        ("capture-timeout-negative", ["capture", F, *state, "--dest", "BASE/c", "--timeout", "-1"], "--timeout"),
        ("capture-timeout-nan", ["capture", F, *state, "--dest", "BASE/c", "--timeout", "nan"], "--timeout"),
        ("capture-timeout-inf", ["capture", F, *state, "--dest", "BASE/c", "--timeout", "inf"], "--timeout"),
        ("capture-timeout-text", ["capture", F, *state, "--dest", "BASE/c", "--timeout", "soon"], "--timeout"),
        ("capture-dest-under-a-file", ["capture", F, *state, "--dest", "BASE/a-file/c"], "a-file"),
        # control
        ("start-unknown-process", ["start", F, *state, "--process", "nosuch"], "nosuch"),
        ("stop-malformed-nodeset", ["stop", F, *state, "-w", "n[1-"], None),
        ("reboot-without-confirmation", ["reboot-node", F, *state], None),
        ("bootstrap-cron-and-no-cron", ["bootstrap", F, *state, "--cron", "--no-cron"], None),
        # repair
        ("repair-no-match", ["repair", F, *state, "-w", "n9"], "n9"),
        # rollout: flags
        ("rollout-no-bundle", ["rollout", F, *state], "BUNDLE"),
        ("rollout-batch-text", ["rollout", F, "BASE/bundles/good", *state, "--batch", "abc"], None),
        ("rollout-batch-zero", ["rollout", F, "BASE/bundles/good", *state, "--batch", "0"], None),
        ("rollout-batch-negative", ["rollout", F, "BASE/bundles/good", *state, "--batch", "-2"], None),
        ("rollout-max-fail-text", ["rollout", F, "BASE/bundles/good", *state, "--max-fail", "some"], None),
        ("rollout-max-fail-negative", ["rollout", F, "BASE/bundles/good", *state, "--max-fail", "-1"], None),
        ("rollout-max-fail-over-100", ["rollout", F, "BASE/bundles/good", *state, "--max-fail", "200%"], None),
        ("rollout-parallel-zero", ["rollout", F, "BASE/bundles/good", *state, "--parallel", "0"], None),
        ("rollout-parallel-negative", ["rollout", F, "BASE/bundles/good", *state, "--parallel", "-4"], None),
        ("rollout-stage-unknown-group", ["rollout", F, "BASE/bundles/good", *state, "--stage", "nogroup"], "nogroup"),
        ("rollout-stage-empty-parts", ["rollout", F, "BASE/bundles/good", *state, "--stage", "::"], None),
        ("rollout-stage-batch-zero", ["rollout", F, "BASE/bundles/good", *state, "--stage", "web:0"], None),
        ("rollout-health-text", ["rollout", F, "BASE/bundles/good", *state, "--health-timeout", "soon"], "--health-timeout"),
        ("rollout-health-zero", ["rollout", F, "BASE/bundles/good", *state, "--health-timeout", "0"], "--health-timeout"),
        ("rollout-health-nan", ["rollout", F, "BASE/bundles/good", *state, "--health-timeout", "nan"], "--health-timeout"),
        ("rollout-status-unknown", ["rollout", F, *state, "--status", "rollout-nosuch"], None),
        ("rollout-resume-unknown", ["rollout", F, *state, "--resume", "rollout-nosuch"], None),
        ("rollout-rollback-unknown", ["rollout", F, *state, "--rollback", "rollout-nosuch"], None),
        ("rollout-resume-with-bundle", ["rollout", F, "BASE/bundles/good", *state, "--resume", "x"], None),
        ("rollout-status-and-resume", ["rollout", F, *state, "--status", "--resume", "x"], None),
        # rollout: bundles
        ("bundle-missing", ["rollout", F, "BASE/bundles/nope.tar.gz", *state, "--yes"], "nope.tar.gz"),
        ("bundle-without-version", ["rollout", F, "BASE/bundles/no-version", *state, "--yes"], "VERSION"),
        ("bundle-not-a-tarball", ["rollout", F, "BASE/bundles/not-a-tarball.tar.gz", *state, "--yes"], "not-a-tarball"),
        ("bundle-empty-file", ["rollout", F, "BASE/bundles/empty.tar.gz", *state, "--yes"], "empty.tar.gz"),
        ("bundle-gzip-not-tar", ["rollout", F, "BASE/bundles/gzip-not-tar.tar.gz", *state, "--yes"], "gzip-not-tar"),
        ("bundle-tar-without-version", ["rollout", F, "BASE/bundles/tar-without-version.tar.gz", *state, "--yes"],
         "VERSION"),
        ("bundle-version-is-a-dir", ["rollout", F, "BASE/bundles/version-is-a-dir.tar.gz", *state, "--yes"], "VERSION"),
        ("bundle-is-the-fleet-file", ["rollout", F, F, *state, "--yes"], None),
    ]
    return out


@pytest.mark.parametrize("argv, fragment", [pytest.param(a, f, id=i) for i, a, f in cases()])
def test_nonsense_is_refused_with_one_clear_line(setup, argv, fragment, capsysbinary, tmp_path):
    subst = {"FLEET": str(setup / "f.toml"), "STATE": str(tmp_path / "state"), "BASE": str(setup)}
    argv = [subst.get(a, a) for a in argv]
    argv = [a.replace("BASE/", str(setup) + "/") for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsysbinary.readouterr()
    text_out = assert_terminal_safe(out, "stdout")
    text_err = assert_terminal_safe(err, "stderr")
    assert code == 2, f"exit {code}\nstdout: {text_out}\nstderr: {text_err}"
    lines = [line for line in text_err.splitlines() if line.strip()]
    assert lines, "no message on stderr"
    assert "Traceback" not in text_err
    last = lines[-1]
    assert last.startswith("pltui"), last
    if fragment is not None:
        assert fragment in text_err, text_err
    # no node was contacted and nothing was written in their name
    assert "refused" not in text_out and "unreachable" not in text_out
    assert not (setup / "d").exists() or not any((setup / "d").iterdir())


def test_rollout_bundle_may_follow_options(tmp_path):
    """`pltui rollout FLEET --state S BUNDLE` reads BUNDLE (argparse alone would refuse it)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "pltui", "rollout", "sample_fleet.toml", "--state",
                             str(tmp_path), str(tmp_path / "no-such-bundle")],
                            capture_output=True, text=True, timeout=60,
                            cwd=__import__("pathlib").Path(__file__).resolve().parents[2])
    assert result.returncode == 2
    assert "no-such-bundle: no such bundle" in result.stderr
