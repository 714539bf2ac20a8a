"""Keys typed while a screen opens are delivered to that screen, in order, never dropped.

A terminal delivers a paste (or tmux `send-keys`, or a fast typist) as one burst: `:rollout`
arrives before the `:` prompt exists. Without help Textual hands `rollout` to whatever had the
focus when each key was dispatched (the node table, whose `r` starts a rollout) or to a screen
with nothing focused yet (dropped): the operator's `:rollout` became `:llout`.

So the app *holds* keys from the moment a screen is pushed until that screen says it is ready
(its input focused): held keys are kept in arrival order and replayed, in the app's own task,
through the normal dispatch once the screen is ready. A screen that never says so (Textual's own
command palette) is released by a short timer, so no key is held for long.
"""

from __future__ import annotations

from textual import events

HOLD_LIMIT = 2.0      # seconds a screen may take to say it is ready (keys wait at most this long)


class ReleaseKeys(events.Event):
    """Posted to the app when the screen that was opening can take keys."""


class KeyHold:
    """Mixin for the App: `hold_keys()` when a screen opens, `release_keys()` when it is ready.

    Held keys are replayed one per app message: a replayed key that closes a screen (esc) or
    opens one lets that change settle before the next key is dispatched, so a double esc never
    pops the same screen twice, and keys after a key that opens a screen wait for that screen."""

    _held: list[events.Event] | None = None
    _waiting = False                     # a screen is opening: no replay until it is ready
    _hold_timer = None

    def hold_keys(self) -> None:
        if self._held is None:
            self._held = []
        self._waiting = True
        if self._hold_timer is not None:
            self._hold_timer.stop()
        self._hold_timer = self.set_timer(HOLD_LIMIT, self.release_keys, name="key-hold")

    def release_keys(self) -> None:
        """Safe to call from any screen's task: the replay happens in the app's queue, after
        everything (focus changes included) the screen queued before it."""
        if self._held is not None:
            self._waiting = False
            self.post_message(ReleaseKeys())

    @property
    def holding_keys(self) -> bool:
        return self._held is not None

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, (events.Key, events.Paste)) and not event.is_forwarded and self._held is not None:
            self._held.append(event)
            return
        if isinstance(event, ReleaseKeys):
            await self._replay_one()
            return
        await super().on_event(event)

    async def _replay_one(self) -> None:
        if self._held is None or self._waiting:
            return                          # a newer screen is still opening; it will release
        if not self._held:
            self._held = None
            if self._hold_timer is not None:
                self._hold_timer.stop()
                self._hold_timer = None
            return
        key = self._held.pop(0)
        await super().on_event(key)
        if not self._waiting:               # the key opened no screen: go on with the next one
            self.post_message(ReleaseKeys())
