"""`pltui exec` against real SSH nodes: in-process asyncssh nodes running real shell commands
(and one real OpenSSH sshd fleet test)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pltui import fleet as fleet_mod
from pltui.actions.base import ActionError
from pltui.actions.exec import ExecAction, group_records, render_groups, ExecRecord
from pltui.cli import build_parser
from pltui.demo.nodesim import fleet_document, pid_alive, write_toml
from pltui.ssh import Transport
from pltui.store import Store

SSH = {"connect_timeout": "2s", "command_timeout": "10s"}


async def cli(*argv: str, timeout: float = 60) -> tuple[int, bytes, bytes]:
    """Run `python -m pltui ARGV` without blocking the event loop that serves the sim nodes."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "pltui", *argv,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out, err


async def run_exec(fleet_path, tmp_path, command, nodes=None, **kwargs):
    fleet = fleet_mod.load(fleet_path)
    transport = Transport(fleet)
    store = Store(tmp_path / "state.db")
    events = []
    try:
        action = ExecAction(fleet, transport, store, nodes or fleet.node_names, command=command,
                            emit=events.append, **kwargs)
        report = await action.run()
    finally:
        await transport.close()
        store.close()
    return action, report, events


def running_check(pids) -> str:
    """Shell: exit 0 when one of `pids` still runs, 1 when none does. `kill -0` alone is not
    enough here: this container's init does not reap orphans, and kill -0 succeeds on a zombie."""
    words = " ".join(str(p) for p in pids)
    return (f"for p in {words}; do kill -0 $p 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' /proc/$p/status "
            f"2>/dev/null && exit 0; done; exit 1")


@pytest.fixture
async def sim5(make_sim_fleet):
    return await make_sim_fleet(5, fleet={"ssh_overrides": SSH})


# -- grouping -----------------------------------------------------------------------------------


async def test_identical_outputs_are_gathered_under_folded_node_sets(sim5, tmp_path):
    for name, node in sim5.nodes.items():
        (node.root / "VERSION").write_text("2.0\n" if name in ("sim002", "sim004") else "1.0\n")
    action, report, events = await run_exec(sim5.fleet_path, tmp_path, "cat VERSION")
    groups = action.groups()
    assert [(g.folded, g.stdout, g.exit_status) for g in groups] == [
        ("sim[001,003,005]", b"1.0\n", 0),
        ("sim[002,004]", b"2.0\n", 0),
    ]
    assert report.ok and report.exit_code == 0
    assert {e.node for e in events if getattr(e, "state", None) == "running"} == set(sim5.names)
    text = render_groups(groups, action.timeout)
    assert text[:3] == ["---------------- sim[001,003,005] (3) ----------------", "  1.0", "[exit 0]"]


async def test_distinct_exit_codes_form_separate_groups(sim5, tmp_path):
    codes = {"sim001": 0, "sim002": 3, "sim003": 3, "sim004": 0, "sim005": 7}
    for name, code in codes.items():
        (sim5.nodes[name].root / "code").write_text(f"{code}\n")
    action, report, _ = await run_exec(sim5.fleet_path, tmp_path, 'echo same; exit "$(cat code)"')
    groups = {(g.folded, g.exit_status) for g in action.groups()}
    assert groups == {("sim[001,004]", 0), ("sim[002-003]", 3), ("sim005", 7)}
    assert not report.ok and report.exit_code == 1
    assert report.results["sim002"].state == "failed" and report.results["sim001"].state == "done"
    # the same output with different stderr is another group too
    (sim5.nodes["sim004"].root / "code").write_text("0\n")
    action, _, _ = await run_exec(sim5.fleet_path, tmp_path, '[ "$(cat code)" = 7 ] && echo warn >&2; true')
    assert [(g.folded, g.stderr) for g in action.groups()] == [("sim[001-004]", b""), ("sim005", b"warn\n")]


def test_grouping_orders_errors_last_and_keeps_their_messages():
    records = [
        ExecRecord("n3", "error", error_class="refused", message="connection refused by n3:22"),
        ExecRecord("n1", "exit", 0, b"x\n"),
        ExecRecord("n2", "exit", 1, b"x\n"),
        ExecRecord("n4", "error", error_class="refused", message="connection refused by n4:22"),
        ExecRecord("n5", "exit", 0, b"x\n"),
    ]
    groups = group_records(records, ["n1", "n2", "n3", "n4", "n5"])
    assert [(g.folded, g.kind) for g in groups] == [("n[1,5]", "exit"), ("n2", "exit"), ("n[3-4]", "error")]
    lines = render_groups(groups, 10)
    assert lines[-3:] == ["[refused]", "  n3: connection refused by n3:22", "  n4: connection refused by n4:22"]


# -- trouble ------------------------------------------------------------------------------------


async def test_unreachable_node_is_reported_and_the_rest_succeed(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(5, modes={"sim003": "refuse"}, fleet={"ssh_overrides": SSH})
    state = tmp_path / "state"
    rc, out, err = await cli("exec", str(sim.fleet_path), "--state", str(state), "--", "echo", "hello")
    text = out.decode()
    assert rc == 1, err
    assert "---------------- sim[001-002,004-005] (4) ----------------\n  hello\n[exit 0]\n" in text
    assert "---------------- sim003 (1) ----------------\n[refused]\n  sim003: connection refused by 127.0.0.1:" in text
    assert "5 nodes: 4 exit 0, 0 exit non-zero, 1 not run" in text

    rc, out, _ = await cli("exec", str(sim.fleet_path), "--state", str(state), "--json", "-x", "sim001",
                           "--", "echo hello")
    doc = json.loads(out)
    assert rc == 1 and doc["ok"] is False
    assert sorted(doc["nodes"]) == ["sim002", "sim003", "sim004", "sim005"]
    assert doc["nodes"]["sim003"]["state"] == "unreachable" and doc["nodes"]["sim003"]["error_class"] == "refused"
    assert doc["nodes"]["sim002"]["exit_status"] == 0 and doc["nodes"]["sim002"]["stdout_bytes"] == 6
    groups = doc["summary"]["groups"]
    assert groups[doc["nodes"]["sim002"]["group"]]["stdout"] == "hello\n"
    assert groups[doc["nodes"]["sim003"]["group"]]["errors"]["sim003"].startswith("connection refused by")
    assert [(g["nodes"], g["count"], g["outcome"]) for g in groups] == [
        ("sim[002,004-005]", 3, "exit"), ("sim003", 1, "error")]
    # every node exited 0: exit status 0
    rc, _, _ = await cli("exec", str(sim.fleet_path), "--state", str(state), "-x", "sim003", "true")
    assert rc == 0


async def test_timeout_stops_the_remote_command(sim5, tmp_path):
    # The command leaves a background child and waits forever; both must be gone after the timeout.
    command = "sleep 1000 & echo $! > child.pid; echo $$ > shell.pid; echo started; wait"
    started = time.monotonic()
    action, report, _ = await run_exec(sim5.fleet_path, tmp_path, command, nodes=["sim001", "sim002"],
                                       timeout=1.0, in_root=True)
    assert time.monotonic() - started < 8
    for name in ("sim001", "sim002"):
        rec = action.records[name]
        assert rec.kind == "timeout", rec
        assert report.results[name].state == "failed"
    assert [g.folded for g in action.groups()] == ["sim[001-002]"]
    root = sim5.nodes["sim001"].root
    pids = [int((root / f).read_text()) for f in ("child.pid", "shell.pid")]
    # checked on the node itself, through SSH, and locally (the sim's nodes are local processes)
    action, _, _ = await run_exec(sim5.fleet_path, tmp_path, running_check(pids), nodes=["sim001"])
    assert action.records["sim001"].exit_status == 1, action.records["sim001"]
    action, _, _ = await run_exec(sim5.fleet_path, tmp_path, running_check([os.getpid()]), nodes=["sim001"])
    assert action.records["sim001"].exit_status == 0  # the check does see a live process
    assert not any(pid_alive(p) for p in pids)


async def test_escapes_sanitised_on_the_terminal_but_raw_in_outdir(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(3, modes={"sim003": "garbage"}, fleet={"ssh_overrides": SSH})
    outdir = tmp_path / "out"
    command = r"printf '\033[2J\033]0;pwned\007[bold red]x[/] [/oops]\233\n'; printf 'e\033[31m\n' >&2"
    rc, out, err = await cli("exec", str(sim.fleet_path), "--state", str(tmp_path / "state"),
                             "--outdir", str(outdir), "--", command)
    assert rc == 0, err
    text = out.decode()
    # Checked as characters: random garbage may legitimately hold e.g. U+26C4, whose UTF-8 has 0x9b.
    for stream in (text, err.decode()):
        assert not any(c in stream for c in ("\x1b", "\x07", "\x9b", "\x9d")), stream
    assert "[bold red]x[/] [/oops]" in text  # Rich markup is shown as text, never interpreted
    assert "---------------- sim[001-002] (2) ----------------" in text
    assert "---------------- sim003 (1) ----------------" in text  # garbage node, sanitised
    raw = (outdir / "sim001" / "stdout").read_bytes()
    assert raw == b"\x1b[2J\x1b]0;pwned\x07[bold red]x[/] [/oops]\x9b\n"
    assert (outdir / "sim001" / "stderr").read_bytes() == b"e\x1b[31m\n"
    assert (outdir / "sim001" / "status").read_text() == "exit 0\n"
    assert b"\x1b[2J" in (outdir / "sim003" / "stdout").read_bytes()
    # JSON output carries the sanitised text, escaped
    rc, out, _ = await cli("exec", str(sim.fleet_path), "--state", str(tmp_path / "state"), "--json", "-w",
                           "sim001", "--", command)
    assert b"\x1b" not in out and b"\\u001b" not in out
    assert json.loads(out)["summary"]["groups"][0]["stdout"].startswith("[bold red]x[/]")


async def test_outdir_files_for_every_node(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(3, modes={"sim002": "refuse"}, fleet={"ssh_overrides": SSH})
    outdir = tmp_path / "o" / "deep"
    rc, out, err = await cli("exec", str(sim.fleet_path), "--state", str(tmp_path / "state"), "--outdir",
                             str(outdir), "--in-root", "--", 'echo "$PLTUI_SIM_NODE"; echo oops >&2; exit 4')
    assert rc == 1
    assert sorted(os.listdir(outdir)) == ["sim001", "sim002", "sim003"]
    for name in ("sim001", "sim003"):
        assert (outdir / name / "stdout").read_bytes() == f"{name}\n".encode()
        assert (outdir / name / "stderr").read_bytes() == b"oops\n"
        assert (outdir / name / "status").read_text() == "exit 4\n"
    assert sorted(os.listdir(outdir / "sim002")) == ["status"]
    assert (outdir / "sim002" / "status").read_text().startswith("refused: connection refused")
    # output goes to the files, the terminal still gets the gathered view
    assert "[exit 4]" in out.decode()


async def test_operator_command_reaches_the_shell_as_given(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(2, fleet={"ssh_overrides": SSH})
    # a node root whose name is hostile: only ever quoted, never interpreted
    evil = sim.nodes["sim002"].root / "we ird 'q' \"d\" $(touch PWNED) `touch PWNED2`; x"
    evil.mkdir()
    doc = fleet_document(sim.nodes.values(), name="simfleet", user=sim.user, identity_file=sim.client_key_path,
                         known_hosts=sim.known_hosts_path, ssh_overrides=SSH)
    doc["node"]["sim002"]["root"] = str(evil)
    fleet_path = write_toml(tmp_path / "fleet.toml", doc)
    command = ("printf '%s|' \"a  b\" 'c'\"'\"'d' \"$(echo sub)\" '$(not run)' `echo bt` \"\\$HOME\"; "
               "x=1; echo; echo \"$x\" > /dev/null && echo and\n echo newline")
    local = subprocess.run(["/bin/sh", "-c", command], capture_output=True).stdout
    action, report, _ = await run_exec(fleet_path, tmp_path, command)
    assert report.ok
    assert action.records["sim001"].stdout == local == b"a  b|c'd|sub|$(not run)|bt|$HOME|\nand\nnewline\n"
    action, report, _ = await run_exec(fleet_path, tmp_path, "pwd", in_root=True)
    assert action.records["sim002"].stdout.decode().rstrip("\n") == str(evil)
    assert action.records["sim001"].stdout.decode().rstrip("\n") == str(sim.nodes["sim001"].root)
    assert not list(sim.base_dir.rglob("PWNED*")) and not list(tmp_path.rglob("PWNED*"))


async def test_missing_service_root_with_in_root(sim5, tmp_path):
    doc = fleet_document(sim5.nodes.values(), name="simfleet", user=sim5.user,
                         identity_file=sim5.client_key_path, known_hosts=sim5.known_hosts_path,
                         ssh_overrides=SSH)
    doc["node"]["sim001"]["root"] = str(sim5.nodes["sim001"].root / "nope")
    fleet_path = write_toml(tmp_path / "fleet.toml", doc)
    action, report, _ = await run_exec(fleet_path, tmp_path, "touch ran-here", nodes=["sim001"], in_root=True)
    assert action.records["sim001"].exit_status == 125
    assert b"cannot enter the service root" in action.records["sim001"].stderr
    assert not (sim5.nodes["sim001"].root / "ran-here").exists()


async def test_output_cap_and_node_locks(sim5, tmp_path):
    action, report, _ = await run_exec(sim5.fleet_path, tmp_path, "yes 0123456789abcdef", nodes=["sim001"],
                                       max_output=64 * 1024)
    rec = action.records["sim001"]
    assert rec.kind == "truncated" and len(rec.stdout) == 64 * 1024 and not report.ok
    # another action holds sim002: exec refuses (exit 2 on the CLI); --no-lock runs anyway
    store = Store(tmp_path / "state.db")
    try:
        store.lock_nodes(["sim002"], "rollout-other")
        with pytest.raises(ActionError, match="sim002 is locked"):
            await run_exec(sim5.fleet_path, tmp_path, "true", nodes=["sim001", "sim002"])
        action, report, _ = await run_exec(sim5.fleet_path, tmp_path, "true", nodes=["sim001", "sim002"], lock=False)
        assert report.ok
        audit = store.audit_log(10)
        assert any(a["action"] == "exec" and "true" in json.dumps(a) for a in audit)
    finally:
        store.unlock_nodes("rollout-other")
        store.close()


def test_command_words_after_fleet_and_dashes():
    parser = build_parser()
    cases = {
        ("exec", "f.toml", "-w", "a", "--", "echo", "-n", "hi"): (["echo", "-n", "hi"], ["a"]),
        ("exec", "f.toml", "--", "ls", "-l", "--", "x"): (["ls", "-l", "--", "x"], []),
        ("exec", "f.toml", "-t", "5", "uname", "-a"): (["uname", "-a"], []),
        ("exec", "-wa", "f.toml", "--in-root", "ls", "-w", "b"): (["ls", "-w", "b"], ["a"]),
    }
    for argv, (command, include) in cases.items():
        args = parser.parse_args(list(argv))
        assert (args.command, args.include) == (command, include), argv


async def test_usage_errors_exit_2(sim5, tmp_path):
    rc, _, err = await cli("exec", str(sim5.fleet_path), "--state", str(tmp_path / "s"))
    assert rc == 2 and b"no command given" in err
    rc, _, err = await cli("exec", str(sim5.fleet_path), "--state", str(tmp_path / "s"), "-t", "soon", "true")
    assert rc == 2 and b"--timeout" in err
    rc, _, err = await cli("exec", str(sim5.fleet_path), "--state", str(tmp_path / "s"), "-w", "nosuch", "true")
    assert rc == 2


# -- real OpenSSH ---------------------------------------------------------------------------------


async def test_exec_on_real_sshd_with_a_down_node_and_a_timeout(make_sshd_fleet, tmp_path):
    sshd = await asyncio.to_thread(make_sshd_fleet, 4, solo=["sshd004"], fleet={"ssh_overrides": SSH})
    await asyncio.to_thread(sshd.down, "sshd004")
    rc, out, err = await cli("exec", str(sshd.fleet_path), "--state", str(tmp_path / "state"), "--json",
                             "--", "echo hi; exit 3")
    doc = json.loads(out)
    assert rc == 1, err
    assert [(g["nodes"], g["outcome"], g["exit_status"], g["stdout"]) for g in doc["summary"]["groups"]] == [
        ("sshd[001-003]", "exit", 3, "hi\n"), ("sshd004", "error", None, "")]
    assert doc["nodes"]["sshd004"]["state"] == "unreachable"
    # A command that never exits is stopped on the node by the timeout (sshd itself would let
    # it run on after the channel closed).
    command = "sleep 1000 & echo $! > child.pid; echo $$ > shell.pid; wait"
    action, report, _ = await run_exec(sshd.fleet_path, tmp_path, command, nodes=["sshd001"], timeout=1.0,
                                       in_root=True)
    assert action.records["sshd001"].kind == "timeout", action.records["sshd001"]
    root = Path(sshd.nodes["sshd001"].root)
    pids = [int((root / f).read_text()) for f in ("child.pid", "shell.pid")]
    deadline = time.monotonic() + 10
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not any(pid_alive(p) for p in pids)
    action, _, _ = await run_exec(sshd.fleet_path, tmp_path, running_check(pids), nodes=["sshd001"])
    assert action.records["sshd001"].kind == "exit" and action.records["sshd001"].exit_status == 1
