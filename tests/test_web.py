"""`pltui web`: the console in a real browser (Debian's chromium driven by selenium) over
textual-serve, against real SSH nodes. The terminal is drawn on a canvas, so what the page
shows is read from what it received: the websocket frames, as Chrome's DevTools log them."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pltui.demo.thread import SimFleetThread
from pltui.web import console_command, is_loopback
from rigs.sshd_fleet import free_port

PLTUI = Path(sys.executable).with_name("pltui")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ANSI = re.compile(rb"\x1b\[[0-9;?<>]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78]")


def test_console_command_quotes_and_is_readonly_by_default():
    command = console_command("/x/my fleet.toml; rm -rf ~", state="/s", selection=["-g", "a b"], python="/py")
    assert command == "/py -m pltui console '/x/my fleet.toml; rm -rf ~' --readonly --state /s -g 'a b'"
    assert "--readonly" not in console_command("f.toml", allow_actions=True)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1") and not is_loopback("example.com")


def start_browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (the test extra installs it)")
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("chromium and chromium-driver are not installed (scripts/test.sh installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1600,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    try:
        return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    except Exception as exc:  # no display libraries, a sandbox refusal...
        pytest.skip(f"chromium cannot start here: {str(exc).splitlines()[0][:200]}")


class Screen:
    """Everything the page received over its websocket, as text with escape sequences removed."""

    def __init__(self, driver):
        self.driver = driver
        self.raw = b""

    def read(self) -> str:
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") != "Network.webSocketFrameReceived":
                continue
            response = message["params"]["response"]
            data = response.get("payloadData", "")
            self.raw += base64.b64decode(data) if response.get("opcode") == 2 else data.encode()
        return ANSI.sub(b"", self.raw).decode("utf-8", "replace")

    def wait_for(self, text: str, tries: int = 120) -> None:
        for _ in range(tries):  # bounded: about 60 s
            if text in self.read():
                return
            time.sleep(0.5)
        raise AssertionError(f"the page never showed {text!r}; it got: {self.read()[-2000:]!r}")


def test_browser_shows_live_rows_and_keys_work(tmp_path):
    with SimFleetThread(3, tmp_path / "sim") as sim:
        for node in sim.fleet.nodes.values():
            (node.root / "VERSION").write_text("4.2\n")
        fleet = sim.fleet.write_fleet(tmp_path / "fleet.toml", service={"root": "."}, sweep={"interval": "2s"})
        port = free_port()
        log = open(tmp_path / "web.log", "wb")
        server = subprocess.Popen([str(PLTUI), "web", str(fleet), "--port", str(port), "--state",
                                   str(tmp_path / "state")], stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        driver = None
        try:
            for _ in range(100):  # bounded: the server answers within ~20 s
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                        assert b"textual-terminal" in response.read()
                    break
                except OSError:
                    assert server.poll() is None, (tmp_path / "web.log").read_text()
                    time.sleep(0.2)
            driver = start_browser()
            driver.get(f"http://127.0.0.1:{port}/")
            screen = Screen(driver)
            for name in sim.fleet.names:
                screen.wait_for(name)
            screen.wait_for("4.2")  # the version column: the rows hold what the sweep found
            sim.set_mode("sim002", "refuse")
            screen.wait_for("refused")  # a later sweep, shown live
            from selenium.webdriver.common.by import By

            driver.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea").send_keys("?")
            screen.wait_for("pltui keys  (read-only console)")
        finally:
            if driver is not None:
                driver.quit()
            os.killpg(server.pid, signal.SIGTERM)  # the server and the consoles it started
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(5)
            try:
                os.killpg(server.pid, signal.SIGKILL)  # a console left in the group
            except ProcessLookupError:
                pass
            log.close()


def test_web_warns_off_loopback_and_errors_in_one_line(tmp_path):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('[fleet]\nname = "f"\nnodes = ["a"]\n')
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([str(PLTUI), "web", str(fleet), "--host", "0.0.0.0", "--port", str(port),
                                 "--allow-actions"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "serving on 0.0.0.0 with no authentication" in result.stderr and "can run actions" in result.stderr
    assert f"cannot serve on 0.0.0.0:{port}" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "bad.toml").write_text("[fleet\n")
    result = subprocess.run([str(PLTUI), "web", str(tmp_path / "bad.toml")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "bad.toml:1" in result.stderr
