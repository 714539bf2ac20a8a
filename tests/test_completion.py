"""Shell completion: the bash script pltui prints, sourced in a real bash, completes
subcommands, options, and the node and group names of the fleet file on the line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pltui import cli

PLTUI = Path(sys.executable).with_name("pltui")


def script(capsys, shell: str) -> str:
    assert cli.main(["completion", shell]) == 0
    return capsys.readouterr().out


def complete(script_path: Path, cwd: Path, *words: str) -> list[str]:
    """COMPREPLY of the generated function for the command line `words` (last one being typed)."""
    line = " ".join(f"'{w}'" for w in (str(PLTUI), *words))
    program = (f"source '{script_path}'\nCOMP_WORDS=({line}); COMP_CWORD={len(words)}\n"
               "_shtab_pltui; printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], cwd=cwd, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "PATH": f"{PLTUI.parent}:{os.environ['PATH']}"})
    assert result.returncode == 0, result.stderr
    return [w for w in result.stdout.splitlines() if w]


@pytest.mark.skipif(not shutil.which("bash") or not PLTUI.exists(), reason="needs bash and the installed pltui")
def test_bash_completes_commands_options_groups_and_nodes(tmp_path, capsys):
    path = tmp_path / "c.bash"
    path.write_text(script(capsys, "bash"))
    (tmp_path / "f.toml").write_text('[fleet]\nname = "f"\nnodes = ["web[1-3].x", "db1.x"]\n'
                                     '[groups]\nweb = "web[1-3].x"\ndb = "db1.x"\n')
    assert complete(path, tmp_path, "sw") == ["sweep"]
    assert complete(path, tmp_path, "sweep", "f.toml", "--che") == ["--checksums"]
    assert complete(path, tmp_path, "completion", "") == ["bash", "zsh"]
    assert sorted(complete(path, tmp_path, "sweep", "f.toml", "-g", "")) == ["all", "db", "web"]
    assert complete(path, tmp_path, "exec", "f.toml", "-X", "w") == ["web"]
    assert complete(path, tmp_path, "sweep", "f.toml", "-w", "web") == ["web1.x", "web2.x", "web3.x"]
    assert complete(path, tmp_path, "console", "f.toml", "-x", "d") == ["db1.x"]
    assert complete(path, tmp_path, "sweep", "f.") == ["f.toml"]  # FLEET: files
    (tmp_path / "bad.toml").write_text("[fleet\n")
    assert complete(path, tmp_path, "sweep", "bad.toml", "-w", "") == []  # a broken fleet: no names, no noise


def test_zsh_script_and_names_helper(tmp_path, capsys):
    text = script(capsys, "zsh")
    assert text.startswith("#compdef pltui") and "_pltui_nodes" in text and "_pltui_groups" in text
    (tmp_path / "f.toml").write_text('[fleet]\nname = "f"\nnodes = ["a[1-2]"]\n[groups]\ng = "a1"\n')
    assert cli.main(["completion", "--names", "nodes", str(tmp_path / "f.toml")]) == 0
    assert capsys.readouterr().out == "a1\na2\n"
    assert cli.main(["completion", "--names", "groups", str(tmp_path / "f.toml"), "g"]) == 0
    assert capsys.readouterr().out == "g\n"
    assert cli.main(["completion"]) == 2
    assert "which shell" in capsys.readouterr().err
