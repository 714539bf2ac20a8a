"""`pltui check FLEET`: exit 0 and a summary for a good file, exit 2 and every problem on
stderr for a broken one, `--json` for scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pltui.cli import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_fleet.toml"

BROKEN = """\
[fleet]
name = "broken"
nodes = ["n[1-4]", "n2"]

[ssh]
prot = 22

[sweep]
quorum = 2
heal = "sometimes"

[groups]
a = "@b"
"""


def test_check_sample_prints_a_summary(capsys):
    assert main(["check", str(SAMPLE)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    assert lines[0].startswith("fleet cdn: 32 nodes (")
    assert "planetlab[1-12].cs.example.edu" in lines[0] and "pl-node[01-10].net.example.org" in lines[0]
    out = captured.out
    assert "group alpha" in out and "3 nodes  pl-node01.net.example.org,planetlab[1-2].cs.example.edu" in out
    assert "group production        29 nodes" in out
    assert "planetlab[3-12].cs.example.edu" in out  # production = @all!@alpha, folded
    assert "track alpha          groups alpha" in out
    assert "service root ~/cdn: 2 processes (proxy, cache), 3 important globs, 2 log globs" in out
    assert "sweep every 5m, checksums every 1d, quorum > 0.5, heal monitor" in out
    assert ("stage production     group production (29 nodes), batches 1, 10%, 50%, 100%, parallel 16, "
            "max_fail 5%, pause first") in out
    assert lines[-1] == "ok"


def test_check_json(capsys):
    assert main(["check", str(SAMPLE), "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    doc = json.loads(captured.out)
    assert doc["fleet"] == "cdn" and doc["nodes"] == 32
    assert doc["groups"]["alpha"] == {"size": 3, "nodes": "pl-node01.net.example.org,planetlab[1-2].cs.example.edu"}
    assert doc["groups"]["production"]["size"] == 29
    assert "all" not in doc["groups"]
    assert doc["tracks"] == {"alpha": ["alpha"], "production": ["production"]}
    assert doc["processes"] == ["proxy", "cache"]
    assert doc["stages"] == [
        {"name": "alpha", "group": "alpha", "batch": [1], "parallel": 1, "max_fail": 0, "pause": False},
        {"name": "production", "group": "production", "batch": [1, "10%", "50%", "100%"], "parallel": 16,
         "max_fail": "5%", "pause": True},
    ]


def test_check_broken_file_exits_2_with_every_problem_on_stderr(tmp_path, capsys):
    path = tmp_path / "broken.toml"
    path.write_text(BROKEN)
    assert main(["check", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines[0].startswith("pltui: ")
    body = [line.removeprefix("pltui: ") for line in lines]
    assert body == [
        f"{path}:6: [ssh.prot] unknown key 'prot' (did you mean 'port'?)",
        f"{path}:9: [sweep.quorum] must be a fraction from 0 up to (not including) 1, got 2",
        f"{path}:10: [sweep.heal] must be one of off, monitor, got 'sometimes'",
        f"{path}:3: [fleet.nodes] duplicate node 'n2' (in 'n[1-4]' and 'n2')",
        f"{path}:13: [groups.a] refers to unknown group '@b'",
    ]


def test_check_broken_file_with_json_still_reports_on_stderr(tmp_path, capsys):
    path = tmp_path / "broken.toml"
    path.write_text("[fleet\n")
    assert main(["check", str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"pltui: {path}:1:7: TOML syntax error: Expected ']' at the end of a table declaration\n"


def test_check_missing_file(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope.toml")]) == 2
    assert capsys.readouterr().err == f"pltui: {tmp_path / 'nope.toml'}: cannot read fleet file: No such file or directory\n"


def test_check_problem_text_is_sanitised(tmp_path, capsys):
    path = tmp_path / "f.toml"
    path.write_text('[fleet]\nname = "x"\nnodes = ["n1"]\n[groups]\nbad = "n\\u001b[2J["\n')
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err
    assert f"{path}:5: [groups.bad] bad node set" in err


def test_check_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["check"])
    assert info.value.code == 2
    assert "FLEET" in capsys.readouterr().err


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "pltui", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_check_as_a_real_process(tmp_path):
    result = _run("check", "sample_fleet.toml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("fleet cdn: 32 nodes (")
    assert result.stdout.endswith("ok\n")
    assert result.stderr == ""

    result = _run("check", "sample_fleet.toml", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["nodes"] == 32

    path = tmp_path / "broken.toml"
    path.write_text(BROKEN)
    result = _run("check", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 5
    assert f"pltui: {path}:6: [ssh.prot] unknown key 'prot'" in result.stderr


def test_no_library_warning_reaches_the_operator():
    """Every subcommand module is imported by `--help` (asyncssh with it): with cryptography
    >= 47 asyncssh's import warns about DSA on stderr unless the entry point silences it."""
    result = _run("--help")
    assert result.returncode == 0
    assert result.stderr == ""
    # A developer who asks for warnings still gets them.
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="always")
    shown = subprocess.run([sys.executable, "-c", "import warnings; from pltui.cli import quiet_third_party_warnings as q;"
                            " q(); warnings.warn('x-marker')"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert "x-marker" in shown.stderr
