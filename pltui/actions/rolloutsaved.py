"""Saved rollouts, as the store holds them: for `pltui rollout --status` and the faces (is the
rollout's process still alive, its effective status, a description of its plan and nodes)."""

from __future__ import annotations

import os
import socket

from pltui.actions.base import ActionError
from pltui.actions.rolloutplan import StagePlan
from pltui.store import Store, StoreError


def load_saved(store: Store, action_id: str | None) -> dict:
    """A saved rollout (the latest when action_id is None); ActionError when there is none."""
    try:
        if action_id:
            saved = store.load_action(action_id)
        else:
            found = store.actions(kind="rollout", limit=1)
            saved = found[0] if found else None
    except StoreError as exc:
        raise ActionError(str(exc)) from None
    if saved is None or saved.get("kind") != "rollout":
        raise ActionError(f"no rollout {action_id} in this fleet's state directory" if action_id
                          else "no rollout recorded for this fleet yet")
    return saved


def liveness(saved: dict) -> str | None:
    """'pid N on HOST' when the saved rollout's process still runs on this host, else None."""
    if saved["status"] not in ("running", "paused", "rolling-back", "new"):
        return None
    runs = saved["state"].get("runs") or []
    if not runs or runs[-1].get("ended"):
        return None
    run = runs[-1]
    if run.get("host") != socket.gethostname():
        return f"pid {run.get('pid')} on {run.get('host')} (another host: cannot check)"
    pid = int(run.get("pid") or 0)
    if pid <= 0 or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        if stat[stat.rfind(b")") + 2: stat.rfind(b")") + 3] == b"Z":
            return None
    except OSError:
        pass
    return f"pid {pid}"


def effective_status(saved: dict) -> str:
    status = saved["status"]
    if status in ("running", "paused", "rolling-back", "new") and liveness(saved) is None:
        return "interrupted" if status != "paused" else "paused"
    return status


def describe(saved: dict) -> dict:
    """A JSON-ready account of where a saved rollout and every one of its nodes stand."""
    from pltui.nodesets import fold

    state = saved["state"]
    stages = [StagePlan.from_json(s) for s in state["stages"]]
    recs = state["nodes"]
    phases: dict[str, list[str]] = {}
    for stage in stages:
        for name in stage.nodes:
            phases.setdefault(recs[name]["phase"], []).append(name)
    out_stages = []
    for stage in stages:
        batches = []
        for bi, batch in enumerate(stage.batches):
            counts: dict[str, int] = {}
            for n in batch:
                counts[recs[n]["phase"]] = counts.get(recs[n]["phase"], 0) + 1
            batches.append({"batch": bi + 1, "nodes": fold(batch), "count": len(batch), "phases": counts})
        out_stages.append({"name": stage.name, "max_fail": stage.max_fail, "parallel": stage.parallel,
                           "pause": stage.pause, "batches": batches})
    live = liveness(saved)
    return {
        "action_id": saved["id"],
        "status": effective_status(saved),
        "running": live,
        "owner": saved["owner"],
        "started": saved["started"],
        "updated": saved["updated"],
        "stopped_because": state.get("stopped_because"),
        "bundle": {k: state["bundle"][k] for k in ("source", "version", "sha256", "size")},
        "reload": state.get("reload"),
        "stages": out_stages,
        "phases": {p: {"count": len(ns), "nodes": fold(ns)} for p, ns in phases.items()},
        "nodes": {n: {k: v for k, v in recs[n].items() if k != "t"} | {"stage": stages[recs[n]["stage"]].name,
                                                                       "batch": recs[n]["batch"] + 1}
                  for s in stages for n in s.nodes},
    }
