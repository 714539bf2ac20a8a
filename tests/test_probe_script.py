"""probe.sh itself, run locally as the engine sends it (`SHELL -s` reading build_script's bytes)
under dash, bash, busybox ash (busybox applets only on PATH), and mksh, with each digest tool
pltui falls back to. Real files, real FIFOs, real processes; the parser reads the output."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from pltui import fleet as fleet_mod
from pltui.probe import build_script, parse

SHELLS = {
    "dash": ["dash", "-s"],
    "bash": ["bash", "-s"],
    "busybox": ["busybox", "sh", "-s"],
    "mksh": ["mksh", "-s"],
    "posh": ["posh"],  # reads stdin without -s
    "yash": ["yash", "-s"],
}
SHELLS = {name: argv for name, argv in SHELLS.items() if shutil.which(argv[0]) or name in ("dash", "bash")}
TOOLS = ("sha256sum", "openssl", "busybox", "shasum")
PROBE_TIMEOUT = 60  # a probe that opened a FIFO would hang here instead of finishing in a second


def make_fleet(root: Path, **service) -> fleet_mod.Fleet:
    service.setdefault("important", ["bin/*", "etc/"])
    service.setdefault("logs", ["logs/*.log"])
    lines = [f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {list(v)!r}" for k, v in service.items()]
    return fleet_mod.loads(
        "[fleet]\nname = \"t\"\nnodes = [\"n1\"]\n[service]\n"
        f"root = {str(root)!r}\n" + "\n".join(lines).replace("'", '"') + "\n"
        "[[service.process]]\nname = \"web\"\nstart = \"sleep 100\"\npidfile = \"run/web.pid\"\n"
    )


def tool_path(tmp: Path, shell: str, tool: str) -> str:
    """A PATH offering `tool` as the only way to a sha256 (busybox shell: busybox applets only)."""
    bindir = tmp / f"path-{shell}-{tool}"
    if bindir.exists():
        return str(bindir)
    bindir.mkdir()
    busybox = shutil.which("busybox")
    if shell == "busybox":
        subprocess.run([busybox, "--install", "-s", str(bindir)], check=True)
        if tool != "sha256sum":
            (bindir / "sha256sum").unlink()
    else:
        for name in ("date", "df", "xargs", "wc", "awk", "sed", "find", "head", "sh", "sleep", "printf", "kill",
                     "stat", "tr", "cat", "mv", "rm", "mkdir"):
            os.symlink(shutil.which(name), bindir / name)
        if tool == "sha256sum":
            os.symlink(shutil.which("sha256sum"), bindir / "sha256sum")
    if tool in ("openssl", "shasum"):
        os.symlink(shutil.which(tool), bindir / tool)
    if tool == "busybox":
        os.symlink(busybox, bindir / "busybox")
    return str(bindir)


def run_probe(shell: str, fleet, *, checksums: bool, path: str | None = None) -> bytes:
    script = build_script(fleet, fleet.nodes["n1"], checksums=checksums)
    env = {"PATH": path or os.environ["PATH"], "HOME": "/nonexistent", "LANG": "C.UTF-8"}
    argv = list(SHELLS[shell])
    argv[0] = shutil.which(argv[0])
    result = subprocess.run(argv, input=script, capture_output=True, env=env, timeout=PROBE_TIMEOUT)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def rich_root(tmp_path):
    """A service root with everything odd a real node has: specials among the important paths."""
    root = tmp_path / "root"
    for d in ("bin", "etc/sub", "logs", "run"):
        (root / d).mkdir(parents=True)
    (root / "VERSION").write_bytes(b"2.0 \\n not-a-newline\n")
    (root / "bin" / "app").write_bytes(b"app")
    (root / "bin" / "new\nline").write_bytes(b"nl")
    (root / "bin" / "-dash").write_bytes(b"dash")
    (root / "bin" / "back\\slash").write_bytes(b"bs")
    (root / "bin" / ".pltui-repair-x").write_bytes(b"in flight")
    os.mkfifo(root / "bin" / "fifo")
    os.mkfifo(root / "etc" / "sub" / "pipe")
    os.symlink("/dev/zero", root / "bin" / "zero")
    os.symlink("/dev/null", root / "bin" / "null")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "bin" / "sock"))
    (root / "etc" / "sub" / "c.conf").write_bytes(b"c=1\n")
    (root / "logs" / "a.log").write_bytes(b"a" * 100)
    (root / "logs" / "b c.log").write_bytes(b"b" * 23)
    os.mkfifo(root / "logs" / "fifo.log")
    sleeper = subprocess.Popen(["sleep", "60"])
    (root / "run" / "web.pid").write_text(f"{sleeper.pid}\n")
    yield root
    sock.close()
    sleeper.kill()
    sleeper.wait()


def expected_digests(root: Path) -> dict[str, str]:
    names = ["bin/app", "bin/back\\slash", "bin/-dash", "etc/sub/c.conf"]
    return {n: hashlib.sha256((root / n).read_bytes()).hexdigest() for n in names}


@pytest.mark.parametrize("shell", sorted(SHELLS))
@pytest.mark.parametrize("tool", TOOLS)
def test_probe_reports_the_same_under_every_shell_and_digest_tool(shell, tool, rich_root, tmp_path):
    fleet = make_fleet(rich_root, version_file="VERSION")
    out = run_probe(shell, fleet, checksums=True, path=tool_path(tmp_path, shell, tool))
    status = parse(out, fleet, fleet.nodes["n1"], checksums=True)
    assert status.digest_tool == tool
    assert status.version == "2.0 \\n not-a-newline"  # dash's echo would have made that a newline
    assert status.log_bytes == 123
    assert status.disk_free and status.disk_free > 0 and status.clock
    assert status.processes[0].alive
    specials = {
        "bin/fifo": "fifo", "bin/zero": "link to device", "bin/null": "link to device",
        "bin/sock": "socket", "etc/sub/pipe": "fifo",
    }
    digests = expected_digests(rich_root)
    if tool == "shasum" or (tool == "sha256sum" and shell != "busybox"):  # they escape the newline
        digests["bin/new\nline"] = hashlib.sha256(b"nl").hexdigest()
    else:  # busybox and openssl print such a name raw: it is flagged, never digested
        specials["bin/new\\nline"] = "newline in name"
    assert status.digests == digests
    assert status.special_files == specials
    assert any("bin/fifo" in w and "fifo" in w for w in status.warnings)
    # The next checksum probe answers from .pltui/digests where nothing changed: the same report.
    time.sleep(1.1)  # past the second the files were written in (those are never cached)
    run_probe(shell, fleet, checksums=True, path=tool_path(tmp_path, shell, tool))
    again = parse(run_probe(shell, fleet, checksums=True, path=tool_path(tmp_path, shell, tool)),
                  fleet, fleet.nodes["n1"], checksums=True)
    assert again.digests == digests and again.special_files == specials
    assert "bin/app" in (rich_root / ".pltui" / "digests").read_text()  # cached, not re-hashed


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_liveness_probe_needs_only_the_shell_and_reads_no_file_it_should_not(shell, rich_root):
    fleet = make_fleet(rich_root, version_file="VERSION", logs=["logs/*", "nothing/*"])
    status = parse(run_probe(shell, fleet, checksums=False), fleet, fleet.nodes["n1"], checksums=False)
    assert status.log_bytes == 123 and status.digests is None and status.warnings == []


def test_unreadable_important_file_is_flagged(request):
    """Root reads anything: run the probe as `nobody` over a root it can enter."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to drop privileges")
    base = Path(tempfile.mkdtemp(prefix="pltui-probe-"))  # tmp_path's parents are root-only
    request.addfinalizer(lambda: shutil.rmtree(base))
    root = base / "svc"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "secret").write_bytes(b"s")
    (root / "bin" / "secret").chmod(0o000)
    (root / "bin" / "open").write_bytes(b"o")
    os.symlink("secret", root / "bin" / "link")
    for p in (base, root, root / "bin"):
        p.chmod(0o755)
    (root / "bin" / "open").chmod(0o644)
    fleet = make_fleet(root, important=["bin/*"], logs=[])
    script = build_script(fleet, fleet.nodes["n1"], checksums=True)
    result = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "dash", "-s"],
                            input=script, capture_output=True, timeout=PROBE_TIMEOUT, cwd="/")
    status = parse(result.stdout, fleet, fleet.nodes["n1"], checksums=True)
    assert status.special_files == {"bin/secret": "unreadable", "bin/link": "unreadable"}
    assert list(status.digests) == ["bin/open"]


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_log_bytes_of_a_few_odd_names_and_of_many_files(shell, tmp_path):
    """A few regular files take one `wc`; a FIFO among them or many files take the xargs stream."""
    root = tmp_path / "r"
    (root / "logs").mkdir(parents=True)
    for name, size in (("a b.log", 10), ("-x.log", 20), ("[x].log", 30), ("*.log", 40), ("q'uote.log", 50)):
        (root / "logs" / name).write_bytes(b"l" * size)
    (root / "-top.log").write_bytes(b"t" * 7)  # a name wc must not take for an option
    fleet = make_fleet(root, logs=["logs/*.log", "none/*.log", "*.log"], important=[])
    status = parse(run_probe(shell, fleet, checksums=False), fleet, fleet.nodes["n1"], checksums=False)
    assert status.log_bytes == 157
    for i in range(150):
        (root / "logs" / f"many-{i}.log").write_bytes(b"m" * 3)
    status = parse(run_probe(shell, fleet, checksums=False), fleet, fleet.nodes["n1"], checksums=False)
    assert status.log_bytes == 157 + 450


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_incremental_checksums_rehash_what_changed_and_the_full_pass_everything(shell, tmp_path):
    """Checksum probes keep .pltui/digests: a file whose inode/size/mtime/ctime did not change
    keeps its digest (shown by a damaged state entry surviving), a file rewritten in place with
    its size and mtime restored is re-hashed (its ctime moved), and a full pass (the state's last
    full pass older than full_checksum_interval) re-hashes everything."""
    tool = "busybox" if shell == "busybox" else "sha256sum"
    path = tool_path(tmp_path, shell, tool)
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    for name in ("app", "lib", "back\\slash"):
        (root / "bin" / name).write_bytes(name.encode() * 100)
    fleet = make_fleet(root, important=["bin/*"], logs=[])
    state = root / ".pltui" / "digests"
    time.sleep(1.1)  # a file changed in the probe's first second is not cached (whole-second times)

    def digests() -> dict:
        return parse(run_probe(shell, fleet, checksums=True, path=path), fleet, fleet.nodes["n1"], checksums=True).digests

    def real() -> dict:
        return {f"bin/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest() for p in (root / "bin").iterdir()}

    assert digests() == real()  # first pass: full, state written
    assert state.read_text().startswith("full ") and "bin/app" in state.read_text()
    assert digests() == real()  # incremental, from the state
    # Damage the state's entry for bin/lib: unchanged on disk, so the incremental pass keeps it.
    text = state.read_text()
    good = real()["bin/lib"]
    state.write_text(text.replace(good, "0" * 64))
    assert digests()["bin/lib"] == "0" * 64
    # bin/app changed in place, same size, mtime put back (touch -d): ctime still tells.
    app = root / "bin" / "app"
    before = app.stat()
    with open(app, "r+b") as f:
        f.write(b"X")
    os.utime(app, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert app.stat().st_size == before.st_size and app.stat().st_mtime_ns == before.st_mtime_ns
    got = digests()
    assert got["bin/app"] == real()["bin/app"] != text.split("  bin/app")[0][-64:]
    # A full pass (the last one a long time ago) re-hashes everything, the damaged entry included.
    lines = state.read_text().split("\n")
    state.write_text("\n".join(["full 1"] + lines[1:]))
    assert digests() == real()
    assert int(state.read_text().split()[1]) > 1
    assert sorted(p.name for p in (root / ".pltui").iterdir()) == ["digests"]  # no temp file left


def test_full_checksum_interval_is_a_validated_sweep_setting(tmp_path):
    base = "[fleet]\nname = \"t\"\nnodes = [\"n1\"]\n[service]\nroot = \"/srv\"\n"
    assert fleet_mod.loads(base).sweep.full_checksum_interval == 7 * 86400
    assert fleet_mod.loads(base + "[sweep]\nfull_checksum_interval = \"2d\"\n").sweep.full_checksum_interval == 172800
    with pytest.raises(fleet_mod.FleetError, match="full_checksum_interval"):
        fleet_mod.loads(base + "[sweep]\nfull_checksum_interval = \"soon\"\n")
