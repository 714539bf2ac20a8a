"""`capture --paths` and `[service].state` are relative to the service root, as documented: an
absolute path or one climbing out with `..` is refused (exit 2, one line naming it), before any
node is contacted; relative paths and globs still work."""

from __future__ import annotations

import pytest

from pltui.cli import main
from pltui.demo.nodesim import write_toml


@pytest.mark.parametrize("path", ["/etc/passwd", "../../etc", "data/../../x", "~/secret", ".."])
def test_capture_paths_outside_the_root_are_refused(tmp_path, capsys, path):
    fleet = write_toml(tmp_path / "fleet.toml", {"fleet": {"name": "c", "nodes": ["n1"]},
                                                 "service": {"state": ["data"]}})
    dest = tmp_path / "dest"
    code = main(["capture", str(fleet), "--state", str(tmp_path / "s"), "--dest", str(dest), "--paths", "data", path])
    err = capsys.readouterr().err
    assert code == 2 and repr(path) in err and "relative to the service root" in err, err
    assert not dest.exists()


@pytest.mark.parametrize("path", ["/var/lib/x", "../up", "a/../../b"])
def test_fleet_state_paths_outside_the_root_are_refused(tmp_path, capsys, path):
    fleet = write_toml(tmp_path / "fleet.toml", {"fleet": {"name": "c", "nodes": ["n1"]},
                                                 "service": {"state": ["data", path]}})
    assert main(["check", str(fleet)]) == 2
    err = capsys.readouterr().err
    assert "[service.state]" in err and repr(path) in err, err
