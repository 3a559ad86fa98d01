#!/usr/bin/env bash
#
# Cluster benchmark (make bench-cluster): one Redis (Debian's
# redis-server, started here on a free port, AOF on with fsync every
# second), side by side:
#
#   single  one node of ours without events_cluster (the memory store)
#   ours    three nodes of ours with events_cluster on the Redis
#   nchan   three Nchan nodes on the same Redis (nchan_redis_url,
#           nchan_redis_storage_mode distributed)
#
# 1. ingest: POSTs of a ~300-byte event with wrk (t/bench/post.lua):
#    the single node with BENCH_CONNECTIONS connections; the three nodes
#    at once, the connections split over them, requests summed; Nchan
#    the same way.
# 2. cross-node latency: BENCH_STREAMS streams (default 1000) split over
#    nodes 2 and 3, events published on node 1 at BENCH_RATE/s for
#    BENCH_SECONDS; publish-to-receive p50/p99 as the subscriber client
#    (t/bench/fanout_client.c) measures it, and whether every stream got
#    every event once.
#
# Environment: T_MODULE, NGINX_BIN, NCHAN_MODULE, BENCH_SECONDS (10),
# BENCH_CONNECTIONS (16), BENCH_STREAMS (1000), BENCH_RATE (200),
# BENCH_SWEEP (none: "64 256" runs the ingest pair again at those
# connection counts, one table row each), BENCH_KEEP=1 (keep the temp
# directory).  Only 127.0.0.1.

# PORT_*, DIR_*, MASTER_* are assigned through printf -v
# shellcheck disable=SC2154

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
STREAMS=${BENCH_STREAMS:-1000}
RATE=${BENCH_RATE:-200}
SWEEP=${BENCH_SWEEP:-}
NEED_NCHAN=1

# shellcheck source=cluster-lib.sh
. "$HERE/cluster-lib.sh"

CLIENT=$WORK/fanout_client
gcc -O2 -g -Wall -Wextra -o "$CLIENT" "$HERE/fanout_client.c" \
    || die "the client did not compile"

start single
start ours1 ours
start ours2 ours
start ours3 ours
start nchan1 nchan
start nchan2 nchan
start nchan3 nchan

cluster_wait_nodes

echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "redis: $(redis-server --version | cut -d' ' -f3), appendonly yes, appendfsync everysec"
echo "nchan: $(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null)"
echo

echo "== ingest: ${DURATION}s of POSTs, $CONNS connections in all"

wrk_run "http://127.0.0.1:$PORT_single/events" "$CONNS" "$WORK/wrk-single.log"
wrk_wait
read -r SINGLE SINGLE_BAD <<< "$(sum_rps "$WORK/wrk-single.log")"

# ingest_pair N: ours, then Nchan, with N connections in all (split over
# the three nodes); sets OURS, NCHANR, their non-2xx, the POSTs, scripts
# and Redis commands of ours, and Redis's CPU ticks during each
ingest_pair() {
    local per=$(( ($1 + 2) / 3 )) n port s0 u0 c0 t0
    s0=$(script_calls)
    u0=$(script_usec)
    c0=$(redis_calls)
    t0=$(redis_ticks)
    for n in 1 2 3; do
        port=PORT_ours$n
        wrk_run "http://127.0.0.1:${!port}/events" "$per" \
            "$WORK/wrk-ours$n.log"
    done
    wrk_wait
    read -r OURS OURS_BAD <<< "$(sum_rps "$WORK"/wrk-ours[123].log)"
    SCRIPTS=$(( $(script_calls) - s0 ))
    USEC=$(( $(script_usec) - u0 ))
    CALLS=$(( $(redis_calls) - c0 ))
    POSTS=$(sum_requests "$WORK"/wrk-ours[123].log)
    TICKS_OURS=$(( $(redis_ticks) - t0 ))

    t0=$(redis_ticks)
    for n in 1 2 3; do
        port=PORT_nchan$n
        wrk_run "http://127.0.0.1:${!port}/pub" "$per" \
            "$WORK/wrk-nchan$n.log"
    done
    wrk_wait
    read -r NCHANR NCHAN_BAD <<< "$(sum_rps "$WORK"/wrk-nchan[123].log)"
    TICKS_NCHAN=$(( $(redis_ticks) - t0 ))
    NCHAN_POSTS=$(sum_requests "$WORK"/wrk-nchan[123].log)
}

# Redis CPU per event of ours and of Nchan, in us, and Nchan's / ours
redis_per_event() {
    awk -v a="$TICKS_OURS" -v p="$POSTS" -v b="$TICKS_NCHAN" \
        -v q="$NCHAN_POSTS" -v hz="$(getconf CLK_TCK)" 'BEGIN {
        if (p > 0 && q > 0 && a > 0 && b > 0) {
            x = a * 1e6 / hz / p; y = b * 1e6 / hz / q
            printf "%.1f %.1f %.2f\n", x, y, y / x
        } else print "- - -" }'
}

ingest_pair "$CONNS"

printf '%-44s %10s %8s\n' "server" "events/s" "non-2xx"
printf '%-44s %10s %8s\n' "one node, no cluster (memory)" "$SINGLE" "$SINGLE_BAD"
printf '%-44s %10s %8s\n' "three nodes, events_cluster on Redis" "$OURS" "$OURS_BAD"
printf '%-44s %10s %8s\n' "three Nchan nodes, Redis distributed" "$NCHANR" "$NCHAN_BAD"
awk -v a="$OURS" -v b="$NCHANR" 'BEGIN { if (b > 0)
    printf "cluster / Nchan-Redis: %.2fx\n", a / b }'
awk -v s="$SCRIPTS" -v p="$POSTS" -v u="$USEC" -v c="$CALLS" 'BEGIN {
    if (p > 0)
        printf "cluster: %d POSTs in %d append scripts (%.2f POSTs a " \
            "script), %.1f Redis commands and %.1f us of scripts a POST\n",
            p, s, p / (s > 0 ? s : 1), c / p, u / p }'
# Redis is one thread: its CPU per event is the ingest ceiling of a
# cluster whose Redis has a core of its own (not so on this box, where
# the nodes, wrk and Redis share the cores)
read -r RX RY RC <<< "$(redis_per_event)"
echo "Redis CPU per event: cluster $RX us, Nchan-Redis $RY us;" \
    "Redis-bound ceiling cluster / Nchan-Redis: ${RC}x"

# BENCH_SWEEP="64 256": the same pair again with these connections
if [[ -n $SWEEP ]]; then
    echo
    printf '%-11s %9s %9s %6s %8s %17s %8s\n' "connections" "ours" \
        "Nchan" "ratio" "POSTs/sc" "Redis us ours/N" "ceiling"
    for c in $SWEEP; do
        ingest_pair "$c"
        read -r RX RY RC <<< "$(redis_per_event)"
        awk -v c="$c" -v a="$OURS" -v b="$NCHANR" -v s="$SCRIPTS" \
            -v p="$POSTS" -v x="$RX" -v y="$RY" -v r="$RC" 'BEGIN {
            printf "%-11s %9s %9s %5.2fx %8.2f %17s %7sx\n", c, a, b,
                (b > 0 ? a / b : 0), p / (s > 0 ? s : 1), x " / " y, r }'
    done
fi
echo

# ---------------------------------------------------------------------
# cross-node latency

# sub KIND NODE N -> runs a subscriber client, its output in SUB_OUT_<node>
declare -A SUB_PID SUB_OUT SUB_FD
sub_start() {
    local kind=$1 node=$2 n=$3 port path args=() fifo
    port=PORT_$kind$node; port=${!port}
    if [[ $kind == ours ]]; then path=/events/stream; args=(-s); else path=/sub; fi
    fifo=$WORK/ctl-$kind$node
    rm -f "$fifo"
    mkfifo "$fifo"
    SUB_OUT[$kind$node]=$WORK/sub-$kind$node.out
    "$CLIENT" sub -p "$port" -u "$path" -n "$n" "${args[@]}" -P 256 -T 60 \
        < "$fifo" > "${SUB_OUT[$kind$node]}" 2>&1 &
    SUB_PID[$kind$node]=$!
    BG_PIDS+=($!)
    if [[ $node == 2 ]]; then exec 7> "$fifo"; else exec 8> "$fifo"; fi
    for ((i = 0; i < 700; i++)); do
        grep -q '^READY ' "${SUB_OUT[$kind$node]}" && return 0
        sleep 0.1
    done
    die "the subscriber client on $kind$node did not get ready"
}

latency() {
    local kind=$1 half=$((STREAMS / 2)) path extra=() port line1 line2 pub
    sub_start "$kind" 2 "$half"
    sub_start "$kind" 3 "$((STREAMS - half))"
    echo "PHASE 1" >&7
    echo "PHASE 1" >&8
    port=PORT_${kind}1; port=${!port}
    if [[ $kind == ours ]]; then path=/events; else path=/pub; extra=(-j); fi
    "$CLIENT" pub -p "$port" -u "$path" -r "$RATE" -d "$DURATION" -c 4 \
        -g 1 -b 300 -G 10 "${extra[@]}" > "$WORK/pub-$kind.out" 2>&1 \
        || true
    pub=$(grep '^PUB ' "$WORK/pub-$kind.out" || true)
    local ok
    ok=$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' <<< "$pub")
    echo "END ${ok:-0} 2000 30000" >&7
    echo "END ${ok:-0} 2000 30000" >&8
    for ((i = 0; i < 400; i++)); do
        line1=$(grep '^RESULT ' "${SUB_OUT[${kind}2]}" || true)
        line2=$(grep '^RESULT ' "${SUB_OUT[${kind}3]}" || true)
        [[ -n $line1 && -n $line2 ]] && break
        sleep 0.1
    done
    echo QUIT >&7
    echo QUIT >&8
    exec 7>&- 8>&-
    echo "$kind: $pub" >> "$WORK/details.log"
    echo "$kind node 2: $line1" >> "$WORK/details.log"
    echo "$kind node 3: $line2" >> "$WORK/details.log"
    local kv v
    # the worse node's figures, for the ratio below
    for v in p50 p99; do
        printf -v "LAT_${v}_$kind" '%s' "$(for kv in line1 line2; do
            sed -n "s/.* lat_${v}_us=\([0-9-]*\).*/\1/p" <<< "${!kv}"
        done | sort -n | tail -1)"
    done
    for kv in line1 line2; do
        printf '%-8s %-7s %9s %9s %9s %7s %7s %7s\n' "$kind" \
            "node $([[ $kv == line1 ]] && echo 2 || echo 3)" \
            "$(sed -n 's/.* streams=\([0-9]*\).*/\1/p' <<< "${!kv}")" \
            "$(sed -n 's/.* lat_p50_us=\([0-9-]*\).*/\1/p' <<< "${!kv}")" \
            "$(sed -n 's/.* lat_p99_us=\([0-9-]*\).*/\1/p' <<< "${!kv}")" \
            "$(sed -n 's/.* missing=\([0-9]*\).*/\1/p' <<< "${!kv}")" \
            "$(sed -n 's/.* dup=\([0-9]*\).*/\1/p' <<< "${!kv}")" \
            "${ok:-0}"
    done
}

echo "== cross-node: $STREAMS streams on nodes 2 and 3, $RATE events/s published on node 1 for ${DURATION}s"
printf '%-8s %-7s %9s %9s %9s %7s %7s %7s\n' "server" "streams" "count" \
    "p50 us" "p99 us" "missing" "dup" "posted"
latency ours
latency nchan
# the goal: ours no slower than Nchan's (the worse node of each)
awk -v a="${LAT_p50_ours:-}" -v b="${LAT_p50_nchan:-}" \
    -v c="${LAT_p99_ours:-}" -v d="${LAT_p99_nchan:-}" 'BEGIN {
    if (a > 0 && b > 0 && c > 0 && d > 0)
        printf "cross-node ours / Nchan-Redis: p50 %.2fx, p99 %.2fx\n",
               a / b, c / d }'
echo
echo "details: $WORK/details.log$([[ ${BENCH_KEEP:-0} == 1 ]] || echo " (BENCH_KEEP=1 keeps it)")"
