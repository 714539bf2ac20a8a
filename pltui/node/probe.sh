# pltui probe: report one node's state on stdout, one record per line.
#
# Installed by bootstrap as ROOT/.pltui/probe-<sha256 prefix>.sh: liveness probes source it in
# the login shell (`. F; exit`: it must not rely on being its own process), checksum probes run
# it as `/bin/sh F` when its digest matches; else it is sent on stdin to `sh -s` (pltui/probe.py). Its parameters come from
# the fleet file on every sweep, as positional arguments, in this order:
#   ROOT              the service root (the probe writes only .pltui/digests*, on checksum probes)
#   VERSION_FILE      file holding the service version, relative to ROOT
#   PROTOCOL_FILE     file holding the protocol version (or empty)
#   PROTOCOL_COMMAND  command printing the protocol version (or empty)
#   PROCS             lines "NAME PIDFILE" for each configured process
#   LOGS, IMPORTANT   newline-separated glob patterns relative to ROOT
#   CHECKSUMS         1 to add a sha256 of every file matching IMPORTANT
#   FULL_AFTER        seconds: a checksum probe re-hashes every file when the last full pass
#                     (.pltui/digests) is older; else only files whose inode, size, mtime or
#                     ctime changed. 0 or empty: always full
# The record format is described in docs/node-layout.md and parsed by pltui/probe.py.
#
# Runs under dash, bash, busybox ash and mksh with GNU or busybox tools. It runs on every node
# on every sweep, so it forks as little as it can: files are read with `read`, numbers checked
# with `case`, lines cut with parameter expansion. Lists of files are never built in the shell
# (`set -- "$@" "$f"` in a loop is quadratic): globs stream NUL-separated names into xargs.
# Nothing but a regular file is ever opened (a FIFO would block the probe, a device never ends).

ROOT=$1 VERSION_FILE=$2 PROTOCOL_FILE=$3 PROTOCOL_COMMAND=$4 PROCS=$5 LOGS=$6 IMPORTANT=$7 CHECKSUMS=$8 FULL_AFTER=${9-0}
LC_ALL=C
export LC_ALL
NL='
'
case ${KSH_VERSION-} in *MIRBSD*) set +U ;; esac  # mksh: count bytes, not UTF-8 characters

# say TEXT: one record line (never `echo`: dash's echo interprets backslashes in node data).
# out0 NAME: NAME and a NUL byte, for xargs -0. mksh's printf is not a builtin: use `print`.
if [ -n "${KSH_VERSION-}" ] && command -v print >/dev/null 2>&1; then
    say() { print -r -- "$1"; }
    out0() { print -rn -- "$1"; print -n '\0'; }
else
    say() { printf '%s\n' "$1"; }
    out0() { printf '%s\0' "$1"; }
fi

cut200() {  # LINE cut to 200 bytes. A fork, but only for an overlong line: `${LINE%"${LINE#$Q}"}`
    # with 200 `?` in Q would be quadratic in dash (an 11 kB line takes a second).
    [ ${#LINE} -le 200 ] || LINE=$(printf '%s\n' "$LINE" | cut -b 1-200)
}

first_line() {  # LINE = first line of regular file $1, cut to 200 bytes; status 1 if none
    LINE=
    [ -f "$1" ] && [ -r "$1" ] || return 1
    IFS= read -r LINE <"$1" || [ -n "$LINE" ] || return 1
    cut200
}

read_pid() {  # PID = the leading digits of the first word of regular file $1, or empty
    PID=
    [ -f "$1" ] && [ -r "$1" ] && read -r PID _ <"$1"
    PID=${PID%%[!0-9]*}
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

# The node's clock first: the engine compares it with the time it sent the probe.
# bash 5, mksh and busybox ash have $EPOCHREALTIME (no fork); dash runs date.
clock=${EPOCHREALTIME-}
case $clock in [0-9]*.[0-9]*) ;; *) clock=$(date +%s.%N 2>/dev/null) ;; esac
case $clock in *[!0-9.]*|'') clock=${clock%%.*} ;; esac  # busybox date prints %N as is
case $clock in *[!0-9.]*|'') clock=$(date +%s) ;; esac
say "pltui-probe 1"
say "clock $clock"
if [ -r /proc/uptime ]; then read -r up _ </proc/uptime; say "uptime ${up%%.*}"; fi
if [ -r /proc/loadavg ]; then read -r l1 _ </proc/loadavg; say "load $l1"; fi

if ! cd "$ROOT" 2>/dev/null; then
    say "noroot"
    say "end"
    exit 0
fi

# Free space in KiB (the engine multiplies: mksh's arithmetic is 32 bits). `df -P` prints a
# header of 7 words, then FILESYSTEM BLOCKS USED AVAILABLE ...
set -f
set -- $(df -Pk . 2>/dev/null)
set +f
if [ $# -ge 11 ]; then
    case ${11} in *[!0-9]*|'') ;; *) say "disk_kib ${11}" ;; esac
fi

# Total bytes of regular log files. Patterns are split on newlines only (no globbing then);
# each pattern is globbed with IFS empty, so no match is split or re-globbed. A first pass
# (builtins only) counts up to 101 matches: a few regular files are handed to one `wc -c`; many, or
# any that is not a regular file (never opened), stream NUL-separated through xargs. wc -c gets
# /dev/null first in every call, so each call ends with a total line (awk adds them up).
LOGN=0 LOGODD=
set -f; IFS=$NL
for pattern in $LOGS; do
    set +f; IFS=
    for f in $pattern; do
        if [ -f "$f" ]; then LOGN=$((LOGN + 1)); elif [ -e "$f" ] || [ -L "$f" ]; then LOGODD=1; fi
        case $f in *"$NL"*) LOGODD=1 ;; esac
        [ $LOGN -gt 100 ] && break 2  # many: stream them (below); no need to count further
    done
done
if [ $LOGN -eq 0 ]; then
    say "log_bytes 0"
elif [ $LOGN -le 100 ] && [ -z "$LOGODD" ]; then
    set --
    set -f; IFS=$NL
    for pattern in $LOGS; do
        set +f  # IFS stays a newline (no name holds one here): posh joins "$@" $p when IFS is empty
        set -- "$@" $pattern  # once per pattern, not per file
    done
    set -f; unset IFS
    set -- $(wc -c -- /dev/null "$@" 2>/dev/null)
    if [ $# -ge 2 ]; then eval "LINE=\${$(($# - 1))}"; else LINE=; fi
    case $LINE in *[!0-9]*|'') ;; *) say "log_bytes $LINE" ;; esac
else
    set -f; IFS=$NL
    for pattern in $LOGS; do
        set +f; IFS=
        for f in $pattern; do
            [ -f "$f" ] && out0 "$f"
        done
    done | xargs -0 -r wc -c -- /dev/null 2>/dev/null |
        awk '$2 == "/dev/null" && NF == 2 { s += t } { t = $1 } END { printf "log_bytes %.0f\n", s + t }'
fi
set +f; unset IFS

if [ -n "$VERSION_FILE" ] && first_line "$VERSION_FILE"; then
    say "version $LINE"
fi
if [ -n "$PROTOCOL_COMMAND" ]; then
    LINE=$(sh -c "$PROTOCOL_COMMAND" 2>/dev/null </dev/null | head -n 1)
    cut200
    [ -n "$LINE" ] && say "protocol $LINE"
elif [ -n "$PROTOCOL_FILE" ] && first_line "$PROTOCOL_FILE"; then
    say "protocol $LINE"
fi

# The node monitor: its pid, and the heartbeat it writes (.pltui/state, at most 200 lines).
read_pid .pltui/monitor.pid
if [ -z "$PID" ]; then
    say "monitor_pid -"
elif alive "$PID"; then
    say "monitor_pid $PID alive"
else
    say "monitor_pid $PID dead"
fi
if [ -f .pltui/state ] && [ -r .pltui/state ]; then
    n=0
    while [ $n -lt 200 ] && read -r kind rest; do
        n=$((n + 1))
        LINE=$rest
        cut200
        case $kind in
            heartbeat) say "hb_time $LINE" ;;
            proc) say "hb_proc $LINE" ;;
        esac
        [ "$LINE" = "$rest" ] || break  # an overlong line: the file is garbage (flagged), stop reading
    done <.pltui/state
fi

# Each configured process: is the pid in its pidfile alive? (No globbing: a pidfile is one path.)
set -f; IFS=$NL
for line in $PROCS; do
    unset IFS
    read_pid "${line#* }"
    if [ -n "$PID" ] && alive "$PID"; then
        say "proc ${line%% *} alive $PID"
    else
        say "proc ${line%% *} dead ${PID:--}"
    fi
    IFS=$NL
done
set +f; unset IFS

kind_of() {  # KIND of important path $1: file, dir, none (no such path) or why it is not read
    if [ -L "$1" ]; then
        if [ -f "$1" ]; then KIND=file; [ -r "$1" ] || KIND=unreadable
        elif [ -d "$1" ]; then KIND=dir
        elif [ -c "$1" ] || [ -b "$1" ]; then KIND="link to device"
        elif [ -p "$1" ]; then KIND="link to fifo"
        elif [ -S "$1" ]; then KIND="link to socket"
        elif [ -e "$1" ]; then KIND=other
        else KIND="broken link"
        fi
    elif [ -f "$1" ]; then KIND=file; [ -r "$1" ] || KIND=unreadable
    elif [ -d "$1" ]; then KIND=dir
    elif [ -p "$1" ]; then KIND=fifo
    elif [ -c "$1" ] || [ -b "$1" ]; then KIND=device
    elif [ -S "$1" ]; then KIND=socket
    elif [ -e "$1" ]; then KIND=other
    else KIND=none
    fi
}

important() {  # run "$@" NAME for every path matching IMPORTANT (`.pltui-repair-*`: a repair's upload)
    set -f; IFS=$NL
    for pattern in $IMPORTANT; do
        set +f; IFS=
        for f in $pattern; do
            case ${f##*/} in .pltui-repair-*) continue ;; esac
            case $f in -*) f=./$f ;; esac  # never read as an option by a tool
            "$@" "$f"
        done
    done
    set +f; unset IFS
}

one_line() {  # ESC = $1 with each newline shown as \n (a name that fits on one record line)
    ESC= rest=$1
    while :; do
        case $rest in
            *"$NL"*) ESC=$ESC${rest%%"$NL"*}'\n'; rest=${rest#*"$NL"} ;;
            *) ESC=$ESC$rest; return ;;
        esac
    done
}

special() {  # pass 1: say why an important path that is not a file or directory is not read
    case ${ESCAPES:-$1} in
        *"$NL"*) one_line "$1"; say "special newline in name $ESC"; return ;;
    esac
    kind_of "$1"
    case $KIND in
        file|dir|none) ;;
        *) say "special $KIND $1" ;;
    esac
    [ "$KIND" = dir ] || return 0
    # One printf per special file found (rare); busybox find ignores `-exec {} +` in parentheses.
    find "$1" ! -name "*$NL*" \( -type p -exec printf 'special fifo %s\n' {} \; \) -o \
        \( \( -type c -o -type b \) -exec printf 'special device %s\n' {} \; \) -o \
        \( -type s -exec printf 'special socket %s\n' {} \; \) 2>/dev/null
}

# Names holding a newline are digested only by a tool that escapes them: busybox sha256sum and
# openssl print them raw, which would cut the record in two (pass 1 reports such a name; below a
# directory it is left out).
readable() {  # pass 2: NUL-separated names of the regular files to digest (never a FIFO)
    case ${ESCAPES:-$1} in *"$NL"*) return ;; esac
    if [ -f "$1" ]; then
        [ -r "$1" ] && out0 "$1"
    elif [ -d "$1" ] && [ -n "$ESCAPES" ]; then
        find "$1" -type f ! -name '.pltui-repair-*' -print0 2>/dev/null
    elif [ -d "$1" ]; then
        find "$1" -type f ! -name '.pltui-repair-*' ! -"${NLTEST:-name}" "*$NL*" -print0 2>/dev/null
    fi
}

digest() {  # "file HEX  NAME" for each NUL-separated name on stdin
    case $tool in
        sha256sum) xargs -0 -r sha256sum -- 2>/dev/null | sed 's/^/file /' ;;
        busybox) xargs -0 -r busybox sha256sum -- 2>/dev/null | sed 's/^/file /' ;;
        shasum) xargs -0 -r shasum -a 256 -- 2>/dev/null | sed 's/^/file /' ;;
        openssl) xargs -0 -r openssl dgst -sha256 -r 2>/dev/null |
                     sed -n 's/^\([0-9a-f]\{64\}\) \*/file \1  /p' ;;
    esac
}

with_nl() {  # NUL-separated paths holding a newline, as `readable` gives them (never cached)
    case $1 in *"$NL"*)
        [ -n "$ESCAPES" ] || return 0
        [ -f "$1" ] && [ -r "$1" ] && out0 "$1"; [ -d "$1" ] && find "$1" -type f -print0 2>/dev/null; return ;;
    esac
    [ -d "$1" ] || return 0
    if [ -n "$ESCAPES" ]; then find "$1" -type f ! -name '.pltui-repair-*' -path "*$NL*" -print0 2>/dev/null
    else find "$1" -type f ! -name '.pltui-repair-*' -path "*$NL*" ! -name "*$NL*" -print0 2>/dev/null
    fi
}

# Incremental checksums. .pltui/digests holds `full EPOCH` (the last full pass), then one line
# per file: `INODE:SIZE:MTIME:CTIME file HEX  NAME`. A file whose stat key is unchanged keeps its
# digest; the rest are hashed; every FULL_AFTER seconds all are (a change that stat does not
# show: bit rot, a damaged state file). Names holding a backslash or newline are never cached,
# nor a file changed in the second the probe started (stat's times are whole seconds: a change
# later in that second would not show), so it is hashed again next time.
incremental_ok() {
    case $FULL_AFTER in *[!0-9]*|''|0) return 1 ;; esac
    command -v stat >/dev/null 2>&1 || return 1
    [ -d .pltui ] || mkdir .pltui 2>/dev/null || return 1
    [ -w .pltui ]
}

incremental() {
    S=.pltui/digests T=.pltui/digests.$$ now=${clock%%.*} full=1
    if [ -f $S ] && read -r word last _ <$S && [ "$word" = full ]; then
        case $last in *[!0-9]*|'') ;; *) [ $((now - last)) -lt "$FULL_AFTER" ] && [ "$last" -le "$now" ] && full=0 ;; esac
    fi
    saved=$ESCAPES; ESCAPES= NLTEST=path  # no path holding a newline: stat prints it raw
    important readable | xargs -0 -r stat -c '%i:%s:%Y:%Z %n' -- 2>/dev/null >$T.stat
    ESCAPES=$saved NLTEST=
    # Cached records to stdout (and the new state), names to hash to $T.todo (one a line).
    awk -v full=$full -v todo=$T.todo -v new=$T.new -v state=$S '
        BEGIN { while ((getline l < state) > 0) { k = l; sub(/ .*/, "", k); r = substr(l, length(k) + 2)
                    if (substr(r, 1, 5) == "file " && substr(r, 70, 2) == "  ") { n = substr(r, 72); key[n] = k; rec[n] = r } } }
        !/^[0-9]+:[0-9]+:[0-9]+:[0-9]+ / { next }
        { k = $1; n = substr($0, length(k) + 2)
          if (!full && (n in key) && key[n] == k && index(n, "\\") == 0) { print rec[n]; print k " " rec[n] > new }
          else print n > todo }
        END { close(todo); close(new) }' $T.stat
    [ -f $T.todo ] || : >$T.todo
    [ -f $T.new ] || : >$T.new
    tr '\n' '\0' <$T.todo | digest >$T.hashed
    cat $T.hashed
    important with_nl | digest
    # The new state: the header, the cached lines, the new digests with their stat keys.
    { if [ $full = 1 ]; then say "full $now"; else IFS= read -r LINE <$S; say "$LINE"; fi
      cat $T.new
      awk -v stat=$T.stat -v now=$now 'BEGIN { while ((getline l < stat) > 0) { k = l; sub(/ .*/, "", k); key[substr(l, length(k) + 2)] = k } }
           substr($0, 1, 6) != "file \\" { n = substr($0, 72); if (!(n in key)) next; split(key[n], a, ":")
                                              if (a[3] < now && a[4] < now) print key[n] " " $0 }' $T.hashed
    } >$T.tmp && mv -f $T.tmp $S
    rm -f $T.stat $T.todo $T.new $T.hashed
}

if [ "$CHECKSUMS" = 1 ]; then
    # sha256sum and shasum escape a backslash in a name (the line then starts with `\`).
    if command -v sha256sum >/dev/null 2>&1; then tool=sha256sum
    elif command -v openssl >/dev/null 2>&1; then tool=openssl
    elif command -v busybox >/dev/null 2>&1; then tool=busybox
    elif command -v shasum >/dev/null 2>&1; then tool=shasum
    else tool=none
    fi
    say "digest_tool $tool"
    # GNU sha256sum and shasum escape a name holding a newline; busybox's and openssl do not.
    ESCAPES=
    case $tool in
        shasum) ESCAPES=1 ;;
        sha256sum)
            ESCAPES=1
            set -f; IFS=:
            for d in $PATH; do
                if [ -x "$d/sha256sum" ]; then
                    { [ "$d/sha256sum" -ef /bin/busybox ] || [ "$d/sha256sum" -ef /usr/bin/busybox ]; } 2>/dev/null && ESCAPES=  # posh has no -ef
                    break
                fi
            done
            set +f; unset IFS ;;
    esac
    important special
    if [ "$tool" = none ]; then :
    elif incremental_ok; then incremental
    else important readable | digest
    fi
fi
say "end"
