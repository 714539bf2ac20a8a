"""The sha256 fallbacks of the node scripts (logs.sh, release.sh): sha256sum, else busybox's,
else openssl, else shasum, and the tool used is named in their output. Run locally under /bin/sh
with a PATH built from this machine's tools minus the ones a variant hides (the real-sshd node
without sha256sum is in test_shells.py)."""

from __future__ import annotations

import hashlib
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from pltui.actions.logs.listing import ListParser
from rigs.testshells import system_tools

NODE = Path(__file__).resolve().parent.parent / "pltui" / "node"
DATA = b"some log line\n" * 100
# hidden tools -> the tool the scripts must pick
VARIANTS = {
    "all": ((), "sha256sum"),
    "no-sha256sum": (("sha256sum",), "busybox"),
    "no-busybox": (("sha256sum", "busybox"), "openssl"),
    "perl-only": (("sha256sum", "busybox", "openssl"), "shasum"),
    "none": (("sha256sum", "busybox", "openssl", "shasum"), "none"),
}


@pytest.fixture(params=list(VARIANTS))
def variant(request, tmp_path):
    hidden, tool = VARIANTS[request.param]
    if tool not in ("none", "busybox") and shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed here")
    if tool == "busybox" and shutil.which("busybox") is None:
        pytest.skip("busybox is not installed here (scripts/test.sh installs it)")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, target in system_tools(hidden).items():
        (bindir / name).symlink_to(target)
    root = tmp_path / "root"
    (root / "logs").mkdir(parents=True)
    (root / "logs" / "app.log").write_bytes(DATA)
    return str(bindir), root, tool


def run(script: str, assignments: dict[str, str], path: str, args: list[str] = ()) -> subprocess.CompletedProcess:
    head = "".join(f"{k}={shlex.quote(v)}\n" for k, v in assignments.items())
    if args:
        head += "set -- " + " ".join(shlex.quote(a) for a in args) + "\n"
    return subprocess.run(["/bin/sh", "-s"], input=head.encode() + (NODE / script).read_bytes(),
                          capture_output=True, timeout=60, env={"PATH": path, "HOME": "/"})


def test_logs_sh_names_and_uses_the_fallback(variant):
    path, root, tool = variant
    r = run("logs.sh", {"ROOT": str(root), "MODE": "hash"}, path, ["logs/app.log"])
    records = r.stdout.split(b"\0")
    if tool == "none":
        assert records[0] == b"error nosum", records
        return
    tools = next(rec for rec in records if rec.startswith(b"tools "))
    assert tools.split()[1].decode() == tool, tools
    parser = ListParser()  # what pltui makes of it
    parser.feed(r.stdout)
    assert parser.listing.done and [f.sha256 for f in parser.listing.files] == [hashlib.sha256(DATA).hexdigest()]


def test_release_sh_names_and_uses_the_fallback(variant):
    path, root, tool = variant
    staging = root / ".pltui" / "staging"
    staging.mkdir(parents=True)
    (staging / "r1.tar.gz").write_bytes(DATA)
    want = hashlib.sha256(DATA).hexdigest()
    r = run("release.sh", {"ROOT": str(root), "CMD": "status", "ID": "r1", "SHA256": want}, path)
    info = dict(line.partition(" ")[::2] for line in r.stdout.decode().splitlines())
    assert r.returncode == 0, r.stderr
    assert info["sha256_tool"] == tool
    assert info["staged"] == ("bad" if tool == "none" else "yes")
    if tool == "none":  # prepare refuses with one line naming what is missing
        r = run("release.sh", {"ROOT": str(root), "CMD": "prepare", "ID": "r1", "SHA256": want}, path)
        assert r.returncode == 1 and b"no sha256 tool" in r.stderr and r.stderr.count(b"\n") == 1, r.stderr


def test_commands_built_in_python_use_the_same_fallback(variant):
    """pltui.nodesha: what bootstrap's monitor check and repair's upload check run on the node."""
    from pltui.nodesha import SHA256_FUNCTION, SHA256_TOOLS

    path, root, tool = variant
    (root / "f").write_bytes(DATA)
    script = (f"{SHA256_FUNCTION}\nd=$(pltui_sha256 <f); s=$?\npltui_sha256 </dev/null >/dev/null\n"
              'echo "$s ${d%% *} $PLTUI_SHA256_TOOL"\n')
    r = subprocess.run(["/bin/sh", "-c", script], cwd=root, capture_output=True, timeout=60,
                       env={"PATH": path, "HOME": "/"})
    fields = r.stdout.decode().split()
    if tool == "none":
        assert fields == ["127", "none"], r.stdout
    else:
        assert tool in SHA256_TOOLS and fields == ["0", hashlib.sha256(DATA).hexdigest(), tool], r.stdout
