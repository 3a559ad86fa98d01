#!/usr/bin/env bash
#
# WebSocket against Server-Sent Events, in one run: N subscribers on our
# events_stream location as EventSources, then as WebSockets, then the
# same two on Nchan (Debian's libnginx-mod-nchan: nchan_subscriber
# eventsource and websocket), each under a stock nginx with 2 workers.
# For each, a publisher POSTs ~300-byte events as fast as BENCH_PUB_CONNS
# connections get answers for BENCH_SECONDS, the subscribers drain, and:
#
#   deliv/s   unique events received over all streams / the time from the
#             phase start to the last one received
#   cpu_us    the server's workers' utime + stime per 1000 deliveries
#   p50, p99  publish -> receive latency (ms)
#   missing   published x streams - unique received after the drain
#
# then the ratios WebSocket / SSE (ours) and ours / Nchan (WebSockets).
# The client is t/bench/fanout_client.c (-w: WebSockets).  About 50 s
# with the defaults.
#
# Environment: T_MODULE, NGINX_BIN, NCHAN_MODULE as for fanout.sh;
#   BENCH_SUBSCRIBERS (default 200), BENCH_SECONDS (default 5),
#   BENCH_PUB_CONNS (default 4), BENCH_KEEP=1 keeps the temp directory.
# Only 127.0.0.1 is used.

set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
N=${BENCH_SUBSCRIBERS:-200}
SECS=${BENCH_SECONDS:-5}
CONNS=${BENCH_PUB_CONNS:-4}

# shellcheck source=t/bench/lib.sh
. "$HERE/lib.sh"
[[ -f $MODULE ]] || die "no module at $MODULE (make first)"
[[ -f $NCHAN ]] || die "no Nchan at $NCHAN (apt-get install libnginx-mod-nchan)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/events-ws-fanout.XXXXXX")
chmod 755 "$WORK"
cp "$MODULE" "$WORK/events.so"
gcc -O2 -Wall -Wextra -o "$WORK/client" "$HERE/fanout_client.c" \
    || die "the client did not compile"

USED_PORTS=" "
SUB_PID=""
PUB_PID=""
cleanup() {
    [[ -n $SUB_PID ]] && kill -TERM "$SUB_PID" 2>/dev/null
    [[ -n $PUB_PID ]] && kill -TERM "$PUB_PID" 2>/dev/null
    quit_servers ws-fanout 50 "$WORK/ours" "$WORK/nchan"
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        echo "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

conf() {
    local kind=$1 port=$2 dir=$WORK/$1 t
    mkdir -p "$dir"
    {
        if [[ $kind == ours ]]; then
            echo "load_module $WORK/events.so;"
        else
            echo "load_module $NCHAN;"
        fi
        cat <<EOF2
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $((N + 1024)); }
http {
    access_log off;
EOF2
        for t in client_body proxy fastcgi uwsgi scgi; do
            echo "    ${t}_temp_path $dir/${t}_temp;"
        done
        if [[ $kind == ours ]]; then
            cat <<EOF2
    events_zone bench 256m;
    server {
        listen 127.0.0.1:$port backlog=4096;
        events_heartbeat 1h;
        location /events { events_api bench; }
        location = /stream { events_stream bench; }
    }
}
EOF2
        else
            cat <<EOF2
    nchan_max_reserved_memory 512m;
    server {
        listen 127.0.0.1:$port backlog=4096;
        location = /pub {
            nchan_publisher;
            nchan_channel_id bench;
            nchan_message_buffer_length 100000;
            nchan_message_timeout 1h;
        }
        location = /stream {
            nchan_subscriber eventsource websocket;
            nchan_subscriber_first_message newest;
            nchan_channel_id bench;
            nchan_message_buffer_length 100000;
            nchan_message_timeout 1h;
        }
    }
}
EOF2
        fi
    } > "$dir/nginx.conf"
    "$NGINX" -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" \
        || die "$kind did not start"
    wait_port "$port" "$(cat "$dir/nginx.pid")" || die "$kind does not listen"
}

workers() {
    pgrep -P "$(cat "$WORK/$1/nginx.pid")" | tr '\n' ' '
}

cpu_ticks() {
    local p sum=0 s f
    for p in $(workers "$1"); do
        s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        s=${s##*) }
        read -r -a f <<< "$s"
        sum=$((sum + f[11] + f[12]))
    done
    echo "$sum"
}
TCK=$(getconf CLK_TCK)

kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<< " $2"; }

free_port; PORT_ours=$FREE_PORT
free_port; PORT_nchan=$FREE_PORT
conf ours "$PORT_ours"
conf nchan "$PORT_nchan"

echo "ws-fanout: $N subscribers, $SECS s of publishing on $CONNS connections, 2 workers each"
printf '%-10s %9s %9s %10s %8s %8s %8s\n' server published deliv/s cpu_us/1k p50_ms p99_ms missing

declare -A DELIV CPU
PHASE=0
for v in ours-sse ours-ws nchan-sse nchan-ws; do
    kind=${v%-*}
    port=PORT_$kind; port=${!port}
    args=()
    [[ $v == *-ws ]] && args+=(-w)
    [[ $kind == ours ]] && args+=(-s)
    mkfifo "$WORK/ctl-$v"
    "$WORK/client" sub -p "$port" -u /stream -n "$N" "${args[@]}" -P 64 -T 30 \
        < "$WORK/ctl-$v" > "$WORK/sub-$v.out" 2> "$WORK/sub-$v.err" &
    SUB_PID=$!
    exec 7> "$WORK/ctl-$v"
    for ((i = 0; i < 400; i++)); do
        grep -q '^READY ' "$WORK/sub-$v.out" && break
        sleep 0.1
    done
    grep -q '^READY ' "$WORK/sub-$v.out" || die "$v: subscribers not ready: $(cat "$WORK/sub-$v.err")"
    sleep 1

    PHASE=$((PHASE + 1))
    echo "PHASE $PHASE" >&7
    cpu0=$(cpu_ticks "$kind")
    if [[ $kind == ours ]]; then path=/events; extra=(); else path=/pub; extra=(-j); fi
    "$WORK/client" pub -p "$port" -u "$path" -r 0 -d "$SECS" -c "$CONNS" \
        -g "$PHASE" -G 10 "${extra[@]}" > "$WORK/pub-$v.out" 2>&1 &
    PUB_PID=$!
    wait "$PUB_PID" || true
    PUB_PID=""
    ok=$(kv ok "$(grep '^PUB ' "$WORK/pub-$v.out")")
    echo "END ${ok:-0} 2000 20000" >&7
    line=""
    for ((i = 0; i < 300; i++)); do
        line=$(grep "^RESULT phase=$PHASE " "$WORK/sub-$v.out" || true)
        [[ -n $line ]] && break
        sleep 0.1
    done
    cpu1=$(cpu_ticks "$kind")
    echo QUIT >&7
    exec 7>&-
    wait "$SUB_PID" 2>/dev/null || true
    SUB_PID=""
    [[ -n $line ]] || die "$v: no result"

    rx=$(kv rx "$line"); dup=$(kv dup "$line"); last=$(kv last_rx_us "$line")
    uniq=$((rx - dup))
    deliv=$(awk -v u="$uniq" -v l="$last" -v s="$SECS" \
        'BEGIN { t = l / 1e6; if (t < s) t = s; printf "%.0f", u / t }')
    cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v t="$TCK" -v u="$uniq" \
        'BEGIN { if (u > 0) printf "%.1f", (b - a) / t * 1e9 / u; else print "-" }')
    DELIV[$v]=$deliv
    CPU[$v]=$cpu
    printf '%-10s %9s %9s %10s %8.2f %8.2f %8s\n' "$v" "$ok" "$deliv" "$cpu" \
        "$(awk -v u="$(kv lat_p50_us "$line")" 'BEGIN { print u / 1000 }')" \
        "$(awk -v u="$(kv lat_p99_us "$line")" 'BEGIN { print u / 1000 }')" \
        "$(kv missing "$line")"
    if [[ $kind == ours ]] && (($(kv seq_gaps "$line") + $(kv seq_dups "$line") + $(kv missing "$line") > 0)); then
        echo "  $v: ours lost or repeated events: $line" >&2
        FAILED=1
    fi
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "-") printf "%.2f", a / b; else print "-" }'; }
echo
echo "ratios                         deliv/s  cpu/delivery"
printf 'ours: WebSocket / SSE          %7s  %12s\n' \
    "$(ratio "${DELIV[ours-ws]}" "${DELIV[ours-sse]}")" "$(ratio "${CPU[ours-ws]}" "${CPU[ours-sse]}")"
printf 'WebSocket: ours / Nchan        %7s  %12s\n' \
    "$(ratio "${DELIV[ours-ws]}" "${DELIV[nchan-ws]}")" "$(ratio "${CPU[ours-ws]}" "${CPU[nchan-ws]}")"
printf 'SSE: ours / Nchan              %7s  %12s\n' \
    "$(ratio "${DELIV[ours-sse]}" "${DELIV[nchan-sse]}")" "$(ratio "${CPU[ours-sse]}" "${CPU[nchan-sse]}")"
exit "${FAILED:-0}"
