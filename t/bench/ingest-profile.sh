#!/usr/bin/env bash
#
# Instructions per POST, counted with callgrind: load-independent, so it
# can be compared across runs on a busy box (wall-clock ratios cannot).
# One nginx process (master_process off), one keep-alive connection:
#
#   1. PROFILE_WARMUP single-event POSTs, not counted (the first POSTs
#      grow pools, the ring's indexes, the id generator's state);
#   2. PROFILE_POSTS POSTs of one 300-byte event (post.lua's event);
#   3. PROFILE_BATCHES POSTs of PROFILE_BATCH such events in an array;
#   4. the same as 1. and 2. against stock nginx answering "return 201"
#      (the ceiling of t/bench/ingest.sh): nginx's own cost of the POST.
#
# Phases 2 and 3 are counted separately (callgrind_control zeroes and
# dumps the counters between them); it prints the instructions per POST,
# per batched event, and the top functions of each phase (inclusive of
# nothing: self cost, so that the lines add up to the total).
#
#   t/bench/ingest-profile.sh     (make bench-ingest-profile)
#
# Environment: T_MODULE, NGINX_BIN, PROFILE_POSTS (default 2000),
# PROFILE_BATCHES (50), PROFILE_BATCH (100), PROFILE_WARMUP (200),
# PROFILE_TOP (25 functions), BENCH_BODY_BYTES (300), PROFILE_KEEP=1
# keeps the temp directory (the callgrind files, for callgrind_annotate).
# PROFILE_CLUSTER=1: the zone is a cluster's (events_cluster on a
# redis-server started here, AOF off), so a POST is a script in Redis
# and its event comes back through the tail, in the same process: one
# round trip per POST, the most a cluster node's POST costs.
#
# User space only: the kernel's share (socket reads and writes) is not
# counted.  Only 127.0.0.1 is used.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
POSTS=${PROFILE_POSTS:-2000}
BATCHES=${PROFILE_BATCHES:-50}
BATCH=${PROFILE_BATCH:-100}
WARMUP=${PROFILE_WARMUP:-200}
TOP=${PROFILE_TOP:-25}

for v in POSTS BATCHES BATCH WARMUP TOP; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a whole number > 0"
done
[[ -x $NGINX ]] || die "no nginx at $NGINX"
[[ -f $MODULE ]] || die "no module at $MODULE (run make first, or set T_MODULE)"
for c in valgrind callgrind_control callgrind_annotate perl; do
    command -v $c >/dev/null || die "$c is not installed (apt-get install valgrind)"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/events-profile.XXXXXX")
chmod 755 "$WORK"
cp "$MODULE" "$WORK/module.so"     # a rebuild must not pull it away
VG_PID=""
REDIS_PID=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $VG_PID ]] && kill -0 "$VG_PID" 2>/dev/null; then
        kill -TERM "$VG_PID" 2>/dev/null || true
        wait "$VG_PID" 2>/dev/null || true
    fi
    if [[ -n $REDIS_PID ]]; then
        kill -TERM "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    if [[ ${PROFILE_KEEP:-0} == 1 ]]; then
        echo "kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# shellcheck disable=SC2034  # free_port in lib.sh reads and extends it
USED_PORTS=" "

CLUSTER_LINE=""
if [[ ${PROFILE_CLUSTER:-0} == 1 ]]; then
    command -v redis-server >/dev/null \
        || die "redis-server is not installed (make deps)"
    free_port
    mkdir -p "$WORK/redis"
    redis-server --port "$FREE_PORT" --bind 127.0.0.1 --dir "$WORK/redis" \
        --daemonize no --appendonly no --save '' \
        > "$WORK/redis/log" 2>&1 &
    REDIS_PID=$!
    for ((i = 0; i < 100; i++)); do
        redis-cli -p "$FREE_PORT" ping 2>/dev/null | grep -q PONG && break
        sleep 0.1
    done
    redis-cli -p "$FREE_PORT" ping 2>/dev/null | grep -q PONG \
        || die "redis-server did not start on port $FREE_PORT"
    CLUSTER_LINE="events_cluster bench redis://127.0.0.1:$FREE_PORT;"
fi

# start KIND DIR: nginx under callgrind in DIR, our module's API
# ("ours") or stock nginx answering "return 201" to the same POST
# ("ceiling"); sets PORT and VG_PID
start() {
    local kind=$1 dir=$2 i
    mkdir -p "$dir"
    free_port
    PORT=$FREE_PORT

    {
        [[ $kind == ours ]] && echo "load_module $WORK/module.so;"
        cat <<CONF
master_process off;
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;

events {
    worker_connections 64;
}

http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $dir/client_body_temp;
    proxy_temp_path $dir/proxy_temp;
    fastcgi_temp_path $dir/fastcgi_temp;
    uwsgi_temp_path $dir/uwsgi_temp;
    scgi_temp_path $dir/scgi_temp;
CONF
        if [[ $kind == ours ]]; then
            cat <<CONF

    events_zone bench 256m;
    $CLUSTER_LINE

    server {
        listen 127.0.0.1:$PORT;
        client_body_buffer_size 16k;

        location /events {
            events_api bench;
        }
    }
}
CONF
        else
            cat <<CONF

    server {
        listen 127.0.0.1:$PORT;
        client_body_buffer_size 16k;

        location = /events {
            return 201;
        }
    }
}
CONF
        fi
    } > "$dir/nginx.conf"

    valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
        "$NGINX" -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" \
        > "$dir/valgrind.log" 2>&1 &
    VG_PID=$!

    for ((i = 0; i < 600; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        if ! kill -0 "$VG_PID" 2>/dev/null; then
            cat "$dir/valgrind.log" "$dir/error.log" >&2
            die "nginx ($kind) did not start"
        fi
        sleep 0.1
    done
    die "nginx ($kind) did not listen on $PORT within 60 s"
}

stop() {
    kill -TERM "$VG_PID" 2>/dev/null || true
    wait "$VG_PID" 2>/dev/null || true
    VG_PID=""
}

client() {
    perl "$HERE/ingest-profile.pl" "$PORT" "$@" || die "the client failed"
}

# zero / dump: callgrind_control reaches the process through vgdb even
# when it waits in epoll_wait
control() {
    callgrind_control "$@" "$VG_PID" > "$WORK/control.log" 2>&1 \
        || { cat "$WORK/control.log" >&2; die "callgrind_control $* failed"; }
}

start ours "$WORK"
client "$WARMUP" 1
control -z
client "$POSTS" 1
control --dump=single
client "$BATCHES" "$BATCH"
control --dump=batch
stop

[[ -f $WORK/callgrind.out.1 && -f $WORK/callgrind.out.2 ]] \
    || die "expected two callgrind dumps in $WORK"

# the ceiling: the same POSTs, stock nginx
start ceiling "$WORK/ceiling"
client "$WARMUP" 1
control -z
client "$POSTS" 1
control --dump=ceiling
stop

[[ -f $WORK/ceiling/callgrind.out.1 ]] \
    || die "expected a callgrind dump in $WORK/ceiling"

# total Ir of a dump: its "totals:" or "summary:" line
total() {
    awk '/^(totals|summary):/ { print $2; exit }' "$1"
}

# the annotated dump, self cost, without the frames that were on the
# stack when the counters were zeroed (main and its callers: they show
# the whole phase as their own)
annotate() {
    callgrind_annotate --auto=no --inclusive=no --threshold=100 "$1" \
        > "$1.txt" 2>/dev/null
    awk '/^-+$/ { sep++; next }
         sep >= 3 && /^ *[0-9,]+ / && !/\(100\.0%\)/' "$1.txt" > "$1.self"
}

# the steps of a POST, shown with what they call
STEPS="ngx_http_events_api_body ngx_http_events_parse_json
yajl_parse json_loadb ngx_http_events_api_store
ngx_http_events_json_event ngx_http_events_validate_batch
ngx_http_events_api_commit ngx_http_events_store_append_nosync
ngx_http_events_api_created ngx_http_events_json_cleanup
ngx_http_finalize_request ngx_http_free_request"

# what the store's append calls with the zone's lock held (those the
# compiler inlined into the append do not show: a lower bound)
LOCKED="ngx_http_events_store_expire_locked
ngx_http_events_store_repeats_locked ngx_http_events_store_catalog_locked
ngx_http_events_journal_write_locked ngx_http_events_store_publish_locked
ngx_http_events_store_write_locked"

report() {
    local what=$1 file=$2 units=$3 ir
    ir=$(total "$file")
    echo "== $what: $ir instructions / $units = $(awk -v a="$ir" -v b="$units" 'BEGIN { printf "%.0f", a / b }') per ${4}"
    annotate "$file"
    echo "-- by object"
    awk -v n="$units" '
        { ir = $1; gsub(",", "", ir)
          obj = "(object not named)"
          if (match($0, /\[[^]]*\]$/))
              obj = substr($0, RSTART + 1, RLENGTH - 2)
          sub(/.*\//, "", obj)
          if (obj ~ /^module\.so$/) obj = "the module"
          sum[obj] += ir }
        END { for (o in sum) printf "%9.0f  %s\n", sum[o] / n, o }' \
        "$file.self" | sort -rn
    echo "-- inclusive (with what they call) of the POST path's steps"
    callgrind_annotate --auto=no --inclusive=yes --threshold=100 "$file" \
        2>/dev/null | awk -v n="$units" -v fns="$STEPS" '
        BEGIN { split(fns, want, " "); for (i in want) w[want[i]] = 1 }
        /^ *[0-9,]+ / {
            ir = $1; gsub(",", "", ir)
            line = $0
            sub(/ \[[^]]*\]$/, "", line)
            sub(/.*:/, "", line)
            if (line in w && !(line in seen)) {
                seen[line] = 1
                printf "%9.0f  %s\n", ir / n, line
            }
        }'
    echo "-- under the zone's lock (what append calls while it holds it)"
    echo "   (a lower bound: functions inlined into the append do not show)"
    callgrind_annotate --auto=no --inclusive=yes --threshold=100 "$file" \
        2>/dev/null | awk -v n="$units" -v fns="$LOCKED" '
        BEGIN { split(fns, want, " "); for (i in want) w[want[i]] = 1 }
        /^ *[0-9,]+ / {
            ir = $1; gsub(",", "", ir)
            line = $0
            sub(/ \[[^]]*\]$/, "", line)
            sub(/.*:/, "", line)
            sub(/\x27[0-9]+$/, "", line)
            if (line in w && !(line in seen)) {
                seen[line] = 1
                sum += ir
                printf "%9.0f  %s\n", ir / n, line
            }
        }
        END { printf "%9.0f  in all, at least\n", sum / n }'
    echo "-- top functions"
    awk -v top="$TOP" -v n="$units" '
        { ir = $1; gsub(",", "", ir)
          pct = $2 $3
          line = $0
          sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", line)
          sub(/ \[[^]]*\]$/, "", line)
          sub(/^.*\/(src|string|malloc)\//, "", line)
          printf "%9.0f  %s\n", ir / n, line
          if (++shown >= top) exit }' "$file.self"
    echo
}

echo "module: $MODULE (sha256 $(sha256sum "$MODULE" | cut -c1-16))"
echo "checkout: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src config 2>/dev/null || echo " + uncommitted changes in src/")"
echo "body: ${BENCH_BODY_BYTES:-300}-byte events; $WARMUP POSTs of warm-up (not counted)"
[[ -n $CLUSTER_LINE ]] && echo "cluster: $CLUSTER_LINE (POSTs one after the other, each tailed back)"
echo
report "single events, $POSTS POSTs" "$WORK/callgrind.out.1" "$POSTS" POST
report "batches of $BATCH, $BATCHES POSTs" "$WORK/callgrind.out.2" \
    "$((BATCHES * BATCH))" "batched event"
ours=$(total "$WORK/callgrind.out.1")
batched=$(total "$WORK/callgrind.out.2")
ceiling=$(total "$WORK/ceiling/callgrind.out.1")
echo "== stock nginx, return 201 to the same POST: $ceiling instructions / $POSTS = $(awk -v a="$ceiling" -v b="$POSTS" 'BEGIN { printf "%.0f", a / b }') per POST"
echo
echo "== summary (user space; the kernel's share is not counted)"
awk -v o="$ours" -v b="$batched" -v c="$ceiling" -v n="$POSTS" \
    -v m="$((BATCHES * BATCH))" 'BEGIN {
        printf "instructions per POST:           %8.0f\n", o / n
        printf "instructions per batched event:  %8.0f\n", b / m
        printf "stock nginx per POST (ceiling):  %8.0f\n", c / n
        printf "ours / ceiling, per POST:        %8.1fx\n", o / c
        printf "single / batched, per event:     %8.2fx\n", (o / n) / (b / m)
    }'
echo
echo "(instructions per POST or per batched event, self cost; ??? are"
echo "functions of libraries without symbols: install their -dbgsym)"
