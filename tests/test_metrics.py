"""Prometheus metrics: scraped over real HTTP after a real sweep of real SSH nodes, parsed with
prometheus_client's own parser; the cron textfile written by `pltui sweep --metrics-file`."""

from __future__ import annotations

import asyncio
import os
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pltui import cli
from pltui import fleet as fleet_mod
from pltui.metrics import Metrics, MetricsError, parse_address, start_http
from pltui.model import ActionFinished, NodeTransition
from pltui.demo.thread import SimFleetThread
from pltui.sweep import Engine

NAME_RULE = r"^pltui_[a-z_]+$"


def samples(text: str) -> dict:
    """(name, frozenset(labels)) -> value, and check the naming rules on the way."""
    found = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("pltui_"), family.name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
        for s in family.samples:
            found[(s.name, frozenset(s.labels.items()))] = s.value
    return found


def value(found: dict, name: str, **labels) -> float:
    matches = [v for (n, ls), v in found.items() if n == name and set(labels.items()) <= ls]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


def plant(root, version: str) -> None:
    (root / "VERSION").write_text(version + "\n")
    (root / "PROTOCOL").write_text("7\n")


async def test_scrape_after_real_sweep(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(4, modes={"sim004": "refuse"}, fleet={"service": {"root": "."}})
    plant(sim.nodes["sim001"].root, "1.0")
    plant(sim.nodes["sim002"].root, "1.0")
    plant(sim.nodes["sim003"].root, "2.0-rc\n\x1b[2J")  # hostile bytes never reach a label raw
    engine = Engine(fleet_mod.load(sim.fleet_path), state_dir=tmp_path / "state")
    server = start_http(engine, port=0, metrics=Metrics("simfleet", max_values=1))
    try:
        assert server.host == "127.0.0.1"
        await engine.sweep()
        engine.emit(ActionFinished(action_id="a1", kind="rollout", ok=False, report={}))
        engine.emit(NodeTransition(node="sim004", kind="went-down", detail="refused"))

        def scrape() -> str:
            with urllib.request.urlopen(server.url, timeout=10) as response:
                assert response.status == 200
                return response.read().decode()

        for _ in range(50):  # the feed task folds events in on the loop; scrape until it has
            found = samples(await asyncio.to_thread(scrape))
            if ("pltui_node_transitions_total", frozenset({("fleet", "simfleet"), ("kind", "went-down")})) in found:
                break
            await asyncio.sleep(0.1)
    finally:
        await server.close()
        await engine.close()
    assert value(found, "pltui_node_up", node="sim001") == 1
    assert value(found, "pltui_node_up", node="sim004") == 0
    assert value(found, "pltui_node_health", node="sim004", health="down") == 1
    assert value(found, "pltui_node_health", node="sim004", health="up") == 0
    assert value(found, "pltui_node_monitor", node="sim001", state="absent") == 1
    assert value(found, "pltui_nodes", health="down") == 1
    # bounded cardinality: max_values=1 keeps the most common version, the rest is "other"
    assert value(found, "pltui_node_info", node="sim001", version="1.0", protocol="7") == 1
    assert value(found, "pltui_node_info", node="sim003", version="other") == 1
    assert {dict(ls)["version"] for (n, ls) in found if n == "pltui_node_info"} == {"1.0", "other"}
    assert value(found, "pltui_sweep_duration_seconds_count", checksums="false") == 1
    assert value(found, "pltui_sweep_duration_seconds_sum", checksums="false") > 0
    assert value(found, "pltui_actions_total", kind="rollout", result="failed") == 1
    assert value(found, "pltui_last_sweep_timestamp_seconds") > 0
    assert value(found, "pltui_drifted_nodes") == 0
    assert all(dict(ls).get("fleet") == "simfleet" for (n, ls) in found)


def test_sweep_writes_textfile_atomically(tmp_path, capsys):
    with SimFleetThread(2, tmp_path / "sim", modes={"sim002": "refuse"}) as sim:
        path = sim.fleet.write_fleet(tmp_path / "fleet.toml", service={"root": "."})
        prom = tmp_path / "textfile" / "pltui.prom"
        prom.parent.mkdir()
        code = cli.main(["sweep", str(path), "--state", str(tmp_path / "state"), "--metrics-file", str(prom)])
    capsys.readouterr()
    assert code == 1  # one node down
    found = samples(prom.read_text())
    assert value(found, "pltui_node_up", node="sim001") == 1 and value(found, "pltui_node_up", node="sim002") == 0
    assert value(found, "pltui_sweep_duration_seconds_count") == 1
    assert os.listdir(prom.parent) == ["pltui.prom"]  # no temporary file left behind


def test_bad_metrics_file_and_address(tmp_path, capsys):
    path = tmp_path / "fleet.toml"
    path.write_text('[fleet]\nname = "f"\nnodes = ["a"]\n')
    code = cli.main(["sweep", str(path), "--metrics-file", str(tmp_path / "missing" / "x.prom")])
    err = capsys.readouterr().err
    assert code == 2 and "missing" in err and err.count("\n") == 1 and "Traceback" not in err
    assert parse_address("9100") == ("127.0.0.1", 9100)
    assert parse_address("0.0.0.0:9100") == ("0.0.0.0", 9100)
    assert parse_address("[::1]:9100") == ("::1", 9100)
    for bad in ("host:", "x:99999", "h:9a"):
        with pytest.raises(MetricsError):
            parse_address(bad)
