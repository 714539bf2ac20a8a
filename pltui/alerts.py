"""Alert hooks: node transitions out to a command and/or a webhook, as an operator's pager wants.

The fleet file's `[alerts]` table (parsed by `load_settings`, called from pltui.fleet)::

    [alerts]
    on = ["went-down", "came-back", "new-drift", "crash-looping", "monitor-healed"]
    command = ["/usr/local/bin/page-ops", "--team", "cdn"]  # argv; the event JSON on stdin
    webhook = "https://hooks.example.com/pltui"             # POSTed the same JSON
    timeout = "10s"          # per delivery attempt
    rate_limit = "15m"       # per node and kind: one alert per window, the rest counted
    digest_window = "20s"    # transitions within this window are sent together...
    digest_threshold = 5     # ...as one digest when more nodes than this changed
    retries = 3              # a failed delivery is retried, backing off from `backoff`
    backoff = "2s"
    queue = 1000             # deliveries waiting at most; beyond it the oldest are dropped

The command is an argv list and runs without a shell (write `["sh", "-c", "..."]` to get one).
Deliveries run in their own task: a slow or failing hook never delays a sweep; each failure is
an engine Notice (and so lands in the event pane and the history), retried with backoff, and
dropped deliveries are counted and said.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Callable

from pltui import __version__
from pltui.model import TRANSITION_KINDS, NodeTransition

DEFAULT_KINDS = ("went-down", "came-back", "new-drift", "crash-looping", "monitor-healed")
DIGEST_EXAMPLES = 20


@dataclass(frozen=True)
class AlertSettings:
    on: tuple[str, ...] = DEFAULT_KINDS
    command: tuple[str, ...] = ()
    webhook: str | None = None
    timeout: float = 10.0
    rate_limit: float = 900.0
    digest_window: float = 20.0
    digest_threshold: int = 5
    retries: int = 3
    backoff: float = 2.0
    queue: int = 1000

    @property
    def enabled(self) -> bool:
        return bool(self.command or self.webhook)


KEYS = ("on", "command", "webhook", "timeout", "rate_limit", "digest_window", "digest_threshold", "retries",
        "backoff", "queue")


def load_settings(loader, t: dict) -> AlertSettings:
    """Validate `[alerts]` with the fleet loader's helpers (its problems carry file:line)."""
    loader.check_keys("alerts", t, KEYS)
    d = AlertSettings()
    on = loader.str_list("alerts", t, "on") if "on" in t else d.on
    unknown = [k for k in on if k not in TRANSITION_KINDS]
    if unknown:
        loader.problem("alerts", "on", f"unknown transition {unknown[0]!r} (one of {', '.join(TRANSITION_KINDS)})")
        on = tuple(k for k in on if k in TRANSITION_KINDS)
    command: tuple[str, ...] = ()
    if "command" in t:
        raw = t["command"]
        if isinstance(raw, str):
            loader.problem("alerts", "command", "give the command as an argv list, e.g. [\"/usr/local/bin/page\", "
                           "\"--team\", \"ops\"] (for a shell: [\"sh\", \"-c\", \"...\"])")
        else:
            command = loader.str_list("alerts", t, "command")
            if command and "/" in command[0] and loader.base_dir is not None:
                command = (str(loader.base_dir / os.path.expanduser(command[0])),) + command[1:]
    webhook = loader.text_value("alerts", t, "webhook", None)
    if webhook is not None:
        url = urllib.parse.urlsplit(webhook)
        if url.scheme not in ("http", "https") or not url.hostname or any(c.isspace() for c in webhook):
            loader.problem("alerts", "webhook", f"expected an http:// or https:// URL, got {webhook!r}")
            webhook = None
    return AlertSettings(
        on=tuple(on),
        command=command,
        webhook=webhook,
        timeout=loader.duration("alerts", t, "timeout", d.timeout, minimum=0.1),
        rate_limit=loader.duration("alerts", t, "rate_limit", d.rate_limit),
        digest_window=loader.duration("alerts", t, "digest_window", d.digest_window),
        digest_threshold=loader.int_value("alerts", t, "digest_threshold", d.digest_threshold, 1, 1_000_000),
        retries=loader.int_value("alerts", t, "retries", d.retries, 0, 100),
        backoff=loader.duration("alerts", t, "backoff", d.backoff, minimum=0.01),
        queue=loader.int_value("alerts", t, "queue", d.queue, 1, 1_000_000),
    )


def describe(payload: dict) -> str:
    """One human line for chat webhooks (the `text` field Slack/Mattermost show)."""
    if payload["type"] == "digest":
        kinds = "; ".join(f"{k}: {nodes}" for k, nodes in payload["kinds"].items())
        return f"pltui {payload['fleet']}: {payload['count']} nodes changed ({kinds})"
    detail = f": {payload['detail']}" if payload.get("detail") else ""
    return f"pltui {payload['fleet']}: {payload['node']} {payload['kind']}{detail}"


class Alerter:
    """Turns NodeTransition events into deliveries; `attach(engine)` to start, `close()` to end."""

    def __init__(self, settings: AlertSettings, fleet_name: str, *,
                 notice: Callable[[str, str], None] | None = None):
        self.settings = settings
        self.fleet = fleet_name
        self._notice = notice or (lambda level, message: None)
        self._last_sent: dict[tuple[str, str], float] = {}
        self._suppressed: collections.Counter = collections.Counter()
        self._window: list[NodeTransition] = []
        self._window_task: asyncio.Task | None = None
        self._outbox: collections.deque = collections.deque()
        self._wake = asyncio.Event()
        self._dropped = 0
        self._tasks: set[asyncio.Task] = set()
        self._engine = None
        self._queue: asyncio.Queue | None = None
        self.sent = 0
        self.failed = 0

    # -- intake -----------------------------------------------------------------------------

    def attach(self, engine) -> None:
        self._engine = engine
        self._notice = lambda level, message: engine.notice(level, message, kind="alert")
        self._queue = engine.subscribe(10_000)
        self._spawn(self._consume())
        self._spawn(self._deliver_forever())

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _consume(self) -> None:
        assert self._queue is not None  # attach() made it
        while True:
            event = await self._queue.get()
            if isinstance(event, NodeTransition):
                self.submit(event)

    def submit(self, event: NodeTransition) -> None:
        """Take one transition: filter by kind, rate-limit per node and kind, then coalesce."""
        if event.kind not in self.settings.on:
            return
        key = (event.node, event.kind)
        now = time.monotonic()
        last = self._last_sent.get(key)
        if last is not None and now - last < self.settings.rate_limit:
            self._suppressed[key] += 1
            return
        self._last_sent[key] = now
        if len(self._last_sent) > 100_000:  # forget the oldest windows, keep memory bounded
            for old in list(self._last_sent)[:50_000]:
                del self._last_sent[old]
        self._window.append(event)
        if self._window_task is None:
            self._window_task = self._spawn(self._close_window())

    async def _close_window(self) -> None:
        try:
            await asyncio.sleep(self.settings.digest_window)
        finally:
            self._window_task = None
            self.flush()

    def flush(self) -> None:
        """Turn the transitions of the current window into deliveries (one digest if many)."""
        events, self._window = self._window, []
        if not events:
            return
        nodes = {e.node for e in events}
        if len(nodes) > self.settings.digest_threshold:
            self._enqueue(self._digest(events))
        else:
            for event in events:
                self._enqueue(self._single(event))

    def _single(self, event: NodeTransition) -> dict:
        payload = {"type": "transition", "fleet": self.fleet, **event.to_json()}
        suppressed = self._suppressed.pop((event.node, event.kind), 0)
        if suppressed:
            payload["suppressed"] = suppressed
        return payload

    def _digest(self, events: list[NodeTransition]) -> dict:
        from pltui.nodesets import fold

        by_kind: dict[str, set[str]] = {}
        for event in events:
            by_kind.setdefault(event.kind, set()).add(event.node)
        nodes = {e.node for e in events}
        return {"type": "digest", "fleet": self.fleet, "time": time.time(), "count": len(nodes),
                "nodes": fold(nodes), "kinds": {k: fold(v) for k, v in by_kind.items()},
                "events": [e.to_json() for e in events[:DIGEST_EXAMPLES]]}

    def _enqueue(self, payload: dict) -> None:
        if len(self._outbox) >= self.settings.queue:
            self._outbox.popleft()
            self._dropped += 1
        payload["text"] = describe(payload)
        self._outbox.append(payload)
        self._wake.set()

    # -- delivery ---------------------------------------------------------------------------

    async def _deliver_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._deliver_pending()

    async def _deliver_pending(self) -> None:
        while self._outbox:
            if self._dropped:
                self._notice("warning", f"alerts: {self._dropped} deliveries dropped (queue full, "
                                        f"{self.settings.queue} waiting at most)")
                self._dropped = 0
            await self._deliver(self._outbox.popleft())

    async def _deliver(self, payload: dict) -> None:
        """One payload to each hook; each retried with backoff on its own."""
        data = json.dumps(payload, ensure_ascii=True).encode() + b"\n"
        hooks: list[tuple[str, Callable]] = []
        if self.settings.command:
            hooks.append((f"command {self.settings.command[0]}", self._run_command))
        if self.settings.webhook:
            hooks.append((f"webhook {urllib.parse.urlsplit(self.settings.webhook).hostname}", self._post))
        for name, hook in hooks:
            delay = self.settings.backoff
            for attempt in range(self.settings.retries + 1):
                try:
                    await hook(data)
                except Exception as exc:  # every failure is reported, none escapes the task
                    last = attempt == self.settings.retries
                    what = f"alert via {name} failed ({exc})"
                    self._notice("error" if last else "warning",
                                 what + ("; giving up" if last else f"; retrying in {delay:g}s"))
                    if last:
                        self.failed += 1
                        break
                    await asyncio.sleep(delay)
                    delay *= 2
                else:
                    self.sent += 1
                    break

    async def _run_command(self, data: bytes) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self.settings.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
        try:
            _, stderr = await asyncio.wait_for(proc.communicate(data), self.settings.timeout)
        except asyncio.TimeoutError:
            raise RuntimeError(f"no exit within {self.settings.timeout:g}s") from None
        finally:
            if proc.returncode is None:  # timed out or cancelled (close): end what we started
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # its own session: the group is ours
                except ProcessLookupError:
                    pass
                await asyncio.shield(proc.wait())
        if proc.returncode:
            from pltui.sanitize import clean_line

            tail = clean_line(stderr.decode("utf-8", "replace").strip().splitlines()[-1], 200) if stderr.strip() else ""
            raise RuntimeError(f"exit {proc.returncode}" + (f": {tail}" if tail else ""))

    async def _post(self, data: bytes) -> None:
        assert self.settings.webhook is not None  # only called when a webhook is configured
        request = urllib.request.Request(self.settings.webhook, data=data, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": f"pltui/{__version__}"})

        def send() -> None:
            with urllib.request.urlopen(request, timeout=self.settings.timeout) as response:
                response.read(65536)

        try:
            await asyncio.to_thread(send)
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise RuntimeError(str(getattr(exc, "reason", exc))) from None

    async def close(self, timeout: float = 10.0) -> None:
        """Send what is pending (bounded by `timeout`), then stop."""
        if self._engine is not None and self._queue is not None:
            while not self._queue.empty():
                event = self._queue.get_nowait()
                if isinstance(event, NodeTransition):
                    self.submit(event)
            self._engine.unsubscribe(self._queue)
        if self._window_task is not None:
            self._window_task.cancel()  # its finally flushes the window
        self.flush()
        try:
            await asyncio.wait_for(self._deliver_pending(), timeout)
        except asyncio.TimeoutError:
            self._notice("warning", f"alerts: {len(self._outbox)} deliveries not sent before exit")
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)


def attach(engine, settings: AlertSettings | None = None) -> Alerter | None:
    """Start alerting for `engine` per its fleet's [alerts] (None when no hook is configured)."""
    settings = settings or getattr(engine.fleet, "alerts", None)
    if settings is None or not settings.enabled:
        return None
    alerter = Alerter(settings, engine.fleet.name)
    alerter.attach(engine)
    return alerter
