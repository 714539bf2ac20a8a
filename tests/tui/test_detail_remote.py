"""The detail screen reads from the node itself (in-process SSH nodes, real sh): a live tail of
the monitor's events.log and the processes' output, and a drifted file diffed against a
majority holder's copy; hostile bytes in either are shown cleaned."""

from __future__ import annotations

from conftest import screen_text, wait_for
from test_live_fleet import sim_console

from pltui.tui.screens.detail import DetailScreen


async def test_live_tail_and_drift_diff(make_sim_fleet, tmp_path, config_dir):
    service = {"important": ["bin/*"], "logs": ["logs/*.log*"]}
    sim, engine, app = await sim_console(make_sim_fleet, tmp_path, config_dir, n=4, service=service)
    root = sim.nodes["sim002"].root
    (root / "logs").mkdir(exist_ok=True)
    (root / "logs" / "access.log").write_text("GET /index.html 200\n")
    (root / "logs" / "access.log.1.gz").write_bytes(b"\x1f\x8b compressed rotation, never tailed")
    (root / ".pltui" / "run").mkdir(parents=True, exist_ok=True)
    (root / ".pltui" / "events.log").write_text("1714564800 2024-05-01T12:00:00+0000 exit cache pid=123 status=3\n")
    (root / ".pltui" / "run" / "proxy.out").write_text("proxy listening on :8080\n[/x] \x1b[2J done\n")
    try:
        async with app.run_test(size=(100, 40)) as pilot:
            assert await wait_for(pilot, lambda: app.view.consensus.drift.get("sim002"), timeout=30)
            app.open_detail("sim002")
            assert await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen))
            await pilot.press("t")
            ok = await wait_for(pilot, lambda: "proxy listening on :8080" in screen_text(app), timeout=20)
            assert ok, screen_text(app)
            text = screen_text(app)
            assert "exit cache pid=123 status=3" in text and "[/x]" in text and "\x1b" not in text
            assert "GET /index.html 200" in text and "access.log.1.gz" not in text  # the service's own log
            (root / ".pltui" / "events.log").write_text("1714564900 2024-05-01T12:01:40+0000 start cache pid=456\n")
            assert await wait_for(pilot, lambda: "start cache pid=456" in screen_text(app), timeout=20)  # live
            await pilot.press("t")                              # stop the tail
            await pilot.press("d")
            ok = await wait_for(pilot, lambda: "+v2-drifted" in screen_text(app), timeout=20)
            assert ok, (screen_text(app), str(app.screen.query_one("#detail-remote").render()))
            text = screen_text(app)
            assert "-v1" in text and "(majority)" in text and "sim002:bin/tool" in text
    finally:
        await engine.close()
