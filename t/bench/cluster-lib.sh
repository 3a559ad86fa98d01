# Sourced by cluster.sh and cluster-cpu.sh after lib.sh: their settings
# and checks, a temp directory ($WORK) with a copy of the module, the
# processes they start and stop (a trap), one Redis with AOF on a free
# port ($URL), and the nginx configs of a node (ours with or without
# events_cluster, or Nchan on the same Redis), the wait for the
# cluster's nodes, and wrk and Redis counters.  NEED_NCHAN=1 when the
# script runs Nchan nodes.
# BENCH_CLUSTER_ARGS: more parameters of events_cluster (tail_pace=0).

# PORT_*, DIR_*, MASTER_* are assigned through printf -v
# shellcheck shell=bash disable=SC2154

DURATION=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNECTIONS:-16}
LUA=$HERE/post.lua
export BENCH_BODY_BYTES=300

[[ -x $NGINX ]] || die "no nginx at $NGINX"
[[ -f $MODULE ]] || die "no module at $MODULE (run make first)"
if [[ ${NEED_NCHAN:-0} == 1 ]]; then
    [[ -f $NCHAN ]] || die "no Nchan at $NCHAN (make deps)"
fi
command -v wrk >/dev/null || die "wrk is not installed (make deps)"
command -v redis-server >/dev/null \
    || die "redis-server is not installed (make deps)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/events-bench-cluster.XXXXXX")
chmod 755 "$WORK"

# a copy the nginx workers can read whatever the checkout's permissions
cp "$MODULE" "$WORK/ngx_http_events_module.so"
MODULE=$WORK/ngx_http_events_module.so
chmod 644 "$MODULE"

STARTED=()
BG_PIDS=()
REDIS_PID=""
USED_PORTS=" "

stop_all() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${BG_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    quit_servers cluster.sh 50 "${STARTED[@]}"
    if [[ -n $REDIS_PID ]]; then
        kill -TERM "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        echo "kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap '' PIPE

# ---------------------------------------------------------------------

free_port
REDIS_PORT=$FREE_PORT
mkdir -p "$WORK/redis"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK/redis" \
    --daemonize no --appendonly yes --appendfsync everysec --save '' \
    --logfile "$WORK/redis/redis.log" > /dev/null 2>&1 &
REDIS_PID=$!
for ((i = 0; i < 100; i++)); do
    [[ $(redis-cli -p "$REDIS_PORT" PING 2>/dev/null) == PONG ]] && break
    sleep 0.05
done
[[ $(redis-cli -p "$REDIS_PORT" PING 2>/dev/null) == PONG ]] \
    || die "redis-server did not start on port $REDIS_PORT:" \
           "$(tail -3 "$WORK/redis/redis.log" 2>/dev/null)"
URL=redis://127.0.0.1:$REDIS_PORT

# write_conf DIR PORT KIND
write_conf() {
    local dir=$1 port=$2 kind=$3 t
    mkdir -p "$dir"
    chmod 755 "$dir"
    {
        if [[ $kind == nchan ]]; then
            echo "load_module $NCHAN;"
        else
            echo "load_module $MODULE;"
        fi
        cat <<EOF
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
EOF
        for t in client_body proxy fastcgi uwsgi scgi; do
            echo "    ${t}_temp_path $dir/${t}_temp;"
        done
        case $kind in
        nchan)
            cat <<EOF
    nchan_redis_url $URL;
    nchan_use_redis on;
    nchan_redis_storage_mode distributed;
    server {
        listen 127.0.0.1:$port backlog=4096;
        location = /pub {
            nchan_publisher;
            nchan_channel_id bench;
            nchan_message_buffer_length 1000;
            nchan_message_timeout 1h;
        }
        location = /sub {
            nchan_subscriber eventsource;
            nchan_subscriber_first_message newest;
            nchan_channel_id bench;
            nchan_message_buffer_length 1000;
            nchan_message_timeout 1h;
        }
    }
}
EOF
            ;;
        *)
            echo "    events_zone bench 256m;"
            [[ $kind == ours ]] && echo "    events_cluster bench $URL" \
                "prefix=bench ${BENCH_CLUSTER_ARGS:-};"
            cat <<EOF
    server {
        listen 127.0.0.1:$port backlog=4096;
        client_body_buffer_size 16k;
        location /events { events_api bench; }
        location = /events/stream { events_stream bench; }
        location = /events-status { events_status bench; }
    }
}
EOF
            ;;
        esac
    } > "$dir/nginx.conf"
}

declare -A CMD_START
start() {
    start_server cluster.sh "$1" "$WORK/$1" "$1" "${2:-$1}"
}

# the cluster nodes read the log before they answer
cluster_wait_nodes() {
    local n i port
    for n in 1 2 3; do
        port=PORT_ours$n
        for ((i = 0; i < 100; i++)); do
            [[ $(curl -s -o /dev/null -w '%{http_code}' \
                "http://127.0.0.1:${!port}/events") == 200 ]] && break
            sleep 0.1
        done
    done
}

# wrk_run URL CONNS LOG (in the background; WRK_PIDS)
WRK_PIDS=()
wrk_run() {
    local t=2
    (($2 == 1)) && t=1
    wrk "-t$t" "-c$2" "-d${DURATION}s" -s "$LUA" "$1" > "$3" 2>&1 &
    WRK_PIDS+=($!)
    BG_PIDS+=($!)
}

wrk_wait() {
    local p
    for p in "${WRK_PIDS[@]}"; do
        wait "$p" || die "wrk failed"
    done
    WRK_PIDS=()
}

# the sum of requests/s and non-2xx of the logs given
sum_rps() {
    local f line rps=0 bad=0 req dur non
    for f in "$@"; do
        line=$(grep '^WRK_RESULT ' "$f" | tail -1)
        [[ -n $line ]] || die "no WRK_RESULT in $f"
        req=$(sed 's/.* requests=\([0-9]*\).*/\1/' <<< "$line")
        dur=$(sed 's/.* duration_us=\([0-9]*\).*/\1/' <<< "$line")
        non=$(sed 's/.* non2xx=\([0-9]*\).*/\1/' <<< "$line")
        rps=$(awk -v a="$rps" -v r="$req" -v d="$dur" \
            'BEGIN { printf "%.0f", a + r * 1e6 / d }')
        bad=$((bad + non))
    done
    echo "$rps $bad"
}

# the requests wrk made, summed over the logs given
sum_requests() {
    local f n=0
    for f in "$@"; do
        n=$((n + $(grep '^WRK_RESULT ' "$f" | tail -1 \
            | sed 's/.* requests=\([0-9]*\).*/\1/')))
    done
    echo "$n"
}

# a process's CPU so far, in clock ticks (utime + stime)
proc_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

redis_ticks() {
    proc_ticks "$REDIS_PID"
}

# append scripts Redis ran so far (EVALSHA, and EVAL after a NOSCRIPT)
script_calls() {
    redis-cli -p "$REDIS_PORT" INFO commandstats \
        | tr -d '\r' | awk -F'[=,:]' '
            /^cmdstat_(evalsha|eval):/ { n += $3 } END { print n + 0 }'
}

# every command Redis ran so far (a script's own calls included)
redis_calls() {
    redis-cli -p "$REDIS_PORT" INFO commandstats \
        | tr -d '\r' | awk -F'[=,:]' '
            /^cmdstat_/ { n += $3 } END { print n + 0 }'
}

# microseconds Redis spent in them
script_usec() {
    redis-cli -p "$REDIS_PORT" INFO commandstats \
        | tr -d '\r' | awk -F'[=,:]' '
            /^cmdstat_(evalsha|eval):/ { n += $5 } END { print n + 0 }'
}
