"""Hostile or broken nodes: what a node prints never reaches the operator's terminal raw, never
describes another node, never runs in a shell; hostile file names are digested, repaired and
collected like any other; a changed host key is refused, reported, and never recorded.

Already proven elsewhere (not repeated here):
- the probe parser on garbled/hostile text: tests/test_probe_parser.py
- a garbage-mode node classified garbled: tests/test_sweep.py::test_faulty_nodes_are_classified_and_do_not_stall_the_rest
- `pltui exec` output sanitised on the terminal, raw in --outdir: tests/test_exec.py::
  test_escapes_sanitised_on_the_terminal_but_raw_in_outdir
- hostile names in log globs, collected verified: tests/test_logs.py::test_sigkill_during_prune_collection_then_rerun_loses_nothing,
  ::test_collect_and_prune_on_real_sshd (HOSTILE names); in repair: tests/test_repair.py::
  test_hostile_file_names_are_repaired_without_running_anything; in capture: tests/test_capture.py::
  test_missing_paths_and_hostile_names
- changed host key under strict and accept-new (sim): tests/test_sweep.py::test_changed_host_key_is_refused_under_every_policy;
  strict on real sshd: tests/test_sweep_sshd.py::test_sweep_reports_each_kind_of_trouble
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from pathlib import Path

from pltui import fleet as fleet_mod
from pltui.actions.repair import RepairAction
from pltui.model import SSHState
from pltui.sanitize import is_clean
from pltui.sweep import Engine

from .helpers import assert_terminal_safe, json_strings, pltui

ESCAPES = "\x1b[2J\x1b[H\x1b]0;pwned\x07\x1b]52;c;cHduZWQ=\x07\x1b[31m\x9b31m\x9dC1\x9c\x07\x08\r"
MARKUP = "[bold red]x[/] [/oops] [link=http://x]y[/link]"
# A probe shell killer: walks up from this process and SIGKILLs every `/bin/sh -s` (the probe).
KILL_PROBE = """p=$$
while [ "$p" -gt 1 ]; do
    case "$(tr '\\0' ' ' < /proc/$p/cmdline 2>/dev/null)" in "/bin/sh -s "*) kill -9 "$p" ;; esac
    p=$(sed -n 's/^PPid:[[:space:]]*//p' /proc/$p/status)
done
"""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# Hostile probe output through real OpenSSH


async def test_hostile_probe_output_through_real_sshd(make_sshd_fleet, tmp_path):
    service = {"important": ["etc/"], "protocol_command": "if [ -f KILLPROBE ]; then sh KILLPROBE; fi; head -n 1 PROTOCOL",
               "monitor_interval": "5s",
               "process": [{"name": "web", "start": "sleep 1000", "pidfile": "run/web.pid"}]}
    sshd = await asyncio.to_thread(make_sshd_fleet, 7, fleet={
        "service": service, "ssh_overrides": {"connect_timeout": "3s", "command_timeout": "10s"}})
    roots = {name: Path(node.root) for name, node in sshd.nodes.items()}
    for _name, root in roots.items():
        (root / "etc").mkdir()
        (root / "etc" / "app.conf").write_text("port=80\n")
        (root / "VERSION").write_text("1.0\n")
        (root / "PROTOCOL").write_text("7\n")
        (root / ".pltui").mkdir()
    # sshd002: escapes, markup, C1 bytes, then forged records for itself and another node
    (roots["sshd002"] / "VERSION").write_bytes(
        ("2.0" + ESCAPES + MARKUP + "\nproc web alive 1\nend\npltui-probe 1\nclock 1\nversion FORGED\n"
         "sshd001 up ok\nend\n").encode())
    # sshd003: a heartbeat claiming a live process and forged records; the pidfile says otherwise
    now = int(time.time())
    (roots["sshd003"] / ".pltui" / "state").write_text(
        f"heartbeat {now}\nproc web running 1 0 - -\nend\npltui-probe 1\nproc web running 1 0 - -\n"
        f"version FORGED\nmonitor alive 1 0\n")
    # sshd004: binary
    (roots["sshd004"] / "VERSION").write_bytes(b"1.0\xff\xfe\x00\x01\x9b\x1b[2J\n")
    # sshd005: gigantic (a 2.2 MB heartbeat: over the 2 MiB probe output cap)
    (roots["sshd005"] / ".pltui" / "state").write_text(f"heartbeat {now}\n" + ("proc web " + "x" * 11000 + "\n") * 200)
    # sshd006: truncated (the probe shell killed half-way through its report)
    (roots["sshd006"] / "KILLPROBE").write_text(KILL_PROBE)
    # sshd007: escapes and markup in the protocol command's output
    (roots["sshd007"] / "PROTOCOL").write_text("7" + ESCAPES + "[/]\n")
    for root in roots.values():
        for path in [root, *root.rglob("*")]:
            os.chown(path, sshd.pw.pw_uid, sshd.pw.pw_gid)

    engine = Engine(fleet_mod.load(sshd.fleet_path), state_dir=tmp_path / "state")
    try:
        started = time.monotonic()
        await engine.sweep(checksums=True)
        elapsed = time.monotonic() - started
    finally:
        await engine.close()
    s = engine.statuses
    assert s["sshd001"].ssh == SSHState.OK and s["sshd001"].version == "1.0" and s["sshd001"].protocol == "7"
    assert s["sshd002"].ssh == SSHState.OK
    # the first line only: escapes gone (7-bit sequences whole, stray C1/C0 bytes replaced), markup kept as text
    assert s["sshd002"].version.startswith("2.0") and s["sshd002"].version.endswith(MARKUP), s["sshd002"].version
    assert s["sshd003"].ssh == SSHState.OK and not s["sshd003"].processes[0].alive
    assert s["sshd003"].monitor != "alive" and s["sshd003"].version == "1.0"
    # bytes that are not UTF-8 stay in their field, escaped, with a warning; the node stays up
    assert s["sshd004"].ssh == SSHState.OK and s["sshd004"].version.startswith("1.0\\xff\\xfe"), s["sshd004"]
    assert any("UTF-8" in w for w in s["sshd004"].warnings), s["sshd004"]
    # a gigantic heartbeat: the probe cuts its lines, the parser distrusts it and says so
    assert s["sshd005"].ssh == SSHState.OK and s["sshd005"].monitor != "alive", s["sshd005"]
    assert any("heartbeat" in w for w in s["sshd005"].warnings), s["sshd005"]
    assert s["sshd006"].ssh == SSHState.GARBLED and "truncated" in s["sshd006"].error, s["sshd006"]
    assert s["sshd007"].ssh == SSHState.OK and s["sshd007"].protocol.startswith("7")
    assert s["sshd007"].protocol.endswith("[/]") and "pwned" not in s["sshd007"].protocol
    assert elapsed < 10 + 5, elapsed
    for status in s.values():  # nothing any node said holds a control character
        for text in json_strings(status.to_json()):
            assert is_clean(text) and "\n" not in text, (status.node, text)
    assert "FORGED" not in json.dumps([st.to_json() for st in s.values()])
    # the CLI, human and JSON: terminal-safe, and no line forged for another node
    for extra in ((), ("--json",)):
        code, out, err = await pltui("sweep", str(sshd.fleet_path), "--state", str(tmp_path / "cli"), "--checksums",
                                     *extra)
        text = assert_terminal_safe(out, "stdout")
        assert_terminal_safe(err, "stderr")
        assert code == 1 and "FORGED" not in text
        if not extra:
            rows = [line.split()[0] for line in text.splitlines() if line.startswith("sshd")]
            assert rows == sshd.names, rows  # one row per node, none forged
        else:
            assert [n["node"] for n in json.loads(out)["nodes"]] == sshd.names


# --------------------------------------------------------------------------------------------
# Hostile file names in important globs (directories included): digested, drift found, repaired


HOSTILE_NAMES = ["a b.conf", "new\nline.conf", "trailing\n", "it's \"q\".conf", "$(touch pwned).conf",
                 "semi;touch pwned2.conf", "back`touch pwned3`.conf", "-rf", "*star", "glob[ab]?.conf",
                 "tab\there", "back\\slash", "\x1b[31mred", "%41percent", "ünï©ødé"]


def collected_copies(dest: Path, node: str) -> dict[bytes, bytes]:
    """node path -> decompressed content of each copy DEST's manifest lists for `node`."""
    import gzip
    import subprocess

    from pltui.actions.logs import MANIFEST, unpct

    copies = {}
    for line in (dest / node / MANIFEST).read_bytes().splitlines():
        rec = json.loads(line)
        if rec["kind"] != "collected":
            continue
        data = (dest / node / os.fsdecode(unpct(rec["stored"]))).read_bytes()
        if rec["codec"] == "zstd":
            data = subprocess.run(["zstd", "-d", "-c", "-q"], input=data, capture_output=True, check=True).stdout
        elif rec["codec"] == "gzip":
            data = gzip.decompress(data)
        assert sha(data) == rec["sha256"]
        copies[unpct(rec["path"])] = data
    return copies


async def test_hostile_file_names_in_important_globs_and_directories(make_sim_fleet, tmp_path):
    service = {"important": ["conf/*", "etc/"], "logs": ["logs/*"]}
    sim = await make_sim_fleet(4, fleet={"service": service, "ssh_overrides": {"connect_timeout": "2s",
                                                                                "command_timeout": "10s"}})
    paths = [f"conf/{n}" for n in HOSTILE_NAMES] + [f"etc/{n}" for n in HOSTILE_NAMES]
    paths += ["etc/new\ndir/inner.conf", "etc/-dir/x", "etc/sub dir;x/$(touch pwned4)"]
    for node in sim.nodes.values():
        for rel in paths:
            (node.root / rel).parent.mkdir(parents=True, exist_ok=True)
            (node.root / rel).write_bytes(b"good " + rel.encode() + b"\n")
    victim = sim.nodes["sim004"]
    for rel in paths:
        (victim.root / rel).write_bytes(b"drifted\n")
    fleet = fleet_mod.load(sim.fleet_path)
    engine = Engine(fleet, state_dir=tmp_path / "state")
    try:
        await engine.sweep(checksums=True)
        assert engine.statuses["sim001"].ssh == SSHState.OK, engine.statuses["sim001"].error
        assert set(engine.statuses["sim001"].digests) == set(paths), \
            sorted(set(paths) ^ set(engine.statuses["sim001"].digests))
        assert sorted(engine.consensus.drift["sim004"]) == sorted(paths)
        report = await RepairAction(fleet, engine.transport, None, ["sim004"], engine=engine, resweep=False).run()
    finally:
        await engine.close()
    assert report.ok, report.to_json()
    assert sorted(report.results["sim004"].data["repaired"]) == sorted(paths)
    for rel in paths:
        assert (victim.root / rel).read_bytes() == b"good " + rel.encode() + b"\n", rel
    # the same names as log files: every one collected, each copy's checksum the node's
    for node in sim.nodes.values():
        (node.root / "logs").mkdir()
        for name in HOSTILE_NAMES:
            (node.root / "logs" / name).write_bytes(f"log {name} of {node.name}\n".encode() * 100)
    code, out, err = await pltui("logs", str(sim.fleet_path), "--state", str(tmp_path / "cli"),
                                 "--dest", str(tmp_path / "logs"), "--json")
    assert code == 0, err
    for node in sim.nodes.values():
        copies = collected_copies(tmp_path / "logs", node.name)
        assert {p.decode("utf-8", "surrogateescape") for p in copies} == {f"logs/{n}" for n in HOSTILE_NAMES}
        for name in HOSTILE_NAMES:
            assert copies[f"logs/{name}".encode()] == (node.root / "logs" / name).read_bytes(), name
    for where in (sim.base_dir, tmp_path, Path.cwd()):
        assert not list(where.rglob("pwned*")), where
    # the human report shows every name on one line of its own (a newline in a name forges no line)
    for rel in ("conf/new\nline.conf", "etc/new\ndir/inner.conf", "conf/\x1b[31mred"):
        (victim.root / rel).write_bytes(b"drifted again\n")
    for extra in (("-n",), ()):
        code, out, err = await pltui("repair", str(sim.fleet_path), "--state", str(tmp_path / "cli"), *extra)
        text = assert_terminal_safe(out, "stdout")
        assert_terminal_safe(err, "stderr")
        assert code == (1 if extra else 0), out + err
        lines = text.splitlines()
        assert sum(1 for line in lines if "new" in line) == 2, text
        assert all(line.startswith(("sim", "    ", "checksum sweep", "repair ")) for line in lines), text


# --------------------------------------------------------------------------------------------
# Host keys that change: refused under every policy, reported, never recorded


async def test_changed_host_key_refused_reported_never_recorded_real_sshd(make_sshd_fleet, tmp_path):
    sshd = await asyncio.to_thread(make_sshd_fleet, 3, solo=["sshd002"], fleet={
        "service": {"logs": ["logs/*"]}, "ssh_overrides": {"connect_timeout": "3s", "command_timeout": "10s"}})
    await asyncio.to_thread(sshd.set_host_key, "sshd002")
    known = sshd.known_hosts_path
    before = known.read_bytes()
    ran = Path(sshd.nodes["sshd002"].root) / "ran"
    for policy in ("strict", "accept-new"):
        path = sshd.write_fleet(tmp_path / f"{policy}.toml", service={"logs": ["logs/*"]},
                                ssh_overrides={"host_key_policy": policy, "connect_timeout": "3s"})
        state = str(tmp_path / f"state-{policy}")
        code, out, err = await pltui("sweep", str(path), "--state", state)
        text = assert_terminal_safe(out, "stdout")
        row = [line for line in text.splitlines() if line.startswith("sshd002")]
        assert code == 1 and row and "hostkey" in row[0], (policy, text)
        assert "host key CHANGED" in text and str(known) in text, (policy, text)
        code, out, _ = await pltui("sweep", str(path), "--state", state, "--json")
        nodes = {n["node"]: n for n in json.loads(out)["nodes"]}
        assert nodes["sshd002"]["ssh"] == "hostkey" and nodes["sshd001"]["ssh"] == "ok", policy
        code, out, _ = await pltui("exec", str(path), "--state", state, "--json", "--in-root", "--", "touch ran")
        doc = json.loads(out)
        assert doc["nodes"]["sshd002"]["error_class"] == "hostkey", (policy, doc["nodes"]["sshd002"])
        assert not ran.exists(), f"{policy}: a command ran on a node with a changed host key"
        code, out, _ = await pltui("logs", str(path), "--state", state, "--dest", str(tmp_path / f"logs-{policy}"),
                                   "--json")
        result = json.loads(out)["nodes"]["sshd002"]
        assert result["state"] in ("failed", "unreachable") and "host key CHANGED" in result["message"], (policy, result)
        assert known.read_bytes() == before, f"{policy}: known_hosts changed"


async def test_revoked_host_key_refused_under_accept_new(make_sim_fleet, tmp_path):
    """accept-new accepts a host with *no* key on record; a host whose key is marked @revoked has
    one, and is refused."""
    sim = await make_sim_fleet(2)
    node = sim.nodes["sim001"]
    known = tmp_path / "known_hosts"
    line = sim.known_hosts_path.read_text().splitlines()[0]
    assert line.startswith(f"[127.0.0.1]:{node.port} ")
    known.write_text(f"@revoked {line}\n" + "\n".join(sim.known_hosts_path.read_text().splitlines()[1:]) + "\n")
    before = known.read_bytes()
    path = sim.write_fleet(tmp_path / "f.toml", ssh_overrides={"host_key_policy": "accept-new",
                                                               "known_hosts": str(known)})
    engine = Engine(fleet_mod.load(path), state_dir=tmp_path / "state")
    try:
        await engine.sweep()
    finally:
        await engine.close()
    assert engine.statuses["sim001"].ssh == SSHState.HOSTKEY, engine.statuses["sim001"]
    assert engine.statuses["sim002"].ssh == SSHState.OK
    assert known.read_bytes() == before


# --------------------------------------------------------------------------------------------
# No byte from a node reaches the operator's terminal unsanitised: every CLI command


HOSTILE_BYTES = ("\x1b[2J\x1b[H\x1b]0;pwned\x07\x1b]52;c;cHduZWQ=\x07\x1b[31mred\x1b[0m \x9b31m \x9dC1\x9c \x07\x08\r"
                 "[bold red]markup[/] [/oops]\n").encode() + b"\xff\xfe binary \x00\x01\x7f\n"


def check_output(what: str, out: bytes, err: bytes) -> str:
    text = assert_terminal_safe(out, f"{what}: stdout")
    assert_terminal_safe(err, f"{what}: stderr")
    assert "Traceback" not in err.decode(), err.decode()
    if out.lstrip().startswith(b"{"):
        json.loads(out)  # one JSON document (names from nodes stay exact in it, \u-escaped)
    return text


async def test_no_node_byte_reaches_the_terminal_raw_from_any_command(make_sim_fleet, tmp_path):
    service = {"important": ["conf/*"], "logs": ["logs/*"], "state": ["state"], "monitor_interval": "1s",
               "process": [{"name": "web", "start": "bin/web", "stop_timeout": "2s"}]}
    sim = await make_sim_fleet(4, modes={"sim003": "garbage"}, fleet={
        "service": service, "ssh_overrides": {"connect_timeout": "2s", "command_timeout": "10s"},
        "rollout": {"health_timeout": "3s"}})
    for name, node in sim.nodes.items():
        root = node.root
        for sub in ("conf", "logs", "state", ".pltui"):
            (root / sub).mkdir()
        (root / "VERSION").write_bytes(b"1.0" + HOSTILE_BYTES)
        (root / "hostile.bin").write_bytes(HOSTILE_BYTES * 3)
        for n in ("app.conf", "\x1b[31mred.conf", "new\nline\x9b.conf"):
            (root / "conf" / n).write_bytes(HOSTILE_BYTES if name != "sim002" else b"drift" + HOSTILE_BYTES)
        (root / "logs" / "\x1b]0;pwned\x07.log").write_bytes(HOSTILE_BYTES)
        (root / "state" / "\x1b[2Jdb\nfile").write_bytes(HOSTILE_BYTES)
    # sim004: a node monitor that answers with escapes
    monitor = sim.nodes["sim004"].root / ".pltui" / "monitor.sh"
    monitor.write_text("cat hostile.bin; cat hostile.bin >&2; exit 1\n")
    bundle = tmp_path / "bundle"
    (bundle / "bin").mkdir(parents=True)
    (bundle / "VERSION").write_text("2.0\n")
    (bundle / "bin" / "web").write_text("#!/bin/sh\ncat ../hostile.bin >&2; printf '\\033]0;pwned\\007\\n'; exit 3\n")
    (bundle / "bin" / "web").chmod(0o755)
    fleet, state = str(sim.fleet_path), str(tmp_path / "state")
    runs = [
        ["sweep", fleet], ["sweep", fleet, "--json"], ["sweep", fleet, "--checksums"],
        ["sweep", fleet, "--checksums", "--json"],
        ["history", fleet], ["history", fleet, "--json"],
        ["exec", fleet, "--in-root", "--", "cat hostile.bin; cat hostile.bin >&2"],
        ["exec", fleet, "--json", "--in-root", "--", "cat hostile.bin; cat hostile.bin >&2; exit 1"],
        ["repair", fleet, "-n"], ["repair", fleet], ["repair", fleet, "--json"],
        ["logs", fleet, "--dest", str(tmp_path / "logs")], ["logs", fleet, "--dest", str(tmp_path / "logs2"), "--json"],
        ["capture", fleet, "--dest", str(tmp_path / "cap")], ["capture", fleet, "--dest", str(tmp_path / "cap"), "--json"],
        ["restart", fleet], ["stop", fleet, "--json"],
        ["rollout", fleet, str(bundle), "--yes", "--max-fail", "100%"],
        ["rollout", fleet, "--status"], ["rollout", fleet, "--status", "--json"],
        ["history", fleet],
    ]
    seen_hostile = 0
    for argv in runs:
        split = 3 if argv[0] == "rollout" and not argv[2].startswith("-") else 2  # BUNDLE right after FLEET
        started = time.monotonic()
        code, out, err = await pltui(*argv[:split], "--state", state, *argv[split:], timeout=120)
        print(f"{argv[0]} {argv[2:]}: {time.monotonic() - started:.1f}s exit {code}")
        text = check_output(" ".join(argv[:1] + argv[2:]), out, err)
        assert code in (0, 1), (argv, code, text, err.decode())
        seen_hostile += "markup" in text or "pwned" in text or "oops" in text
    assert seen_hostile >= 3  # node bytes did reach the output: sanitised, not dropped


# --------------------------------------------------------------------------------------------
# No string from the fleet file or a node is ever interpolated into a shell unquoted


async def test_fleet_file_strings_never_reach_a_shell_unquoted(make_sim_fleet, tmp_path):
    from pltui.demo.nodesim import fleet_document, write_toml

    mark = tmp_path / "markers"
    mark.mkdir()

    def inject(tag: str) -> str:
        return f"$(touch {mark}/{tag}) `touch {mark}/{tag}-bt`; touch {mark}/{tag}-semi | touch {mark}/{tag}-pipe 'q' \"d\""

    sim = await make_sim_fleet(3)
    service = {
        "version_file": f"VER {inject('vf')}",  # (a bundle may not hold such a name: rollout uses VERSION)
        "protocol_file": f"P {inject('pf')}",
        "important": [f"conf/*{inject('imp')}*", f"etc {inject('dir')}/"],
        "logs": [f"logs/*{inject('log')}", "logs/*"],
        "state": [f"st {inject('st')}", "st"],
        "monitor_interval": "1s",
        "process": [{"name": "web", "start": "sleep 1000", "pidfile": f"run/{inject('pid')}.pid", "stop_timeout": "2s"}],
    }
    doc = fleet_document(sim.nodes.values(), name="quoting", user=sim.user, identity_file=sim.client_key_path,
                         known_hosts=sim.known_hosts_path, service=service,
                         ssh_overrides={"connect_timeout": "2s", "command_timeout": "15s"},
                         rollout={"health_timeout": "8s"})
    for name in sim.names:
        root = tmp_path / "roots" / f"{name} {inject('root-' + name)}"
        root.mkdir(parents=True)
        for sub in ("conf", "logs", "st"):
            (root / sub).mkdir()
            (root / sub / "file").write_text(f"{sub} of {name}\n" if name != "sim002" else "drift\n")
        doc["node"][name]["root"] = str(root)
    path = write_toml(tmp_path / "fleet.toml", doc)
    doc["service"]["version_file"] = "VERSION"
    rollout_path = write_toml(tmp_path / "rollout.toml", doc)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "VERSION").write_text("3.0\n")
    state = str(tmp_path / "state")
    runs = [
        ["sweep"], ["sweep", "--checksums"], ["history"],
        ["exec", "--in-root", "--", "true"],
        ["repair"], ["logs", "--dest", str(tmp_path / "logs"), "--prune"], ["capture", "--dest", str(tmp_path / "cap")],
        ["bootstrap"], ["stop"], ["start"], ["restart"], ["reload"],
        ["rollout", str(bundle), "--yes"], ["sweep", "--checksums"],
    ]
    failures = []
    for argv in runs:
        positional = [argv.pop(1)] if argv[0] == "rollout" else []
        started = time.monotonic()
        code, out, err = await pltui(argv[0], str(rollout_path if positional else path), *positional, "--state", state,
                                     *argv[1:], timeout=120)
        print(f"{argv[0]}: {time.monotonic() - started:.1f}s exit {code}")
        check_output(argv[0], out, err)
        if code not in (0, 1):
            failures.append((argv, code, err.decode()))
        assert not list(mark.iterdir()), f"`pltui {argv[0]}` ran a fleet-file string: {sorted(p.name for p in mark.iterdir())}"
    assert not failures, failures
    # and the quoted strings were used, as paths: the monitor wrote the hostile pidfile
    assert any(p.name.endswith(".pid") for p in (tmp_path / "roots").rglob("*.pid"))
