# pltui probe: report one node's state on stdout, one record per line.
#
# Sent by pltui on stdin to `sh -s`, with these variables assigned (shell-quoted) before it:
#   ROOT              the service root (the probe only reads; it never writes anything)
#   VERSION_FILE      file holding the service version, relative to ROOT
#   PROTOCOL_FILE     file holding the protocol version (or empty)
#   PROTOCOL_COMMAND  command printing the protocol version (or empty)
#   PROCS             lines "NAME PIDFILE" for each configured process
#   LOGS, IMPORTANT   newline-separated glob patterns relative to ROOT
#   CHECKSUMS         1 to add a sha256 of every file matching IMPORTANT
# The record format is described in docs/node-layout.md and parsed strictly by pltui/probe.py.

LC_ALL=C
export LC_ALL
NL='
'

first_line() {  # first line of a file, at most 200 bytes
    head -n 1 -- "$1" 2>/dev/null | cut -c 1-200
}

alive() {  # PID is a live process: kill -0 succeeds and, where /proc exists, it is no zombie
    kill -0 "$1" 2>/dev/null || return 1
    [ -r "/proc/$1/status" ] || return 0
    while read -r key value _; do
        if [ "$key" = "State:" ]; then
            [ "$value" != Z ] && [ "$value" != X ]
            return
        fi
    done <"/proc/$1/status"
    return 0
}

echo "pltui-probe 1"
echo "clock $(date +%s)"
if [ -r /proc/uptime ]; then read -r up _ </proc/uptime; echo "uptime ${up%%.*}"; fi
if [ -r /proc/loadavg ]; then read -r l1 _ </proc/loadavg; echo "load $l1"; fi

if ! cd "$ROOT" 2>/dev/null; then
    echo "noroot"
    echo "end"
    exit 0
fi

free=$(df -Pk . 2>/dev/null | awk 'NR == 2 { printf "%.0f\n", $4 * 1024 }')
[ -n "$free" ] && echo "disk_free $free"

# Total bytes of log files (GNU and busybox wc take their size from stat, not by reading).
# Patterns are split on newlines only; their matches are never split (IFS empty while globbing:
# shells split pathname-expansion results too).
IFS=$NL
set --
for pattern in $LOGS; do
    IFS=
    for f in $pattern; do
        [ -f "$f" ] && set -- "$@" "$f"
    done
    IFS=$NL
done
unset IFS
if [ $# -eq 0 ]; then
    echo "log_bytes 0"
elif [ $# -eq 1 ]; then
    echo "log_bytes $(wc -c <"$1" | tr -d ' ')"
else
    echo "log_bytes $(wc -c -- "$@" 2>/dev/null | tail -n 1 | awk '{ print $1 }')"
fi

if [ -n "$VERSION_FILE" ] && [ -f "$VERSION_FILE" ]; then
    echo "version $(first_line "$VERSION_FILE")"
fi
if [ -n "$PROTOCOL_COMMAND" ]; then
    p=$(sh -c "$PROTOCOL_COMMAND" 2>/dev/null </dev/null | head -n 1 | cut -c 1-200)
    [ -n "$p" ] && echo "protocol $p"
elif [ -n "$PROTOCOL_FILE" ] && [ -f "$PROTOCOL_FILE" ]; then
    echo "protocol $(first_line "$PROTOCOL_FILE")"
fi

# The node monitor: its pid, and the heartbeat it writes (.pltui/state).
mpid=$(first_line .pltui/monitor.pid | tr -cd '0-9')
if [ -z "$mpid" ]; then
    echo "monitor_pid -"
elif alive "$mpid"; then
    echo "monitor_pid $mpid alive"
else
    echo "monitor_pid $mpid dead"
fi
if [ -f .pltui/state ]; then
    head -n 200 .pltui/state | while read -r kind rest; do
        case $kind in
            heartbeat) echo "hb_time $rest" ;;
            proc) echo "hb_proc $rest" ;;
        esac
    done
fi

# Each configured process: is the pid in its pidfile alive? (No globbing: a pidfile is one path.)
set -f
IFS=$NL
for line in $PROCS; do
    unset IFS
    name=${line%% *}
    pidfile=${line#* }
    pid=$(first_line "$pidfile" | tr -cd '0-9')
    if [ -n "$pid" ] && alive "$pid"; then
        echo "proc $name alive $pid"
    else
        echo "proc $name dead ${pid:--}"
    fi
    IFS=$NL
done
unset IFS
set +f

if [ "$CHECKSUMS" = 1 ]; then
    if command -v sha256sum >/dev/null 2>&1; then
        tool=sha256sum
    elif command -v shasum >/dev/null 2>&1; then
        tool=shasum
    elif command -v openssl >/dev/null 2>&1; then
        tool=openssl
    else
        tool=none
    fi
    echo "digest_tool $tool"
    # Every file matching IMPORTANT, and every file below a matching directory. Names are never
    # split or re-globbed (find hands them to the digest tool itself), so names holding
    # newlines, spaces, quotes or glob characters are digested like any other; sha256sum and
    # shasum escape a newline or backslash in a name (the line then starts with `\`).
    # `.pltui-repair-*` files are a repair's uploads in flight (renamed into place once
    # verified, or left behind by an interrupted repair): never part of the service.
    if [ "$tool" != none ]; then
        IFS=$NL
        set --
        for pattern in $IMPORTANT; do
            IFS=
            for f in $pattern; do
                case ${f##*/} in .pltui-repair-*) continue ;; esac
                if [ -f "$f" ]; then
                    set -- "$@" "$f"
                elif [ -d "$f" ]; then
                    case $f in -*) f=./$f ;; esac  # never read as an option by find
                    case $tool in
                        sha256sum) find "$f" -type f ! -name '.pltui-repair-*' -exec sha256sum -- {} + 2>/dev/null ;;
                        shasum) find "$f" -type f ! -name '.pltui-repair-*' -exec shasum -a 256 -- {} + 2>/dev/null ;;
                        # openssl -r prints "DIGEST *NAME" unescaped: a name holding a newline is cut there
                        openssl) find "$f" -type f ! -name '.pltui-repair-*' -exec openssl dgst -sha256 -r {} + \
                                     2>/dev/null | sed -n 's/^\([0-9a-f]\{64\}\) \*/\1  /p' ;;
                    esac
                fi
            done
            IFS=$NL
        done
        unset IFS
        if [ $# -gt 0 ]; then
            case $tool in
                sha256sum) sha256sum -- "$@" 2>/dev/null ;;
                shasum) shasum -a 256 -- "$@" 2>/dev/null ;;
                openssl) openssl dgst -sha256 -r "$@" 2>/dev/null | sed -n 's/^\([0-9a-f]\{64\}\) \*/\1  /p' ;;
            esac
        fi
    fi | sed 's/^/file /'
fi
echo "end"
