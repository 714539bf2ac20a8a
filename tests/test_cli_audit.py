"""`pltui audit`: the audit log that actions already record, as text and JSON, filtered by a node
selection and limited to the latest entries; bad input is one line and exit 2."""

from __future__ import annotations

import json

from pltui.cli import main
from pltui.demo.nodesim import write_toml
from pltui.paths import fleet_dir
from pltui.store import Store


def fleet_with_audit(tmp_path):
    path = write_toml(tmp_path / "fleet.toml", {"fleet": {"name": "aud", "nodes": ["n[1-4]"]}})
    state = tmp_path / "state"
    store = Store(fleet_dir(state, "aud", path) / "pltui.db")
    store.audit("exec", ["n1", "n2"], {"command": "uptime"}, "ok (2 done)")
    store.audit("rollout", ["n3"], {"version": "2.0", "note": "[/oops] \x1b[2J"}, "done")
    store.audit("stop", ["n1", "n2", "n3", "n4"], {"process": "all"}, None)
    store.close()
    return str(path), ["--state", str(state)]


def test_audit_text_json_selection_and_limit(tmp_path, capsys):
    path, state = fleet_with_audit(tmp_path)
    assert main(["audit", path, *state]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert len(lines) == 3 and " exec n[1-2] (2) [command=uptime]: ok (2 done)" in lines[0]
    assert "rollout n3 (1)" in lines[1] and "\x1b" not in text and "[/oops]" in text
    assert "stop n[1-4] (4)" in lines[2] and "no result recorded" in lines[2]

    assert main(["audit", path, *state, "-w", "n3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(e["action"], e["nodes"]) for e in doc["audit"]] == [("rollout", ["n3"]), ("stop", ["n1", "n2", "n3", "n4"])]
    assert doc["audit"][0]["args"]["version"] == "2.0"

    assert main(["audit", path, *state, "-w", "n1", "--limit", "1", "--json"]) == 0
    assert [e["action"] for e in json.loads(capsys.readouterr().out)["audit"]] == ["stop"]


def test_audit_bad_input_exits_2(tmp_path, capsys):
    path, state = fleet_with_audit(tmp_path)
    assert main(["audit", path, *state, "--limit", "0"]) == 2
    assert main(["audit", path, *state, "-w", "nosuch[1-2]"]) == 2
    err = capsys.readouterr().err
    assert "--limit" in err and "Traceback" not in err
