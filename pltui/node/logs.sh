# pltui logs helper: list log files with size, mtime and sha256, or prune verified copies.
#
# Sent by pltui on stdin to `sh -s`, with these variables assigned (shell-quoted) before it:
#   ROOT   the service root; relative paths below are relative to it
#   MODE   list | stat | hash | prune
#   LOGS   (list, stat) newline-separated glob patterns; a pattern matching a directory takes
#          every regular file below it. Symbolic links are never followed nor listed.
# and the positional parameters: for hash, the files to hash (`set -- PATH ...`); for prune,
# `set -- SIZE MTIME SHA256 PATH ...` (four words per file). pltui shell-quotes every word.
#
# The node's file names may hold any byte but NUL, so list/stat/hash end every record with a
# NUL byte and put the name last; pltui parses it strictly (pltui/actions/logs/listing.py) and treats
# every byte as hostile. A name is never echoed back by `prune`: its records name a file by its
# index.
#
# list / stat / hash records (NUL-terminated):
#   pltui-logs 1
#   tools SUM BIGSUM NICE CODEC...     SUM: sha256 tool for small files (sha256sum | busybox |
#                                      openssl | shasum, the first that works), BIGSUM: for >= 4 MiB
#                                      (openssl is fastest with SHA extensions, but slow to start),
#                                      NICE: nice|-, CODEC: zstd, gzip (compressors found)
#   stat SIZE PATH                     about to hash PATH (pltui bounds its wait by SIZE)
#   file SIZE MTIME CTIME INODE SHA256 MOVED PATH
#                                      SHA256 of the first SIZE bytes ("-" in stat mode: not
#                                      hashed); MOVED 1 when stat changed while hashing (the file
#                                      is being written)
#   skip REASON PATH                   REASON: unreadable | vanished
#   error REASON                       REASON: noroot | nostat | nosum (nothing else follows)
#   end
# prune records (one per line; I is the file's 1-based index in the arguments):
#   pruned I      deleted: unchanged since listing, same sha256, not open by any process
#   changed I     size or mtime differ from the listing (still being written): kept
#   mismatch I    same size and mtime but another sha256: kept
#   open I        some process has it open (Linux /proc, where visible): kept
#   gone I        no longer a regular file: nothing to do
#   failed I      rm failed: kept
#   end

LC_ALL=C
export LC_ALL
NL='
'

if ! cd "$ROOT" 2>/dev/null; then
    printf 'error noroot\0'
    exit 0
fi
if ! stat -c '%s %Y' . >/dev/null 2>&1; then
    printf 'error nostat\0'
    exit 0
fi

# The sha256 tool, named in the tools record: sha256sum, else busybox's, else openssl, else
# shasum (perl). A tool is taken only if it hashes here (busybox may lack the applet).
SUMTOOL=
HAVE_OPENSSL=
if command -v openssl >/dev/null 2>&1 && openssl dgst -sha256 -r </dev/null >/dev/null 2>&1; then
    HAVE_OPENSSL=1
fi
if command -v sha256sum >/dev/null 2>&1; then
    SUMTOOL=sha256sum
elif command -v busybox >/dev/null 2>&1 && busybox sha256sum </dev/null >/dev/null 2>&1; then
    SUMTOOL=busybox
elif [ -n "$HAVE_OPENSSL" ]; then
    SUMTOOL=openssl
elif command -v shasum >/dev/null 2>&1; then
    SUMTOOL=shasum
fi
BIGSUM=$SUMTOOL
[ -n "$HAVE_OPENSSL" ] && BIGSUM=openssl
export SUMTOOL BIGSUM

# sum256 FILE BYTES: sha256 (hex) of the first BYTES bytes of FILE ("" when it cannot be read);
# sumall FILE BYTES: the same for a file of BYTES bytes that is not growing (no extra pipe)
SUM256='
sumtool() {
    t=$SUMTOOL
    [ "$1" -ge 4194304 ] && t=$BIGSUM
    case $t in
        openssl) openssl dgst -sha256 -r 2>/dev/null ;;
        shasum) shasum -a 256 2>/dev/null ;;
        busybox) busybox sha256sum 2>/dev/null ;;
        *) sha256sum 2>/dev/null ;;
    esac
}
sum256() {
    s=$(head -c "$2" <"$1" 2>/dev/null | sumtool "$2")
    printf "%s" "${s%% *}"
}
sumall() {
    s=$(sumtool "$2" <"$1" 2>/dev/null)
    printf "%s" "${s%% *}"
}'
eval "$SUM256"

if [ "$MODE" = prune ]; then
    # dev:inode of every file some process has open (only processes we may see)
    OPEN=
    if [ -d /proc/self/fd ]; then
        OPEN=" $(find /proc/[0-9]*/fd -type l -exec stat -L -c '%d:%i' {} + 2>/dev/null | tr '\n' ' ') "
    fi
    i=0
    while [ $# -ge 4 ]; do
        i=$((i + 1))
        size=$1 mtime=$2 want=$3 f=$4
        shift 4
        case $f in /*) p=$f ;; *) p=./$f ;; esac
        if [ ! -f "$p" ] || [ -L "$p" ]; then echo "gone $i"; continue; fi
        st=$(stat -c '%s %Y %d:%i' -- "$p" 2>/dev/null) || { echo "gone $i"; continue; }
        case $st in
            "$size $mtime "*) ;;
            *) echo "changed $i"; continue ;;
        esac
        case $OPEN in
            *" ${st##* } "*) echo "open $i"; continue ;;
        esac
        now=$(sumall "$p" "$size")
        st2=$(stat -c '%s %Y %d:%i' -- "$p" 2>/dev/null)
        if [ "$st2" != "$st" ]; then echo "changed $i"; continue; fi
        if [ "$now" != "$want" ]; then echo "mismatch $i"; continue; fi
        if rm -f -- "$p" 2>/dev/null && [ ! -e "$p" ]; then echo "pruned $i"; else echo "failed $i"; fi
    done
    echo end
    exit 0
fi

if [ -z "$SUMTOOL" ]; then
    printf 'error nosum\0'
    exit 0
fi
NICE=-
command -v nice >/dev/null 2>&1 && NICE=nice
CODECS=
for c in zstd gzip; do
    command -v "$c" >/dev/null 2>&1 && CODECS="$CODECS $c"
done
printf 'pltui-logs 1\0'
printf 'tools %s %s %s%s\0' "$SUMTOOL" "$BIGSUM" "$NICE" "$CODECS"

# EMIT: one record per regular file named in "$@" (run here by eval, and by find -exec sh -c);
# with HASH=0 only its stat (a re-run: pltui hashes only the versions it has not collected)
EMIT=$SUM256'
for f do
    case $f in /*) p=$f ;; *) p=./$f ;; esac
    if [ ! -f "$p" ] || [ -L "$p" ]; then continue; fi
    if [ ! -r "$p" ]; then printf "skip unreadable %s\0" "$f"; continue; fi
    st=$(stat -c "%s %Y %Z %i" -- "$p" 2>/dev/null) || { printf "skip vanished %s\0" "$f"; continue; }
    size=${st%% *}
    if [ "$HASH" = 0 ]; then printf "file %s - 0 %s\0" "$st" "$f"; continue; fi
    printf "stat %s %s\0" "$size" "$f"
    sum=$(sumall "$p" "$size")
    st2=$(stat -c "%s %Y %Z %i" -- "$p" 2>/dev/null)
    moved=0
    if [ "$st2" != "$st" ]; then
        moved=1
        sum=$(sum256 "$p" "$size")
    fi
    printf "file %s %s %s %s\0" "$st" "$sum" "$moved" "$f"
done'
export EMIT
HASH=1
[ "$MODE" = stat ] && HASH=0
export HASH

if [ "$MODE" = hash ]; then  # the files named in the arguments
    eval "$EMIT"
    printf 'end\0'
    exit 0
fi

set -f      # the patterns are globbed once, below, and never their results
IFS=$NL
for pattern in $LOGS; do
    set +f
    for f in $pattern; do
        unset IFS
        case $f in /*) p=$f ;; *) p=./$f ;; esac
        if [ -d "$p" ] && [ ! -L "$p" ]; then
            find "$p" -type f -exec sh -c "$EMIT" sh {} +
        elif [ -f "$p" ]; then
            set -- "$f"
            eval "$EMIT"
        fi
        IFS=$NL
    done
    set -f
done
set +f
unset IFS
printf 'end\0'
