#!/usr/bin/env bash
#
# Idle streams at scale: BENCH_STREAMS Server-Sent Events streams held
# open on our events_stream, the worker memory they cost beside nginx's
# own floor, and how long one event takes to reach every one of them.
#
#   t/bench/idle.sh                 (make bench-idle)
#
# A process may hold at most `ulimit -Hn` descriptors (20 000 on some
# boxes, and only CAP_SYS_RESOURCE raises it), so the streams are spread
# over several client processes (t/bench/fanout_client.c, at most
# BENCH_PER_CLIENT streams each, over 6 loopback source addresses) and
# over as many nginx workers as the limit needs ("listen ... reuseport"
# spreads the connections evenly); nothing else differs from fanout.sh.
#
# Then, with the same nginx, config and clients:
#   1. the floor: nginx holding the same number of requests whose
#      headers never end (no module runs), worker RssAnon before/after;
#   2. ours: the streams open, RssAnon before/after one event, and the
#      publish -> receive latency of that event on every stream (the
#      largest is when the last stream got it), with missing counted.
#
# Environment:
#   T_MODULE          our module (default build/ngx_http_events_module.so)
#   NGINX_BIN         nginx binary (default /usr/sbin/nginx)
#   BENCH_STREAMS     streams (default 100000)
#   BENCH_PER_CLIENT  streams per client process (default: the fd limit
#                     less 500)
#   BENCH_WORKERS     nginx workers (default: enough for the fd limit,
#                     at least 2)
#   BENCH_KEEP=1      keep the temp directory
#
# Exit status: 0 when every stream opened and got the event, 1 when not,
# 2 when the set-up failed.  Only 127.0.0.x is used.

# PORT_*, DIR_* and MASTER_* are assigned through printf -v
# shellcheck disable=SC2154

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
N=${BENCH_STREAMS:-100000}
FD_HARD=$(ulimit -Hn)
[[ $FD_HARD == unlimited ]] && FD_HARD=1048576
ulimit -n "$FD_HARD"
PER_CLIENT=${BENCH_PER_CLIENT:-$((FD_HARD - 500))}
PER_WORKER=$((FD_HARD - 500))
WORKERS=${BENCH_WORKERS:-$(( (N * 105 / 100 + PER_WORKER - 1) / PER_WORKER ))}
((WORKERS < 2)) && WORKERS=2
CLIENTS=$(( (N + PER_CLIENT - 1) / PER_CLIENT ))

for v in N PER_CLIENT WORKERS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a whole number > 0, not '${!v}'"
done
[[ -x $NGINX ]] || die "no nginx at $NGINX"
[[ -f $MODULE ]] || die "no module at $MODULE (run make first, or set T_MODULE)"
command -v gcc >/dev/null || die "gcc is not installed"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/events-idle.XXXXXX")
chmod 755 "$WORK"
MODULE_SRC=$MODULE
MODULE=$WORK/ngx_http_events_module.so
cp "$MODULE_SRC" "$MODULE"
chmod 644 "$MODULE"

CLIENT=$WORK/fanout_client
gcc -O2 -Wall -Wextra -o "$CLIENT" "$HERE/fanout_client.c" \
    || die "the client did not compile"

STARTED=()
SUBS=()
declare -A CMD_START

stop_all() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in "${SUBS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${SUBS[@]}"; do wait "$p" 2>/dev/null || true; done
    quit_servers idle.sh 100 "${STARTED[@]}"
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then echo "kept: $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

USED_PORTS=" "
# write_conf DIR PORT: ours and the floor run the same config
write_conf() {
    local dir=$1 port=$2 t
    mkdir -p "$dir"
    chmod 755 "$dir"
    {
        cat <<EOF
load_module $MODULE;
worker_processes $WORKERS;
worker_rlimit_nofile $FD_HARD;
pid $dir/nginx.pid;
error_log $dir/error.log warn;

events {
    worker_connections $PER_WORKER;
}

http {
    access_log off;
    # the floor's requests never finish their headers: keep them
    client_header_timeout 1h;
EOF
        for t in client_body proxy fastcgi uwsgi scgi; do
            echo "    ${t}_temp_path $dir/${t}_temp;"
        done
        cat <<EOF

    events_zone bench 64m;
    events_stream_max_subscribers $((N * 2));

    server {
        listen 127.0.0.1:$port reuseport backlog=4096;

        location /events {
            events_api bench;
        }

        location = /events/stream {
            events_stream bench;
        }
    }
}
EOF
    } > "$dir/nginx.conf"
}

workers() {
    local pid=MASTER_$1
    ps -o pid= --ppid "${!pid}" | tr -d ' ' | tr '\n' ' '
}

rss_anon() {
    local p sum=0 v
    for p in $(workers "$1"); do
        v=$(awk '/^RssAnon:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

# clients KIND ARGS...: CLIENTS processes holding N streams; waits for
# every READY line; sums "open" into OPENED
clients() {
    local kind=$1 i n left port=PORT_$1 line
    shift
    port=${!port}
    SUBS=()
    left=$N
    for ((i = 0; i < CLIENTS; i++)); do
        n=$((left < PER_CLIENT ? left : PER_CLIENT))
        left=$((left - n))
        mkfifo "$WORK/ctl-$kind-$i"
        "$CLIENT" sub -p "$port" -u /events/stream -n "$n" "$@" -A 6 \
            -P 256 -T 600 < "$WORK/ctl-$kind-$i" \
            > "$WORK/sub-$kind-$i.out" 2> "$WORK/sub-$kind-$i.err" &
        SUBS+=($!)
        eval "exec $((10 + i))> \"$WORK/ctl-$kind-$i\""
    done
    CMD_SUB="$CLIENT sub -p $port -u /events/stream -n $PER_CLIENT $* -A 6 -P 256 -T 600 (x$CLIENTS)"
    OPENED=0
    for ((i = 0; i < CLIENTS; i++)); do
        line=""
        for ((t = 0; t < 6200; t++)); do
            line=$(grep '^READY ' "$WORK/sub-$kind-$i.out" 2>/dev/null || true)
            [[ -n $line ]] && break
            kill -0 "${SUBS[$i]}" 2>/dev/null || break
            sleep 0.1
        done
        [[ $line =~ open=([0-9]+) ]] && OPENED=$((OPENED + BASH_REMATCH[1]))
    done
}

# send LINE to every client
tell() {
    local i
    for ((i = 0; i < CLIENTS; i++)); do
        echo "$1" >&$((10 + i))
    done
}

unclients() {
    local i p
    tell QUIT
    for ((i = 0; i < CLIENTS; i++)); do
        eval "exec $((10 + i))>&-"
    done
    for p in "${SUBS[@]}"; do wait "$p" 2>/dev/null || true; done
    SUBS=()
    sleep 2
}

FAILED=0
echo "== machine"
echo "nproc: $(nproc); memory: $(awk '/^MemTotal/ { printf "%.1f GB", $2 / 1048576 }' /proc/meminfo); ulimit -Hn: $FD_HARD"
echo "nginx: $("$NGINX" -v 2>&1); module: $MODULE_SRC"
echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "streams: $N over $CLIENTS client processes and $WORKERS workers"
echo

# 1. the floor
start_server idle.sh floor "$WORK/floor" floor
sleep 0.5
b=$(rss_anon floor)
clients floor -x
sleep 2
a=$(rss_anon floor)
FLOOR_B=$(( OPENED ? (a - b) * 1024 / OPENED : 0 ))
echo "== floor: ${CMD_START[floor]}"
echo "$OPENED requests whose headers never end ($CMD_SUB): RssAnon $b kB -> $a kB, $FLOOR_B B per request"
unclients
quit_servers idle.sh 100 "$WORK/floor"
echo

# 2. ours
start_server idle.sh ours "$WORK/ours" ours
curl -sS -o /dev/null --max-time 10 -X POST -H 'Content-Type: application/json' \
    --data-binary '{"type":"bench.warmup"}' "http://127.0.0.1:$PORT_ours/events"
sleep 0.5
b=$(rss_anon ours)
t0=$(date +%s.%N)
clients ours -s
t1=$(date +%s.%N)
sleep 2
c=$(rss_anon ours)
echo "== ours: ${CMD_START[ours]}"
echo "streams open: $OPENED of $N in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s ($CMD_SUB)"
((OPENED == N)) || { echo "FAIL: only $OPENED of $N streams opened"; FAILED=1; }

tell "PHASE 1"
sleep 1
"$CLIENT" pub -p "$PORT_ours" -u /events -r 1 -d 1 -c 1 -g 1 > "$WORK/pub.out" 2>&1 || true
echo "publisher: $(grep '^PUB ' "$WORK/pub.out" || cat "$WORK/pub.out")"
tell "END 1 3000 30000"
missing=0 maxlat=0 p50s=""
for ((i = 0; i < CLIENTS; i++)); do
    line=""
    for ((t = 0; t < 400; t++)); do
        line=$(grep '^RESULT ' "$WORK/sub-ours-$i.out" 2>/dev/null || true)
        [[ -n $line ]] && break
        sleep 0.1
    done
    echo "client $i: ${line:-no RESULT}" >> "$WORK/results.log"
    [[ $line =~ \ missing=([0-9]+) ]] && missing=$((missing + BASH_REMATCH[1]))
    [[ $line =~ lat_max_us=([0-9]+) ]] && ((BASH_REMATCH[1] > maxlat)) && maxlat=${BASH_REMATCH[1]}
    [[ $line =~ lat_p50_us=([0-9]+) ]] && p50s+="${BASH_REMATCH[1]} "
    [[ -n $line ]] || { missing=$((missing + PER_CLIENT)); }
done
sleep 1
a=$(rss_anon ours)
OURS_B=$(( OPENED ? (a - b) * 1024 / OPENED : 0 ))
echo "one event to $OPENED idle streams: missing $missing; publish -> receive p50 by client (ms): $(for v in $p50s; do awk -v u="$v" 'BEGIN { printf "%.0f ", u / 1000 }'; done); the last stream got it after $(awk -v u="$maxlat" 'BEGIN { printf "%.0f", u / 1000 }') ms"
((missing == 0)) || { echo "FAIL: $missing streams did not get the event"; FAILED=1; }
echo "RssAnon: $b kB with none, $c kB with the streams, $a kB after the event"
echo
unclients

echo "== idle streams: $N over $WORKERS workers"
echo "per stream: ours $OURS_B B after one event, nginx floor $FLOOR_B B per request in flight, ratio $(awk -v o="$OURS_B" -v f="$FLOOR_B" 'BEGIN { if (f > 0) printf "%.3f", o / f; else print "-" }')"
echo "one event reached all of them within $(awk -v u="$maxlat" 'BEGIN { printf "%.2f", u / 1e6 }') s"
echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)"
grep -E '\[(alert|crit|emerg)\]' "$WORK"/*/error.log && FAILED=1

if ((FAILED)); then
    echo "RESULT: FAILED"
    exit 1
fi
echo "RESULT: passed"
