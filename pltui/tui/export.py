"""`:export FILE`: the table as the operator sees it (rows shown, in display order, every
column, plus health), as JSON (`.json`) or CSV (any other name). No Textual here."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from pltui.tui.view import ALL_KEYS, ConsoleView

FIELDS = ("node", "health", "marked") + tuple(k for k in ALL_KEYS if k not in ("mark", "node"))


def table_rows(view: ConsoleView, names: list[str]) -> list[dict[str, str]]:
    ctx = view.context()
    rows = []
    for name in names:
        cells = view.cells(name, ctx)
        row = {"node": name, "health": view.statuses[name].health.value,
               "marked": "yes" if name in view.marks else ""}
        row.update({k: cells[k].plain for k in ALL_KEYS if k not in ("mark", "node")})
        rows.append(row)
    return rows


def export_table(view: ConsoleView, names: list[str], path: str) -> Path:
    """Write the rows to `path` (written whole to a temp file, then renamed); OSError on failure."""
    target = Path(os.path.expanduser(path))
    rows = table_rows(view, names)
    if target.suffix.lower() == ".json":
        data = json.dumps({"fleet": view.fleet.name, "nodes": rows}, indent=1, ensure_ascii=True) + "\n"
    else:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=FIELDS)
        writer.writeheader()
        # A cell starting with = + - @ is a formula to a spreadsheet: quote it as text.
        writer.writerows({k: ("'" + v if v[:1] in "=+-@" and k != "node" else v) for k, v in r.items()}
                         for r in rows)
        data = buf.getvalue()
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, target)
    return target
