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
    "pltui.fleetmodel", "pltui.fleetcheck", "pltui.fleetload", "pltui.limits", "pltui.demo", "pltui.demo.nodesim",
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
    for path in list(root.glob("*.py")) + list((root / "actions").rglob("*.py")) + list((root / "demo").rglob("*.py")):
        text = path.read_text()
        # textual_serve (pltui/web.py) is another package: an aiohttp server that runs the
        # console as a subprocess and imports no Textual itself
        assert not re.search(r"\b(?:import|from) textual\b(?!_)", text), path


RIGS = ("rigs", "sshd_fleet", "testshells", "sshd_bastions")
_RIG_IMPORT = re.compile(r"^\s*(?:from|import)\s+(?:tests\.)?(?:rigs\b|pltui\.(?:sshd_fleet|testshells|sshd_bastions)\b)",
                         re.MULTILINE)


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((Path(pltui.__file__).parent.parent / "pyproject.toml").read_text())


def test_runtime_never_imports_the_test_rigs():
    """The real-sshd rigs run useradd and sshd as root: they belong to tests/, never to pltui."""
    root = Path(pltui.__file__).parent
    for name in RIGS[1:]:
        assert not (root / f"{name}.py").exists(), f"pltui/{name}.py is a test rig: it lives in tests/rigs/"
    for path in root.rglob("*.py"):
        assert not _RIG_IMPORT.search(path.read_text()), f"{path} imports a test rig"
    code = (
        "import importlib, pkgutil, sys, pltui\n"
        "for info in pkgutil.walk_packages(pltui.__path__, 'pltui.'):\n"
        "    if not info.name.endswith('__main__'):\n"
        "        importlib.import_module(info.name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {RIGS!r})\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr


def test_shipped_packages_are_the_runtime_ones():
    """pyproject's package list ships every package under pltui/ and nothing from tests/."""
    tool = _pyproject()["tool"]["setuptools"]
    listed = set(tool["packages"])
    assert all(name == "pltui" or name.startswith("pltui.") for name in listed), listed
    assert not any(part in RIGS for name in listed for part in name.split(".")), listed
    root = Path(pltui.__file__).parent
    on_disk = {"pltui." + ".".join(init.parent.relative_to(root).parts) if init.parent != root else "pltui"
               for init in root.rglob("__init__.py") if "__pycache__" not in init.parts}
    assert on_disk - listed == set(), f"packages not shipped: {sorted(on_disk - listed)}"
