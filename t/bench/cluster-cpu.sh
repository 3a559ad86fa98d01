#!/usr/bin/env bash
#
# Where a cluster's CPU per event goes: one Redis (AOF, fsync every
# second) and three nodes of ours with events_cluster, as in cluster.sh;
# wrk POSTs to the nodes in NODES (default "1 2 3"; "1 2" leaves node 3
# only tailing), then prints per process (each node's workers, Redis) the
# CPU time per accepted event from /proc/PID/stat (utime+stime), and
# Redis's INFO commandstats per event.  Optional: PERF=FILE records the
# workers of node PERFNODE (default 2) with perf; STRACE=PREFIX counts
# their syscalls (strace -c, slows them down); PERFSTAT=PREFIX counts the
# context switches of all workers and of Redis (perf stat); KIND=nchan
# runs the same for three Nchan nodes in Redis "distributed" mode, and
# KIND=single for one node of ours without events_cluster (every
# connection on it: what a POST costs a worker without Redis);
# BENCH_CLUSTER_ARGS adds parameters to events_cluster (tail_pace=0).
#
# Environment: T_MODULE, NGINX_BIN, BENCH_SECONDS (10), BENCH_CONNECTIONS
# (16).  Only 127.0.0.1.

# shellcheck disable=SC2154

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
# KIND=nchan: the same for three Nchan nodes in Redis "distributed" mode
# (what cluster.sh compares with); their POSTs go to /pub
KIND=${KIND:-ours}
ALL="1 2 3"
if [[ $KIND == nchan ]]; then NEED_NCHAN=1; fi

# shellcheck source=cluster-lib.sh
. "$HERE/cluster-lib.sh"

if [[ $KIND == nchan ]]; then
    start ours1 nchan
    start ours2 nchan
    start ours3 nchan
    sleep 1
    WHERE=pub
elif [[ $KIND == single ]]; then
    start ours1 single
    sleep 1
    WHERE=events
    NODES=1
    ALL=1
else
    start ours1 ours
    start ours2 ours
    start ours3 ours
    cluster_wait_nodes
    WHERE=events
fi


PIDS=()
NAMES=()
for n in $ALL; do
    m=MASTER_ours$n
    for w in $(pgrep -P ${!m}); do PIDS+=($w); NAMES+=("node$n-w$w"); done
done
PIDS+=($REDIS_PID); NAMES+=(redis)
declare -A C0
for p in "${PIDS[@]}"; do C0[$p]=$(proc_ticks $p); done
redis-cli -p $REDIS_PORT CONFIG RESETSTAT >/dev/null
BUSY0=$(awk '{print $1+$2+$3+$6+$7}' <(grep '^cpu ' /proc/stat | cut -d' ' -f3-))
per=$(( (CONNS + 2) / 3 ))
[[ $KIND == single ]] && per=$CONNS
if [[ -n ${PERF:-} ]]; then
    m=MASTER_ours${PERFNODE:-2}
    perf record -F 2000 -g -o $PERF -p "$(pgrep -P ${!m} | paste -sd,)" -- sleep $((DURATION - 1)) > /dev/null 2>&1 &
fi
if [[ -n ${STRACE:-} ]]; then
    m=MASTER_ours${PERFNODE:-2}
    for w in $(pgrep -P ${!m}); do
        timeout $((DURATION - 1)) strace -c -f -o $STRACE.$w -p $w > /dev/null 2>&1 &
    done
fi
if [[ -n ${PERFSTAT:-} ]]; then
    w=""
    for n in $ALL; do m=MASTER_ours$n; w+="$(pgrep -P ${!m} | paste -sd,),"; done
    perf stat -e instructions,context-switches -p "${w%,}" -o "$PERFSTAT.nginx" -- sleep $((DURATION - 1)) > /dev/null 2>&1 &
    perf stat -e instructions,context-switches -p "$REDIS_PID" -o "$PERFSTAT.redis" -- sleep $((DURATION - 1)) > /dev/null 2>&1 &
fi
for n in ${NODES:-1 2 3}; do
    port=PORT_ours$n
    wrk_run "http://127.0.0.1:${!port}/$WHERE" "$per" "$WORK/wrk-ours$n.log"
done
wrk_wait
BUSY1=$(awk '{print $1+$2+$3+$6+$7}' <(grep '^cpu ' /proc/stat | cut -d' ' -f3-))
read -r OURS OURS_BAD <<< "$(sum_rps "$WORK"/wrk-ours*.log)"
POSTS=$(sum_requests "$WORK"/wrk-ours*.log)
echo "load $(cut -d' ' -f1-3 /proc/loadavg) events/s $OURS bad $OURS_BAD posts $POSTS"
tot=0
for i in "${!PIDS[@]}"; do
    p=${PIDS[$i]}; d=$(( $(proc_ticks $p) - ${C0[$p]} ))
    tot=$((tot + d))
    awk -v n="${NAMES[$i]}" -v d=$d -v e=$POSTS 'BEGIN{printf "%-16s %6d ticks %7.2f us/event\n", n, d, d*1e4/e}'
done
awk -v d=$tot -v e=$POSTS 'BEGIN{printf "%-16s %6d ticks %7.2f us/event (servers)\n", "total", d, d*1e4/e}'
awk -v d=$((BUSY1-BUSY0)) -v e=$POSTS 'BEGIN{printf "%-16s %6d ticks %7.2f us/event (whole box)\n", "box", d, d*1e4/e}'
redis-cli -p $REDIS_PORT INFO commandstats | tr -d '\r' | grep cmdstat | awk -F'[=,:]' -v e=$POSTS '{printf "%-22s calls/event %6.2f  us/event %6.2f\n", $1, $3/e, $5/e}'
