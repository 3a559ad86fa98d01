# Shared by the benchmarks in t/bench: the paths every one of them uses
# (ROOT, MODULE, NGINX, NCHAN, from T_MODULE, NGINX_BIN, NCHAN_MODULE),
# die(), free loopback ports and waiting for a server to listen.
# Sourced, not run, after the caller has set HERE.

ROOT=$(cd "$HERE/../.." && pwd)
MODULE=${T_MODULE:-$ROOT/build/ngx_http_events_module.so}
case $MODULE in /*) ;; *) MODULE=$PWD/$MODULE ;; esac
NGINX=${NGINX_BIN:-/usr/sbin/nginx}
# shellcheck disable=SC2034  # for the scripts that run Nchan
NCHAN=${NCHAN_MODULE:-/usr/lib/nginx/modules/ngx_nchan_module.so}

# die MESSAGE: a setup that failed (exit status 2)
die() {
    echo "$(basename "$0"): $*" >&2
    exit 2
}

# free_port: sets FREE_PORT to a loopback port nothing listens on and
# that this run has not handed out before (kept in USED_PORTS).
free_port() {
    local p i
    for ((i = 0; i < 200; i++)); do
        # below the kernel's ephemeral range (32768-60999): a port
        # there may be some connection's local end, and bind() fails
        p=$((20000 + RANDOM % 12000))
        [[ $USED_PORTS == *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            USED_PORTS+="$p "
            FREE_PORT=$p
            return 0
        fi
    done
    die "no free port found"
}

# wait_port PORT PID: until PORT accepts (5 s at most), or PID is gone.
wait_port() {
    local port=$1 pid=$2 i
    for ((i = 0; i < 100; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# quit_servers NAME TENTHS DIR...: nginx -s quit for each prefix DIR, wait
# up to TENTHS tenths of a second for each master, then TERM what is left.
quit_servers() {
    local name=$1 tenths=$2 dir pid i
    shift 2
    for dir in "$@"; do
        "$NGINX" -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" \
            -s quit 2>/dev/null || true
    done
    for dir in "$@"; do
        pid=$(cat "$dir/nginx.pid" 2>/dev/null || true)
        [[ -n $pid ]] || continue
        for ((i = 0; i < tenths; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "$name: nginx $pid ($dir) ignored quit; terminating" >&2
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
}

# start_server NAME KIND DIR KEY ARGS...: write DIR/nginx.conf with the
# caller's write_conf DIR PORT ARGS..., start nginx on a free port (a port
# taken meanwhile is retried), and set PORT_KIND, DIR_KIND, MASTER_KIND and
# CMD_START[KEY].  If it does not come up: its config and logs, exit 2.
start_server() {
    local name=$1 kind=$2 dir=$3 key=$4 port attempt pid i
    shift 4
    for ((attempt = 1; attempt <= 5; attempt++)); do
        free_port
        port=$FREE_PORT
        write_conf "$dir" "$port" "$@"
        : > "$dir/error.log"
        CMD_START[$key]=$(printf '%q ' "$NGINX" -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log")
        STARTED+=("$dir")
        if ! "$NGINX" -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" \
                2>"$dir/start.err"; then
            if grep -q 'Address already in use' "$dir/start.err"; then
                continue
            fi
            break
        fi
        pid=""
        for ((i = 0; i < 50; i++)); do
            pid=$(cat "$dir/nginx.pid" 2>/dev/null || true)
            [[ -n $pid ]] && break
            sleep 0.05
        done
        if [[ -n $pid ]] && wait_port "$port" "$pid"; then
            printf -v "PORT_$kind" '%s' "$port"
            printf -v "DIR_$kind" '%s' "$dir"
            printf -v "MASTER_$kind" '%s' "$pid"
            return 0
        fi
        grep -q 'Address already in use' "$dir/error.log" || break
    done
    echo "$name: nginx ($kind) failed to start; $dir/nginx.conf:" >&2
    [[ $kind == ours ]] && echo "(the module loaded is a copy of $MODULE_SRC)" >&2
    sed 's/^/    /' "$dir/nginx.conf" >&2
    echo "$name: its error log and stderr:" >&2
    sed 's/^/    /' "$dir/error.log" "$dir/start.err" >&2
    exit 2
}
