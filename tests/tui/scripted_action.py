"""A real `Action` subclass whose steps the test drives: stages, byte progress, a stage gate,
pause/abort honoured through the real `Control`. Used to test the console's action plumbing
and to pin the rollout progress screen deterministically."""

from __future__ import annotations

import asyncio

from pltui.actions.base import Action, ActionReport, NodeResult


class ScriptedRollout(Action):
    kind = "rollout"

    serial = 0

    def __init__(self, *args, release: asyncio.Event | None = None, gate: bool = True, **kwargs):
        ScriptedRollout.serial += 1
        kwargs.setdefault("action_id", f"rollout-20270115-080000-{ScriptedRollout.serial:06d}")
        super().__init__(*args, **kwargs)
        self.release = release
        self.use_gate = gate
        half = max(1, len(self.nodes) // 3)
        self.first, self.rest = self.nodes[:half], self.nodes[half:]

    def plan(self) -> dict:
        return {"kind": "rollout", "bundle": {"version": "2.5.0", "sha256": "ab" * 32},
                "stages": [{"name": "alpha", "nodes": self.first, "batches": [len(self.first)], "max_fail": 0},
                           {"name": "production", "nodes": self.rest, "batches": [1, len(self.rest) - 1],
                            "max_fail": "5%", "pause": True}]}

    async def execute(self) -> ActionReport:
        self.progress(None, "stage", f"alpha: batch 1/1 ({len(self.first)} nodes)")
        for node in self.first:
            self.progress(node, "uploading", "bundle 2.5.0", bytes_done=600_000, bytes_total=1_200_000)
        for node in self.first:
            self.progress(node, "uploading", "bundle 2.5.0", bytes_done=1_200_000, bytes_total=1_200_000)
            self.result(node, "done", "2.5.0 up, 2/2 processes")
        if self.use_gate:
            self.progress(None, "paused", "before stage production")
            if not await self.control.gate("production"):
                for node in self.rest:
                    self.results.setdefault(node, NodeResult(node, "untouched", "stopped at the gate"))
                return self.report(stopped_because="the operator stopped at the gate before production")
        self.progress(None, "stage", "production: batch 1/2 (1 node)")

        async def work(node: str) -> None:
            self.progress(node, "swapping", "release 2.5.0")
            if self.release is not None:
                await self.release.wait()
            if node == self.rest[-1]:
                self.result(node, "rolled-back", "verify failed: proxy exited 1; back on 2.4.1")
            else:
                self.result(node, "done", "2.5.0 up, 2/2 processes")

        await self.for_each(self.rest, work, 2)
        stopped = "aborted by the operator" if self.control.aborted else None
        return self.report(stopped_because=stopped)
