# Sourced by cluster.sh and cluster-cpu.sh: the processes they start and
# stop (a trap), one Redis with AOF on a free port ($URL), and the nginx
# configs of a node (ours with or without events_cluster, or Nchan on the
# same Redis).  Expects HERE, WORK, MODULE, NCHAN (for Nchan nodes) and
# die() from the script, and lib.sh sourced.

# PORT_*, DIR_*, MASTER_* are assigned through printf -v
# shellcheck shell=bash disable=SC2154

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
    || die "redis-server did not start"
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
            [[ $kind == ours ]] && echo "    events_cluster bench $URL prefix=bench;"
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
