"""Node-side programs of the demo service (`pltui demo`): small POSIX sh loops.

`proxy` and `cache` are installed as `bin/proxy` and `bin/cache` in every demo node's service
root, with ``@VERSION@`` replaced by the node's release. They read `etc/*.conf` (``key = value``
lines), append to `logs/*.log` (rotated to `*.log.1` past ``log_max`` bytes, so a long demo
cannot fill the disk) and fork only `date` and `sleep` once per period.
"""
