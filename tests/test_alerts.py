"""Alert hooks: a real command (a sh script writing its stdin to a file) and a real loopback
HTTP server receive node transitions; rate limits, digests, retries and a hung hook."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import threading

import pytest
import tomli_w

from pltui import alerts
from pltui import fleet as fleet_mod
from pltui.model import NodeTransition, Notice
from pltui.sweep import Engine


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server = self.server
        code = server.codes.pop(0) if server.codes else 200
        server.bodies.append((code, json.loads(body), self.headers["Content-Type"]))
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    server.codes, server.bodies = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def script(tmp_path, body: str):
    path = tmp_path / "hook.sh"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def make_engine(tmp_path, nodes: str = "n[001-300]", **table) -> Engine:
    doc = {"fleet": {"name": "f", "nodes": [nodes]}, "alerts": table}
    path = tmp_path / "fleet.toml"
    path.write_text(tomli_w.dumps(doc))
    return Engine(fleet_mod.load(path), state_dir=tmp_path / "state")


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def wait_for(predicate, what: str, tries: int = 200):
    for _ in range(tries):  # bounded: about 20 s
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_command_and_webhook_get_each_transition(tmp_path, webhook):
    out = tmp_path / "got.jsonl"
    hook = script(tmp_path, f'cat >> "{out}"\n')
    engine = make_engine(tmp_path, command=[str(hook)], webhook=f"http://127.0.0.1:{webhook.server_port}/x",
                         digest_window="100ms")
    alerter = alerts.attach(engine)
    try:
        engine.emit(NodeTransition(node="n001", kind="went-down", detail="timeout: no answer in 30s", since=5.0))
        engine.emit(NodeTransition(node="n002", kind="version-changed", detail="1.4 -> 1.5"))  # not in `on`
        await wait_for(lambda: len(webhook.bodies) == 1 and len(lines(out)) == 1, "both deliveries")
    finally:
        await alerter.close()
        await engine.close()
    got = lines(out)[0]
    assert got["type"] == "transition" and got["fleet"] == "f" and got["node"] == "n001"
    assert got["kind"] == "went-down" and got["since"] == 5.0 and "n001 went-down" in got["text"]
    code, body, ctype = webhook.bodies[0]
    assert body == got and ctype == "application/json"


async def test_site_outage_is_one_digest_and_rate_limit_per_node(tmp_path, webhook):
    engine = make_engine(tmp_path, webhook=f"http://127.0.0.1:{webhook.server_port}/",
                         digest_window="300ms", digest_threshold=5, rate_limit="1h")
    alerter = alerts.attach(engine)
    try:
        for i in range(1, 301):
            engine.emit(NodeTransition(node=f"n{i:03d}", kind="went-down"))
        await wait_for(lambda: len(webhook.bodies) == 1, "the digest")
        for _ in range(3):  # the same node and kind again within the rate limit: counted, not sent
            engine.emit(NodeTransition(node="n007", kind="went-down"))
        engine.emit(NodeTransition(node="n007", kind="came-back"))
        await wait_for(lambda: len(webhook.bodies) == 2, "the came-back alert")
        await asyncio.sleep(0.5)
    finally:
        await alerter.close()
        await engine.close()
    digest = webhook.bodies[0][1]
    assert digest["type"] == "digest" and digest["count"] == 300
    assert digest["nodes"] == "n[001-300]" and digest["kinds"] == {"went-down": "n[001-300]"}
    assert len(digest["events"]) == alerts.DIGEST_EXAMPLES
    second = webhook.bodies[1][1]
    assert (second["type"], second["node"], second["kind"]) == ("transition", "n007", "came-back")
    assert len(webhook.bodies) == 2  # the three repeated went-down of n007 were rate-limited


async def test_failing_hooks_are_reported_and_retried(tmp_path, webhook):
    hook = script(tmp_path, 'cat >/dev/null; echo "pager says no" >&2; exit 3\n')
    engine = make_engine(tmp_path, command=[str(hook)], webhook=f"http://127.0.0.1:{webhook.server_port}/",
                         digest_window="0s", retries=2, backoff="50ms")
    webhook.codes = [500, 503]  # then 200
    notices = engine.subscribe()
    alerter = alerts.attach(engine)
    try:
        engine.emit(NodeTransition(node="n001", kind="crash-looping", detail="proxy restarted 5 times"))
        await wait_for(lambda: alerter.failed == 1 and alerter.sent == 1, "the retries")
    finally:
        await alerter.close()
        await engine.close()
    assert [code for code, _, _ in webhook.bodies] == [500, 503, 200]
    said = []
    while not notices.empty():
        event = notices.get_nowait()
        if isinstance(event, Notice):
            said.append((event.level, event.message))
    assert ("error", f"alert via command {hook} failed (exit 3: pager says no); giving up") in said
    assert sum(1 for level, m in said if "command" in m and "retrying" in m) == 2
    assert any("webhook 127.0.0.1 failed (HTTP 500); retrying" in m for _, m in said)


async def test_hung_hook_never_blocks_a_sweep_and_queue_drops_oldest(tmp_path, make_sim_fleet):
    sim = await make_sim_fleet(2)
    pidfile = tmp_path / "hook.pid"
    hook = script(tmp_path, f'echo $$ > "{pidfile}"; exec sleep 60\n')
    doc = fleet_mod.load(sim.fleet_path)
    settings = alerts.AlertSettings(command=(str(hook),), timeout=1.0, retries=0, digest_window=0.0, queue=2)
    engine = Engine(doc, state_dir=tmp_path / "state")
    notices = engine.subscribe()
    alerter = alerts.attach(engine, settings)
    try:
        for i in range(6):
            engine.emit(NodeTransition(node=f"n{i}", kind="went-down"))
            await asyncio.sleep(0.05)
        summary = await asyncio.wait_for(engine.sweep(), 30)  # the hook hangs; the sweep does not wait
        assert summary["health"]["up"] == 2
        await wait_for(lambda: alerter.failed >= 2, "two timed-out deliveries")
    finally:
        await alerter.close(timeout=5)
        await engine.close()
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the hung hook was killed, not left behind
    said = []
    while not notices.empty():
        event = notices.get_nowait()
        if isinstance(event, Notice):
            said.append(event.message)
    assert any("no exit within 1s" in m for m in said)
    assert any("deliveries dropped (queue full" in m for m in said)


def test_alerts_table_errors_name_file_and_line(tmp_path):
    path = tmp_path / "fleet.toml"
    path.write_text('[fleet]\nname = "f"\nnodes = ["a"]\n\n[alerts]\ncommand = "page-ops --now"\n'
                    'webhook = "file:///etc/passwd"\non = ["went-dwn"]\ndigest_threshold = 0\n')
    with pytest.raises(fleet_mod.FleetError) as info:
        fleet_mod.load(path)
    problems = "\n".join(info.value.problems)
    assert f"{path}:6: [alerts.command] give the command as an argv list" in problems
    assert f"{path}:7: [alerts.webhook] expected an http:// or https:// URL" in problems
    assert f"{path}:8: [alerts.on] unknown transition 'went-dwn'" in problems
    assert f"{path}:9: [alerts.digest_threshold] must be between 1" in problems
    ok = tmp_path / "ok.toml"
    ok.write_text('[fleet]\nname = "f"\nnodes = ["a"]\n[alerts]\ncommand = ["./hooks/page", "-v"]\n')
    settings = fleet_mod.load(ok).alerts
    assert settings.command == (str(tmp_path / "hooks" / "page"), "-v") and settings.enabled
