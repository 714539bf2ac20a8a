"""The process's open-file limit (RLIMIT_NOFILE): raised once, at start-up, by entry points only.

Each pooled SSH connection holds one file descriptor, so a console on thousands of nodes needs a
soft limit far above the usual 1024. Changing it is process-wide, so library code never does:
`pltui.cli.main` (and bench scripts, and the test session) call `raise_nofile_limit()`; the
engine only reads the limit (`nofile_limit`) and, when it is too low for a fleet, keeps fewer
connections open and says so.
"""

from __future__ import annotations

import resource

UNLIMITED_TARGET = 1 << 20  # soft limit to ask for when the hard limit is unlimited


def nofile_limit(wanted: int) -> tuple[int, str | None]:
    """The soft open-file limit now, and a warning when it is below `wanted` (never changes it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return (wanted if soft == resource.RLIM_INFINITY else soft), None
    shown = "unlimited" if hard == resource.RLIM_INFINITY else hard
    return soft, f"open-file limit is {soft} (hard limit {shown}), below the {wanted} this fleet may need"


def raise_nofile_limit(wanted: int | None = None) -> tuple[int, str | None]:
    """Raise the soft open-file limit toward `wanted` (default: as far as the hard limit allows).

    For entry points only. Returns (soft limit now, warning or None), as `nofile_limit`.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    target = ceiling if wanted is None else min(max(wanted, soft), ceiling)
    if soft != resource.RLIM_INFINITY and target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return nofile_limit(wanted if wanted is not None else 0)
