"""Two operators on one fleet: while one console's action holds its nodes, every conflicting
action of another console is refused with a message naming the holder (user, pid, host, action)
and since when; other nodes, read-only commands and sweeps go on; the locks go with the action.

Already proven elsewhere (not repeated here): the lock table itself (tests/test_store.py::
test_node_locks_name_the_holder_and_release, ::test_stale_lock_of_dead_process_is_taken_over),
exec and logs --prune refusing in-process (tests/test_exec.py::test_output_cap_and_node_locks,
tests/test_logs.py::test_node_locks_and_audit_with_prune), one sweep loop per fleet
(tests/test_sweep.py::test_one_sweep_loop_per_fleet_others_follow).
"""

from __future__ import annotations

import asyncio
import getpass
import re
import socket
import subprocess
import sys
import time

import pytest

from pltui import fleet as fleet_mod
from pltui.actions.base import ActionError, Control
from pltui.paths import fleet_dir
from pltui.store import Store
from pltui.sweep import Engine

from .helpers import assert_terminal_safe, pltui


async def test_second_operator_is_refused_on_locked_nodes_with_the_holder_named(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(5, fleet={"service": {"logs": ["logs/*"], "process": [
        {"name": "web", "start": "sleep 1000"}]}, "ssh_overrides": {"connect_timeout": "2s", "command_timeout": "120s"}})
    state = tmp_path / "state"
    # The first action holds its nodes until the test lets it go (a fixed `sleep` window ran out
    # before the conflicting commands did on a loaded machine).
    release = tmp_path / "release"
    hold = f"i=0; while [ ! -e {release} ] && [ $i -lt 1000 ]; do sleep 0.1; i=$((i+1)); done"
    fleet = fleet_mod.load(sim.fleet_path)
    db = fleet_dir(state, fleet.name, fleet.path) / "pltui.db"
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "VERSION").write_text("9.9\n")
    first = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pltui", "exec", str(sim.fleet_path), "--state", str(state), "-w", "sim[001-003]",
        "--", hold, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if db.exists():
                store = Store(db)
                try:
                    held = store.db.execute("SELECT node, pid FROM node_locks").fetchall()
                finally:
                    store.close()
                if len(held) == 3:
                    break
            await asyncio.sleep(0.05)
        assert sorted(held) == [(f"sim00{i}", first.pid) for i in (1, 2, 3)], held
        holder = re.compile(rf"node sim00[123] is locked by {re.escape(getpass.getuser())} \(pid {first.pid} on "
                            rf"{re.escape(socket.gethostname())}, action exec-[0-9-]+-[0-9a-f]+\) since "
                            rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d")
        conflicting = [
            ["exec", "-w", "sim002", "--", "touch b-ran"],
            ["exec", "--in-root", "--", "touch b-ran"],
            ["restart", "-w", "sim003"],
            ["stop", "-w", "sim[003-004]"],
            ["bootstrap", "-w", "sim001"],
            ["repair", "-w", "sim001"],
            ["logs", "--prune", "--dest", str(tmp_path / "logs"), "-w", "sim002"],
            ["rollout", str(bundle), "-w", "sim001", "--yes"],
        ]
        for argv in conflicting:
            cmd, rest = argv[0], argv[1:]
            positional = [rest.pop(0)] if cmd == "rollout" else []
            code, out, err = await pltui(cmd, str(sim.fleet_path), *positional, "--state", str(state), *rest)
            text = assert_terminal_safe(err, "stderr")
            assert code == 2 and holder.search(text), (argv, code, out.decode(), text)
            assert len(text.strip().splitlines()) <= 2, text  # one clear line (a warning at most before it)
        assert not any((n.root / "b-ran").exists() for n in sim.nodes.values())
        assert not (sim.nodes["sim001"].root / ".pltui" / "staging").exists()  # the rollout uploaded nothing
        # other nodes, read-only work and sweeps go on meanwhile
        code, _, err = await pltui("exec", str(sim.fleet_path), "--state", str(state), "-w", "sim[004-005]", "--", "true")
        assert code == 0, err
        code, _, err = await pltui("exec", str(sim.fleet_path), "--state", str(state), "--no-lock", "--", "true")
        assert code == 0, err
        code, _, err = await pltui("sweep", str(sim.fleet_path), "--state", str(state))
        assert code == 1 and not err, err  # no process runs: degraded, but swept
        release.touch()
        out, _ = await asyncio.wait_for(first.communicate(), 30)
        assert first.returncode == 0, out
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    # the first action is over: its locks went with it
    code, _, err = await pltui("exec", str(sim.fleet_path), "--state", str(state), "-w", "sim002", "--", "true")
    assert code == 0, err


async def test_console_refuses_changing_actions_without_node_locks(make_sim_fleet, tmp_path):
    from pltui.tui.dispatch import SPECS, BuildContext, build

    sim = await make_sim_fleet(2)
    fleet = fleet_mod.load(sim.fleet_path)
    state = tmp_path / "a-file"
    state.write_text("not a directory\n")
    engine = Engine(fleet, state_dir=state)
    assert engine.store is None and engine.store_error
    ctx = BuildContext(fleet, engine, str(state), emit=lambda event: None, control=Control())
    try:
        with pytest.raises(ActionError, match="lock"):
            action, _ = await build(SPECS["exec"], ctx, sim.names, "touch ran")
            await action.run()
    finally:
        await engine.close()
    assert not any((n.root / "ran").exists() for n in sim.nodes.values())
