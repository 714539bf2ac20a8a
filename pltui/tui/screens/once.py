"""One answer per screen: a second enter or esc from a burst of keys (or an input that submits
twice) must not dismiss a screen that is already closing, which would pop the screen under it
(or fail with ScreenStackError on the last one)."""

from __future__ import annotations


def dismiss_once(screen, result=None) -> None:
    if getattr(screen, "_pltui_dismissed", False) or not screen.is_active:
        return
    screen._pltui_dismissed = True
    screen.dismiss(result)
