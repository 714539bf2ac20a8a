# pltui release: stage, swap, roll back and prune service releases on one node (POSIX sh).
#
# Sent by pltui (pltui/actions/rollout.py) on stdin to `/bin/sh -s`, after these shell-quoted
# variable assignments:
#   ROOT        the service root
#   CMD         status | prepare | stop | swap | start | reload | rollback | prune
#   ID          the release id (the rollout's action id), [A-Za-z0-9_.-]+
#   SHA256      expected sha256 of the staged bundle (prepare, status)
#   KEEP        how many releases prune keeps (each with the previous files it replaced)
#   NPROCS and, for i in 1..NPROCS, Pi_NAME Pi_START Pi_PIDFILE Pi_STOP Pi_RELOAD Pi_STOP_TIMEOUT:
#               the service's processes, used only when the node monitor is not installed
#               (.pltui/monitor.sh with its .pltui/spec); otherwise the monitor does stop/start/reload.
#
# Layout under ROOT/.pltui/ (paths below are relative to ROOT):
#   staging/ID.tar.gz      the uploaded bundle (pltui writes ID.tar.gz.part over SFTP, then renames)
#   releases/ID/           the new release, extracted by prepare; swap moves its entries into ROOT
#   releases/ID.entries    the release's top-level entries, one per line
#   releases/prev-ID/      the entries of ROOT that ID replaced (what rollback puts back)
#   releases/ID.state      prepared | swapping | swapped | rolling-back | rolled-back
#   releases/ID.prev       the release that was current before ID ("-" for none)
#   releases/current       the id of the release now in ROOT
#   releases/history       ids swapped in and not rolled back, oldest first
#
# Only the release's top-level entries are moved: logs, state and anything else in ROOT that the
# bundle does not hold are never touched. Each entry moves with rename(2) (atomic on one file
# system), and every command is idempotent: where an entry E stands is read from which of
# releases/ID/E and releases/prev-ID/E exist, so an interrupted swap or rollback is completed by
# running it again, and a swap interrupted half-way can be rolled back.
#
# Output: `ok CMD ...` on stdout and exit 0; on failure one line on stderr and exit 1
# (exit 3: no service root). `status` prints "key value" records (see rollout.py).

# shellcheck disable=SC2015  # "a && b || die ...": dies when either fails, on purpose
LC_ALL=C
export LC_ALL
umask 022

die() {
    echo "release.sh $CMD: $*" >&2
    exit 1
}

case $ID in
    '' | *[!A-Za-z0-9_.-]*) die "bad release id" ;;
esac
if ! cd "$ROOT" 2>/dev/null; then
    case $CMD in
        status) printf 'release-status 1\ncurrent -\nstate none\nstaged no\nmonitor no\nentries -\nnoroot\nend\n'; exit 0 ;;
        prepare) mkdir -p "$ROOT" && cd "$ROOT" || die "cannot create the service root $ROOT" ;;
        stop | prune) echo "ok $CMD (no service root)"; exit 0 ;;
        *) echo "release.sh $CMD: service root $ROOT does not exist" >&2; exit 3 ;;
    esac
fi

REL=.pltui/releases
STAGING=.pltui/staging
STAGED=$STAGING/$ID.tar.gz
NEW=$REL/$ID
PREV=$REL/prev-$ID

exists() { [ -e "$1" ] || [ -L "$1" ]; }

first_line() { head -n 1 -- "$1" 2>/dev/null; }

# write FILE TEXT: replace a small file atomically
write() {
    printf '%s\n' "$2" >"$1.tmp.$$" && mv -f "$1.tmp.$$" "$1" || die "cannot write $1"
}

state() { first_line "$REL/$ID.state"; }

# The sha256 tool (named by `status` as `sha256_tool` and by `prepare`): sha256sum, else
# busybox's, else openssl, else shasum (perl); "none" when there is none. A tool counts only if it
# hashes here (a busybox may lack the applet).
SUMTOOL=none
if command -v sha256sum >/dev/null 2>&1; then
    SUMTOOL=sha256sum
elif command -v busybox >/dev/null 2>&1 && busybox sha256sum </dev/null >/dev/null 2>&1; then
    SUMTOOL=busybox
elif command -v openssl >/dev/null 2>&1 && openssl dgst -sha256 -r </dev/null >/dev/null 2>&1; then
    SUMTOOL=openssl
elif command -v shasum >/dev/null 2>&1; then
    SUMTOOL=shasum
fi

sha256_of() {
    case $SUMTOOL in
        sha256sum) sha256sum <"$1" | cut -c 1-64 ;;
        busybox) busybox sha256sum <"$1" | cut -c 1-64 ;;
        openssl) openssl dgst -sha256 -r <"$1" | cut -c 1-64 ;;
        shasum) shasum -a 256 <"$1" | cut -c 1-64 ;;
        *) echo none ;;
    esac
}

nap() { sleep "${1:-0.1}" 2>/dev/null || sleep 1; }

has_monitor() { [ -f .pltui/monitor.sh ] && [ -f .pltui/spec ]; }

monitor() {
    /bin/sh .pltui/monitor.sh "$@" </dev/null || die "monitor.sh $* failed"
}

# -- processes without the monitor --------------------------------------------------------------

proc_vars() {  # proc_vars I: set NAME START PIDFILE STOP RELOAD STOP_TIMEOUT for process I
    eval "NAME=\$P$1_NAME START=\$P$1_START PIDFILE=\$P$1_PIDFILE STOP=\$P$1_STOP RELOAD=\$P$1_RELOAD STOP_TIMEOUT=\$P$1_STOP_TIMEOUT"
    STOP_TIMEOUT=${STOP_TIMEOUT:-10}
}

pid_of() { first_line "$PIDFILE" | tr -cd '0-9'; }

# alive PID: a live process, not a zombie (/proc where there is one, else kill -0 and ps)
alive() {
    [ -n "$1" ] || return 1
    if [ -r "/proc/$1/stat" ]; then
        al_st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d ' ' -f 1)
        case $al_st in '' | Z | X) return 1 ;; *) return 0 ;; esac
    fi
    kill -0 "$1" 2>/dev/null || return 1
    case $(ps -o stat= -p "$1" 2>/dev/null) in *Z*) return 1 ;; esac
    return 0
}

# pgid_of PID: its process group (from /proc, else ps)
pgid_of() {
    if [ -r "/proc/$1/stat" ]; then
        sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d ' ' -f 3
    else
        ps -o pgid= -p "$1" 2>/dev/null | tr -d ' '
    fi
}

# signal SIG PID: the process, then its process group (never our own group)
signal() {
    pg=$(pgid_of "$2")
    kill "-$1" "$2" 2>/dev/null
    [ -n "$pg" ] && [ "$pg" -gt 1 ] && [ "$pg" != "$(pgid_of $$)" ] && kill "-$1" "-$pg" 2>/dev/null
    return 0
}

stop_one() {
    pid=$(pid_of)
    if ! alive "$pid"; then
        rm -f "$PIDFILE"
        return 0
    fi
    if [ -n "$STOP" ]; then
        sh -c "$STOP" </dev/null >/dev/null 2>&1
    else
        signal TERM "$pid"
    fi
    waited=0
    limit=$((STOP_TIMEOUT * 10))
    alive "$pid" && nap 0.02
    while alive "$pid" && [ "$waited" -lt "$limit" ]; do
        nap
        waited=$((waited + 1))
    done
    if alive "$pid"; then
        signal KILL "$pid"
        nap
    fi
    alive "$pid" && die "process $NAME (pid $pid) does not stop"
    rm -f "$PIDFILE"
    return 0
}

start_one() {
    pid=$(pid_of)
    alive "$pid" && return 0
    mkdir -p .pltui/run "$(dirname -- "$PIDFILE")" || die "cannot create the directory of $PIDFILE"
    rm -f "$PIDFILE"
    out=.pltui/run/$NAME.out
    # The start command runs in the foreground: run it detached (its own session where setsid
    # exists) under a small keeper shell that waits for it, so its exit is reaped even where init
    # does not reap orphans; the keeper writes the command's pid to the pidfile.
    # Portability: `( exec CMD REDIRECTIONS ) &`, not `CMD REDIRECTIONS &`: yash runs the latter
    # in a subshell that keeps our stdout/stderr open (the SSH channel then never closes) and
    # waits for CMD. nohup only without setsid (busybox often has no nohup; a new session gets
    # no SIGHUP anyway, and an ignored SIGHUP would be inherited by the service).
    # shellcheck disable=SC2016 # expanded by the keeper shell, not here
    keeper='c=$PLTUI_START; p=$PLTUI_PIDFILE; unset PLTUI_START PLTUI_PIDFILE
/bin/sh -c "$c" &
echo $! >"$p.tmp" && mv -f "$p.tmp" "$p"
wait'
    PLTUI_START=$START PLTUI_PIDFILE=$PIDFILE
    export PLTUI_START PLTUI_PIDFILE
    if command -v setsid >/dev/null 2>&1; then
        (exec setsid /bin/sh -c "$keeper" </dev/null >"$out" 2>&1) &
    elif command -v nohup >/dev/null 2>&1; then
        (exec nohup /bin/sh -c "$keeper" </dev/null >"$out" 2>&1) &
    else
        (trap '' HUP; exec /bin/sh -c "$keeper" </dev/null >"$out" 2>&1) &
    fi
    unset PLTUI_START PLTUI_PIDFILE
    waited=0
    while [ ! -s "$PIDFILE" ] && [ "$waited" -lt 250 ]; do
        nap 0.02
        waited=$((waited + 1))
    done
    [ -s "$PIDFILE" ] || die "process $NAME: no pid in $PIDFILE after start"
}

each_proc() {  # each_proc FUNCTION
    i=1
    while [ "$i" -le "${NPROCS:-0}" ]; do
        proc_vars "$i"
        "$1"
        i=$((i + 1))
    done
}

# reload_one (no monitor): the RELOAD command, which must leave the same process running (checked
# a second later: a reload that killed or replaced it fails, it is never reported as reloaded);
# without a RELOAD command the process is restarted. With a monitor, `monitor.sh reload` does
# this, and sends SIGHUP to the service itself where no command is configured.
reload_one() {
    if [ -n "$RELOAD" ]; then
        before=$(pid_of)
        alive "$before" || die "process $NAME is not running: nothing to reload"
        sh -c "$RELOAD" </dev/null >/dev/null 2>&1 || die "reload command of $NAME failed"
        nap 1
        after=$(pid_of)
        alive "$before" && [ "$after" = "$before" ] ||
            die "process $NAME (pid $before) did not survive its reload command: restarted, not reloaded"
    else
        stop_one
        start_one
    fi
}

# -- commands ---------------------------------------------------------------------------------

cmd_status() {
    echo "release-status 1"
    cur=$(first_line "$REL/current")
    echo "current ${cur:--}"
    st=$(state)
    echo "state ${st:-none}"
    if [ -f "$STAGED" ]; then
        if [ "$(sha256_of "$STAGED")" = "$SHA256" ]; then echo "staged yes"; else echo "staged bad"; fi
    else
        echo "staged no"
    fi
    if has_monitor; then echo "monitor yes"; else echo "monitor no"; fi
    echo "sha256_tool $SUMTOOL"
    if [ -f "$REL/$ID.entries" ] && [ -d "$NEW" ]; then
        total=0 in=0 prev=0
        while IFS= read -r e; do
            [ -n "$e" ] || continue
            total=$((total + 1))
            exists "$NEW/$e" || in=$((in + 1))
            exists "$PREV/$e" && prev=$((prev + 1))
        done <"$REL/$ID.entries"
        echo "entries $total $in $prev"
    else
        echo "entries -"
    fi
    echo "end"
}

cmd_prepare() {
    [ -f "$STAGED" ] || die "bundle not staged ($STAGED missing)"
    sum=$(sha256_of "$STAGED")
    [ "$sum" != none ] || die "no sha256 tool (sha256sum, busybox sha256sum, openssl or shasum) on this node"
    [ "$sum" = "$SHA256" ] || die "sha256 of $STAGED is $sum, expected $SHA256 (damaged upload)"
    if [ -f "$REL/$ID.entries" ] && [ -d "$NEW" ]; then
        echo "ok prepare (already; sha256 by $SUMTOOL)"
        return 0
    fi
    case $(state) in
        swapping | swapped | rolling-back) die "release $ID is $(state) but its files are missing" ;;
    esac
    rm -rf "$NEW.tmp" "$NEW" "$REL/$ID.entries" || die "cannot clear $NEW"
    mkdir -p "$NEW.tmp" || die "cannot create $NEW.tmp"
    gzip -dc <"$STAGED" | tar -xf - -C "$NEW.tmp" || die "cannot extract $STAGED (disk full?)"
    ls -A "$NEW.tmp" >"$NEW.tmp.entries" || die "cannot list $NEW.tmp"
    [ -s "$NEW.tmp.entries" ] || die "the bundle extracted to nothing"
    grep -qx '.pltui' "$NEW.tmp.entries" && die "the bundle holds .pltui"
    mv "$NEW.tmp" "$NEW" && mv "$NEW.tmp.entries" "$REL/$ID.entries" || die "cannot move $NEW.tmp into place"
    write "$REL/$ID.state" prepared
    echo "ok prepare (sha256 by $SUMTOOL)"
}

cmd_swap() {
    [ -f "$REL/$ID.entries" ] || die "release $ID is not prepared"
    if [ "$(state)" = swapped ]; then
        echo "ok swap (already)"
        return 0
    fi
    if [ ! -f "$REL/$ID.prev" ]; then
        cur=$(first_line "$REL/current")
        write "$REL/$ID.prev" "${cur:--}"
    fi
    write "$REL/$ID.state" swapping
    mkdir -p "$PREV" || die "cannot create $PREV"
    while IFS= read -r e; do
        [ -n "$e" ] || continue
        exists "$NEW/$e" || continue  # already swapped in
        if exists "./$e"; then
            exists "$PREV/$e" && die "cannot swap $e: ./$e and $PREV/$e both exist"
            mv "./$e" "$PREV/$e" || die "cannot move ./$e to $PREV"
        fi
        exists "./$e" && die "cannot swap $e: ./$e reappeared"
        mv "$NEW/$e" "./$e" || die "cannot move $NEW/$e into place"
    done <"$REL/$ID.entries"
    write "$REL/current" "$ID"
    { grep -vx -- "$ID" "$REL/history" 2>/dev/null; echo "$ID"; } >"$REL/history.tmp.$$" &&
        mv -f "$REL/history.tmp.$$" "$REL/history" || die "cannot write $REL/history"
    write "$REL/$ID.state" swapped
    echo "ok swap"
}

cmd_rollback() {
    if [ ! -f "$REL/$ID.entries" ]; then
        echo "ok rollback (nothing was prepared)"
        return 0
    fi
    case $(state) in
        rolled-back) echo "ok rollback (already)"; return 0 ;;
        prepared | '') write "$REL/$ID.state" rolled-back; echo "ok rollback (never swapped)"; return 0 ;;
    esac
    write "$REL/$ID.state" rolling-back
    mkdir -p "$NEW" || die "cannot create $NEW"
    while IFS= read -r e; do
        [ -n "$e" ] || continue
        if ! exists "$NEW/$e" && exists "./$e"; then
            mv "./$e" "$NEW/$e" || die "cannot move ./$e back to $NEW"
        fi
        if exists "$PREV/$e"; then
            exists "./$e" && die "cannot restore $e: ./$e exists"
            mv "$PREV/$e" "./$e" || die "cannot restore $e from $PREV"
        fi
    done <"$REL/$ID.entries"
    cur=$(first_line "$REL/current")
    if [ "$cur" = "$ID" ]; then
        before=$(first_line "$REL/$ID.prev")
        if [ -z "$before" ] || [ "$before" = - ]; then
            rm -f "$REL/current"
        else
            write "$REL/current" "$before"
        fi
    fi
    if [ -f "$REL/history" ]; then
        grep -vx -- "$ID" "$REL/history" >"$REL/history.tmp.$$"
        mv -f "$REL/history.tmp.$$" "$REL/history" || die "cannot write $REL/history"
    fi
    write "$REL/$ID.state" rolled-back
    echo "ok rollback"
}

cmd_stop() {
    if has_monitor; then
        monitor proc-stop all
    else
        each_proc stop_one
    fi
    echo "ok stop"
}

cmd_start() {
    if has_monitor; then
        monitor proc-start all
    else
        each_proc start_one
    fi
    echo "ok start"
}

cmd_reload() {
    if has_monitor; then
        monitor reload all
    else
        each_proc reload_one
    fi
    echo "ok reload"
}

remove_release() {
    [ -n "$1" ] || return 0
    rm -rf "$REL/prev-${1:?}" "$REL/${1:?}" "$REL/$1.tmp" "$REL/$1.tmp.entries" "$REL/$1.entries" "$REL/$1.state" \
        "$REL/$1.prev" "$STAGING/$1.tar.gz" "$STAGING/$1.tar.gz.part"
}

cmd_prune() {
    keep=${KEEP:-2}
    cur=$(first_line "$REL/current")
    if [ -f "$REL/history" ]; then
        n=$(wc -l <"$REL/history" | tr -d ' ')
        drop=$((n - keep))
        if [ "$drop" -gt 0 ]; then
            head -n "$drop" "$REL/history" | while IFS= read -r old; do
                case $old in '' | *[!A-Za-z0-9_.-]*) continue ;; esac
                [ "$old" = "$cur" ] || [ "$old" = "$ID" ] || remove_release "$old"
            done
            tail -n "$keep" "$REL/history" >"$REL/history.tmp.$$" && mv -f "$REL/history.tmp.$$" "$REL/history"
        fi
    fi
    # releases rolled back earlier (other than this one) are of no further use
    for f in "$REL"/*.state; do
        [ -f "$f" ] || continue
        old=${f##*/}
        old=${old%.state}
        [ "$old" = "$ID" ] && continue
        [ "$(first_line "$f")" = rolled-back ] && remove_release "$old"
    done
    rm -f "$STAGED" "$STAGED.part"
    echo "ok prune"
}

case $CMD in
    status) cmd_status ;;
    prepare) cmd_prepare ;;
    stop) cmd_stop ;;
    swap) cmd_swap ;;
    start) cmd_start ;;
    reload) cmd_reload ;;
    rollback) cmd_rollback ;;
    prune) cmd_prune ;;
    *) die "unknown command" ;;
esac
