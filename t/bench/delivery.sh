#!/usr/bin/env bash
#
# What one delivery costs, load-independently: one nginx process
# (master_process off) under valgrind's callgrind holds BENCH_STREAMS
# Server-Sent Events streams (t/bench/fanout_client.c); instrumentation
# is switched on only once they are open, BENCH_EVENTS events are
# published one at a time, and the instructions counted from then on are
# divided by streams x events.  A second run under strace -c counts the
# system calls per delivery the same way.  Publishing's own share is in
# the figure (one POST per event, next to thousands of deliveries).
#
#   t/bench/delivery.sh             (make bench-delivery)
#
# Environment:
#   T_MODULE       our module (default build/ngx_http_events_module.so)
#   NGINX_BIN      nginx binary (default /usr/sbin/nginx)
#   BENCH_STREAMS  streams (default 2000)
#   BENCH_EVENTS   events (default 20), published 2 a second
#   BENCH_BURST=1  publish for BENCH_EVENTS / 10 seconds as fast as 4
#                  connections are answered instead: many events per wake
#   BENCH_FORMAT   query string of the streams (default none: plain SSE;
#                  e.g. "format=cloudevents", or "ws" for WebSockets)
#   BENCH_KEEP=1   keep the temp directory
#
# Prints "Ir per delivery: N" and "syscalls per delivery: N"; exit 0 when
# every stream got every event, in order, once.  Only 127.0.0.1.

# PORT_* and MASTER_* are assigned through printf -v
# shellcheck disable=SC2154

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
N=${BENCH_STREAMS:-2000}
K=${BENCH_EVENTS:-20}
FORMAT=${BENCH_FORMAT:-}

for v in N K; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a whole number > 0"
done
[[ -x $NGINX ]] || die "no nginx at $NGINX"
[[ -f $MODULE ]] || die "no module at $MODULE (run make first)"
command -v valgrind >/dev/null || die "valgrind is not installed"
command -v callgrind_control >/dev/null || die "callgrind_control is missing"
command -v strace >/dev/null || die "strace is not installed"
ulimit -n $((N * 2 + 300 > 1024 ? N * 2 + 300 : 1024)) 2>/dev/null \
    || die "cannot raise the fd limit to $((N + 200))"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/events-delivery.XXXXXX")
chmod 755 "$WORK"
CLIENT=$WORK/fanout_client
gcc -O2 -Wall -Wextra -o "$CLIENT" "$HERE/fanout_client.c" \
    || die "the client did not compile"

NGX_PID=""
SUB_PID=""

stop_all() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $SUB_PID ]]; then kill -TERM "$SUB_PID" 2>/dev/null || true; fi
    if [[ -n $NGX_PID ]]; then
        kill -TERM "$NGX_PID" 2>/dev/null || true
        wait "$NGX_PID" 2>/dev/null || true
    fi
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then echo "kept: $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

write_conf() {
    local dir=$1 port=$2 t
    mkdir -p "$dir"
    {
        cat <<EOF
load_module $MODULE;
master_process off;
daemon off;
worker_rlimit_nofile $((N * 2 + 200));
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $((N * 2 + 100)); }
http {
    access_log off;
EOF
        for t in client_body proxy fastcgi uwsgi scgi; do
            echo "    ${t}_temp_path $dir/${t}_temp;"
        done
        cat <<EOF
    events_zone bench 16m;
    server {
        listen 127.0.0.1:$port backlog=4096;
        location /events { events_api bench; }
        location = /events/stream { events_stream bench; }
    }
}
EOF
    } > "$dir/nginx.conf"
}

# run TOOL...: nginx under TOOL, N streams, K events; sets OUT_RESULT
run() {
    local dir=$WORK/$1 i url=/events/stream ws="" seqflag attempt up
    shift
    USED_PORTS=" "
    # a port a client's connection took meanwhile: another one
    for ((attempt = 1; attempt <= 5; attempt++)); do
        free_port
        PORT=$FREE_PORT
        write_conf "$dir" "$PORT"
        "$@" "$NGINX" -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" \
            > "$dir/tool.out" 2>&1 &
        NGX_PID=$!
        up=0
        for ((i = 0; i < 600; i++)); do
            (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && { up=1; break; }
            kill -0 "$NGX_PID" 2>/dev/null || break
            sleep 0.1
        done
        ((up)) && break
        wait "$NGX_PID" 2>/dev/null || true
        NGX_PID=""
        grep -q 'Address already in use' "$dir/tool.out" \
            || die "nginx did not start: $(tail -5 "$dir/tool.out")"
    done
    ((up)) || die "no free port for nginx"
    [[ $FORMAT == ws ]] && ws=-w
    [[ -n $FORMAT && $FORMAT != ws ]] && url="$url?$FORMAT"
    mkfifo "$dir/ctl"
    # CloudEvents carry seq as a string, which the client cannot check
    seqflag=-s
    [[ $FORMAT == *cloudevents* ]] && seqflag=""
    "$CLIENT" sub -p "$PORT" -u "$url" -n "$N" $seqflag $ws -P 16 -T 300 \
        < "$dir/ctl" > "$dir/sub.out" 2> "$dir/sub.err" &
    SUB_PID=$!
    exec 9> "$dir/ctl"
    for ((i = 0; i < 3000; i++)); do
        grep -q '^READY ' "$dir/sub.out" && break
        kill -0 "$SUB_PID" || die "the client died: $(cat "$dir/sub.err")"
        sleep 0.1
    done
    grep -q "open=$N " "$dir/sub.out" || die "streams: $(cat "$dir/sub.out")"
    echo "PHASE 1" >&9
    sleep 1
    ON_HOOK
    if [[ ${BENCH_BURST:-0} == 1 ]]; then
        "$CLIENT" pub -p "$PORT" -u /events -r 0 -d $(((K + 9) / 10)) -c 4 \
            -g 1 > "$dir/pub.out" 2>&1 || true
    else
        "$CLIENT" pub -p "$PORT" -u /events -r 2 -d $(((K + 1) / 2)) -c 1 \
            -g 1 > "$dir/pub.out" 2>&1 || true
    fi
    [[ $(grep -o ' ok=[0-9]*' "$dir/pub.out") =~ ok=([0-9]+) ]] \
        || die "publisher: $(cat "$dir/pub.out")"
    echo "END ${BASH_REMATCH[1]} 5000 120000" >&9
    for ((i = 0; i < 1300; i++)); do
        grep -q '^RESULT ' "$dir/sub.out" && break
        sleep 0.1
    done
    OFF_HOOK
    OUT_RESULT=$(grep '^RESULT ' "$dir/sub.out" || echo "no RESULT")
    OUT_PUB=$(grep '^PUB ' "$dir/pub.out" || cat "$dir/pub.out")
    echo "QUIT" >&9
    exec 9>&-
    wait "$SUB_PID" 2>/dev/null || true
    SUB_PID=""
    kill -QUIT "$NGX_PID" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        kill -0 "$NGX_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -TERM "$NGX_PID" 2>/dev/null || true
    wait "$NGX_PID" 2>/dev/null || true
    NGX_PID=""
}

check() {
    local what=$1 published
    [[ $OUT_PUB =~ \ ok=([0-9]+) ]] || die "$what: publisher: $OUT_PUB"
    published=${BASH_REMATCH[1]}
    if ! [[ $OUT_RESULT =~ \ missing=0\  && $OUT_RESULT =~ seq_gaps=0\  \
            && $OUT_RESULT =~ seq_dups=0 ]]; then
        echo "FAIL ($what): $OUT_RESULT"
        FAILED=1
    fi
    DELIVERIES=$((published * N))
}

FAILED=0
echo "streams: $N; events: $K$( ((${BENCH_BURST:-0})) && echo ' (bursts)'); format: ${FORMAT:-plain SSE}"

# 1. instructions: callgrind, instrumentation on only around the events
ON_HOOK() { callgrind_control -i on "$NGX_PID" > /dev/null 2>&1; }
OFF_HOOK() {
    callgrind_control -d "$NGX_PID" > /dev/null 2>&1
    callgrind_control -i off "$NGX_PID" > /dev/null 2>&1
}
mkdir -p "$WORK/callgrind"
run callgrind valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$WORK/callgrind/cg.out.%p"
check callgrind
IR=$(cat "$WORK"/callgrind/cg.out.*.1 2>/dev/null \
     | awk '/^summary:/ { print $2 }' | head -1)
[[ -n $IR ]] || die "no callgrind dump"
echo "Ir per delivery: $((IR / DELIVERIES)) ($IR Ir over $DELIVERIES deliveries)"
callgrind_annotate "$WORK"/callgrind/cg.out.*.1 2>/dev/null \
    | awk '/ file:function/ { on = 1; next } on && NF { print } ' \
    | head -"${BENCH_TOP:-12}" || true

# 2. system calls: strace -c attached around the events only
ON_HOOK() {
    strace -c -f -o "$WORK/strace.out" -p "$NGX_PID" 2> /dev/null &
    STRACE_PID=$!
    sleep 1
}
OFF_HOOK() {
    kill -INT "$STRACE_PID" 2>/dev/null || true
    wait "$STRACE_PID" 2>/dev/null || true
}
run strace env
check strace
CALLS=$(awk '/ total$/ { print $4 }' "$WORK/strace.out")
echo "syscalls per delivery: $(awk -v c="$CALLS" -v d="$DELIVERIES" 'BEGIN { printf "%.2f", c / d }') ($CALLS over $DELIVERIES deliveries)"
awk 'NR > 2 && !/^-/ && !/ total$/ { printf "  %s %s\n", $(NF), $4 }' \
    "$WORK/strace.out" | sort -k2 -nr | head -6 || true

if ((FAILED)); then
    echo "RESULT: FAILED"
    exit 1
fi
echo "RESULT: passed"
