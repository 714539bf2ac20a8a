#!/bin/sh
# pltui demo service: the "proxy". Pretends to serve requests and logs one per period.
# Usage: bin/proxy [--config etc/proxy.conf]   (runs in the foreground; SIGHUP re-reads the config)
VERSION='@VERSION@'
conf=etc/proxy.conf
while [ $# -gt 0 ]; do
    case $1 in
        --config) conf=${2:?--config needs a file}; shift 2 ;;
        --version) echo "proxy $VERSION"; exit 0 ;;
        *) echo "proxy: unknown option $1" >&2; exit 2 ;;
    esac
done

load_conf() {
    period=2
    log_max=65536
    listen=8080
    upstream=-
    [ -r "$conf" ] || { echo "proxy: cannot read $conf" >&2; exit 2; }
    while read -r key _eq value; do
        case $key in
            period) period=$value ;;
            log_max) log_max=$value ;;
            listen) listen=$value ;;
            upstream) upstream=$value ;;
        esac
    done <"$conf"
}

log=logs/proxy.log
mkdir -p logs || exit 1
load_conf
size=0
[ -f "$log" ] && size=$(wc -c <"$log")
size=${size##* }

say() {
    line="$(date '+%Y-%m-%dT%H:%M:%S') proxy[$$] $*"
    printf '%s\n' "$line" >>"$log"
    size=$((size + ${#line} + 1))
    if [ "$size" -gt "$log_max" ]; then
        mv -f "$log" "$log.1"
        size=0
    fi
}

reload=
trap 'reload=1' HUP
trap 'say "stopping (SIGTERM)"; exit 0' TERM
say "proxy $VERSION listening on :$listen, upstream $upstream"
seed=$$
while :; do
    if [ -n "$reload" ]; then
        reload=
        load_conf
        say "configuration reloaded from $conf"
    fi
    seed=$(((seed * 1103515245 + 12345) % 2147483648))
    r=$((seed / 65536))
    case $((r % 20)) in
        0) code=404 ;;
        1) code=502 ;;
        *) code=200 ;;
    esac
    say "GET /obj/$((r % 5000)).bin $code $((r % 90000 + 512))B $((r % 80 + 1))ms"
    sleep "$period"
done
