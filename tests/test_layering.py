"""The engine knows nothing of the UI: importing it (and the CLI) never pulls in Textual."""

import re
import subprocess
import sys
from pathlib import Path

import pltui

ENGINE = [
    "pltui.fleet", "pltui.nodesets", "pltui.ssh", "pltui.probe", "pltui.sweep", "pltui.consensus",
    "pltui.store", "pltui.model", "pltui.sanitize", "pltui.actions.base", "pltui.actions.control",
    "pltui.metrics", "pltui.alerts", "pltui.init", "pltui.inventories", "pltui.web",
]


def test_engine_and_cli_do_not_import_textual():
    modules = list(ENGINE)
    actions = Path(pltui.__file__).parent / "actions"
    for path in actions.rglob("*.py"):  # packages too (pltui.actions.logs)
        parts = path.relative_to(actions).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        if parts:
            modules.append("pltui.actions." + ".".join(parts))
    code = (
        "import sys, importlib\n"
        f"for name in {sorted(set(modules))!r}:\n"
        "    importlib.import_module(name)\n"
        "import pltui.cli\n"
        "pltui.cli.build_parser()\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_engine_sources_never_mention_textual():
    root = Path(pltui.__file__).parent
    for path in list(root.glob("*.py")) + list((root / "actions").rglob("*.py")):
        text = path.read_text()
        # textual_serve (pltui/web.py) is another package: an aiohttp server that runs the
        # console as a subprocess and imports no Textual itself
        assert not re.search(r"\b(?:import|from) textual\b(?!_)", text), path
