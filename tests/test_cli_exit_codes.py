"""Code and documentation agree on exit codes, for every subcommand.

The README's "Exit codes:" statement is the contract; each subcommand's --help repeats it (the
epilog `pltui.cli` gives every subcommand). Then each subcommand is walked: a usage error is 2
(one line, no traceback), a fleet file that cannot be read is 2; an unhealthy node is 1 (sweep);
a local error (a full destination disk for `logs`, a destination that is a file for `capture`)
is 2, never 1, which would read as "some node is not healthy"."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pltui.cli import EXIT_CODES, build_parser, main
from tests.test_exec import cli
from tests.test_logs import tiny_disk, write_files  # noqa: F401  (tiny_disk: a fixture)

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = {"capture": ["--dest", "/nonexistent-dest"], "logs": ["--dest", "/nonexistent-dest"],
            "exec": ["--", "true"]}  # what a subcommand needs before it reads the fleet file
CREATES_FLEET = {"init"}  # writes a new fleet file: a missing one is its normal input


def fill(path: Path) -> None:
    """Write `path` until its file system is full."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def readme_exit_codes() -> dict[int, str]:
    text = " ".join((ROOT / "README.md").read_text().split())
    match = re.search(r"Exit codes: ([^.]*)\.", text)
    assert match, "README.md has no 'Exit codes:' statement"
    found = {int(code): what.strip(" ,") for code, what in re.findall(r"(\d+) (.*?)(?=, \d+ |$)", match.group(1))}
    return found


def subcommands() -> dict:
    parser = build_parser()
    return dict(parser._subparsers._group_actions[0].choices)


def run(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own exits (usage errors, --help)
        code = exc.code
    return code, capsys.readouterr().err


def test_readme_states_the_codes_the_cli_uses():
    codes = readme_exit_codes()
    assert set(codes) == {0, 1, 2, 130}, codes
    assert "usage" in codes[2] and "fleet-file" in codes[2] and "local" in codes[2]
    assert "some node" in codes[1]
    flat = " ".join(EXIT_CODES.split())
    for code, what in codes.items():
        assert f"{code} {what}" in flat, (code, what, flat)


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_subcommand_documents_and_keeps_the_codes(name, tmp_path, capsys):
    sub = subcommands()[name]
    assert " ".join(EXIT_CODES.split()) in " ".join(sub.format_help().split())
    code, err = run([name, "--no-such-option"], capsys)
    assert code == 2 and "pltui: error:" in err and "Traceback" not in err, err
    if any(a.dest == "fleet" for a in sub._actions) and name not in CREATES_FLEET:
        missing = str(tmp_path / "missing.toml")
        state = ["--state", str(tmp_path / "s")] if any(a.dest == "state" for a in sub._actions) else []
        code, err = run([name, missing, *state, *REQUIRED.get(name, [])], capsys)
        assert code == 2 and "Traceback" not in err, err
        assert "missing.toml" in err or "arguments are required" in err, err


async def test_unhealthy_is_1_and_local_errors_are_2(make_sim_fleet, tmp_path, tiny_disk):  # noqa: F811
    sim = await make_sim_fleet(2, fleet={"service": {"logs": ["logs/*.log"], "state": ["data"]},
                                         "ssh_overrides": {"connect_timeout": "2s", "command_timeout": "5s"}})
    for node in sim.nodes.values():
        write_files(node.root, {"logs/a.log": os.urandom(1_500_000), "data/s": b"s"})
    state = ["--state", str(tmp_path / "state")]
    await sim.nodes["sim002"].set_mode("refuse")
    rc, out, err = await cli("sweep", str(sim.fleet_path), *state)
    assert rc == 1, err
    await sim.nodes["sim002"].set_mode("ok")

    rc, out, err = await cli("logs", str(sim.fleet_path), *state, "--dest", str(tiny_disk / "dest"))
    assert rc == 2 and b"local disk full" in err, out + err
    # a capture onto a full disk is a local error too
    (tiny_disk / "cap").mkdir()
    fill(tiny_disk / "filler")
    rc, out, err = await cli("capture", str(sim.fleet_path), *state, "--dest", str(tiny_disk / "cap"))
    assert rc == 2 and b"local disk full" in err, out + err

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    rc, out, err = await cli("capture", str(sim.fleet_path), *state, "--dest", str(not_a_dir))
    assert rc == 2 and str(not_a_dir).encode() in err and b"Traceback" not in err, out + err
