"""Process-wide settings (RLIMIT_NOFILE, signal handlers, warning filters, gc, umask...) are made
by entry points only: `pltui.cli.main`, a command's run function, a bench script, the test
session. Library code reads them and says what they mean; it never changes the process it runs in.
"""

import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pltui
from pltui.demo.nodesim import fleet_document, write_toml

ROOT = Path(pltui.__file__).parent

# Entry points, and the one module that holds the setter they call.
ENTRY_POINTS = {"cli.py", "limits.py"}
ENTRY_DIRS = {"commands"}
# Known exceptions, owned elsewhere: the console's gc.freeze/gc.disable around its refresh loop
# (pltui/tui/app.py); the demo's reaper is a separate `python -I -c` process whose script sets
# its own signal dispositions (a string in pltui/demo/procs.py).
EXCEPTIONS = {"tui/app.py", "demo/procs.py"}
SETTERS = re.compile(
    r"\b(?:gc\.(?:disable|freeze|enable)|resource\.setrlimit|raise_nofile(?:_limit)?|signal\.signal|"
    r"warnings\.(?:simplefilter|filterwarnings|resetwarnings)|os\.umask|sys\.setrecursionlimit|"
    r"asyncio\.set_event_loop_policy|logging\.basicConfig|locale\.setlocale)\(")


def test_library_modules_never_change_process_wide_settings():
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.as_posix() in ENTRY_POINTS | EXCEPTIONS or rel.parts[0] in ENTRY_DIRS:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if SETTERS.search(code) and not re.match(r"\s*def ", code):
                offenders.append(f"pltui/{rel}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def _run(code: str) -> str:
    """Run `code` in a fresh interpreter whose soft RLIMIT_NOFILE is 256 (hard limit unchanged)."""
    prelude = (
        "import resource\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
    )
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", prelude + code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_transport_reads_the_open_file_limit_and_never_raises_it(tmp_path):
    """A big fleet under a low limit: the Transport keeps a smaller pool and says why; the limit
    itself is the entry point's business (failed before: Transport.__init__ raised it)."""
    nodes = [SimpleNamespace(name=f"n{i:04d}", host="127.0.0.1", port=20000 + i, root=tmp_path / "root")
             for i in range(1000)]
    (tmp_path / "known_hosts").write_text("")
    fleet = write_toml(tmp_path / "fleet.toml", fleet_document(
        nodes, name="big", user="nobody", identity_file=tmp_path / "id", known_hosts=tmp_path / "known_hosts"))
    out = _run(
        "from pltui import fleet\n"
        "from pltui.ssh import Transport\n"
        f"t = Transport(fleet.load({str(fleet)!r}))\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], t.nofile, t.pool_limit, bool(t.nofile_warning))\n"
    )
    assert out.split() == ["256", "256", "128", "True"], out


def test_the_cli_raises_the_open_file_limit_at_start_up():
    out = _run(
        "import contextlib, io, pltui.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        pltui.cli.main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "soft_now = resource.getrlimit(resource.RLIMIT_NOFILE)[0]\n"
        "print(soft_now > 256 and (soft_now == hard or hard == resource.RLIM_INFINITY))\n"
    )
    assert out.strip() == "True", out
