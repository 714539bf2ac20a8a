#!/bin/sh
# pltui demo service: the "cache". Keeps pretend statistics in DIR/stats and logs them.
# Usage: bin/cache [--dir var/cache]   (exits at once, status 3, while DIR/CORRUPT exists;
#        SIGHUP is logged and survived, so a reload of the whole service never restarts it)
VERSION='@VERSION@'
dir=var/cache
conf=etc/cache.conf
while [ $# -gt 0 ]; do
    case $1 in
        --dir) dir=${2:?--dir needs a directory}; shift 2 ;;
        --version) echo "cache $VERSION"; exit 0 ;;
        *) echo "cache: unknown option $1" >&2; exit 2 ;;
    esac
done

period=5
log_max=65536
size_mb=256
if [ -r "$conf" ]; then
    while read -r key _eq value; do
        case $key in
            period) period=$value ;;
            log_max) log_max=$value ;;
            size_mb) size_mb=$value ;;
        esac
    done <"$conf"
fi

log=logs/cache.log
mkdir -p logs "$dir" || exit 1
size=0
[ -f "$log" ] && size=$(wc -c <"$log")
size=${size##* }

say() {
    line="$(date '+%Y-%m-%dT%H:%M:%S') cache[$$] $*"
    printf '%s\n' "$line" >>"$log"
    size=$((size + ${#line} + 1))
    if [ "$size" -gt "$log_max" ]; then
        mv -f "$log" "$log.1"
        size=0
    fi
}

if [ -e "$dir/CORRUPT" ]; then
    say "FATAL: cache index $dir/index is corrupt ($dir/CORRUPT exists); exiting"
    echo "cache: index corrupt, see $log" >&2
    exit 3
fi

trap 'say "stopping (SIGTERM), $objects objects kept"; exit 0' TERM
trap 'say "SIGHUP: configuration kept (the cache reads it only at start)"' HUP
objects=0
hits=0
misses=0
seed=$$
say "cache $VERSION up: $dir, ${size_mb} MiB"
while :; do
    seed=$(((seed * 1103515245 + 12345) % 2147483648))
    r=$((seed / 65536))
    hits=$((hits + r % 500))
    misses=$((misses + r % 40))
    objects=$((objects + r % 40 - r % 25))
    [ "$objects" -lt 0 ] && objects=0
    printf 'objects %s\nhits %s\nmisses %s\n' "$objects" "$hits" "$misses" >"$dir/stats"
    say "stats objects=$objects hits=$hits misses=$misses evictions=$((r % 25))"
    sleep "$period"
done
