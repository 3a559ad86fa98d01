#!/usr/bin/env bash
#
# Ingest benchmark: POST one ~300-byte JSON event per request into
# ngx_http_events_module and, side by side, into Nchan's publisher
# (Debian's libnginx-mod-nchan) and into stock nginx answering
# "return 201" to the same POST (the ceiling: nginx's own cost of a
# request with that body), all under the same nginx binary.  Then ours
# again with batches of BENCH_BATCH events per POST.
#
#   t/bench/ingest.sh            (make bench runs it after building)
#
# Environment:
#   T_MODULE          our module (default: build/ngx_http_events_module.so
#                     of this checkout)
#   NGINX_BIN         nginx binary (default /usr/sbin/nginx)
#   NCHAN_MODULE      Nchan (default /usr/lib/nginx/modules/ngx_nchan_module.so)
#   BENCH_SECONDS     seconds per wrk run (default 10)
#   BENCH_ROUNDS      rounds; each round runs ours then Nchan at every
#                     connection count, so noise hits both (default 2)
#   BENCH_WARMUP      seconds of unmeasured warm-up per server (default 1,
#                     0 to skip)
#   BENCH_CONNECTIONS connection counts (default "1 16"; wrk gets -t1 for
#                     1 connection, -t2 otherwise)
#   BENCH_BODY_BYTES  body size (default 300)
#   BENCH_BATCH       events per POST in the batch runs (default 100, 0
#                     to skip them); ours only, at the largest connection
#                     count, BENCH_ROUNDS times
#   BENCH_STRICT=1    count non-2xx with a wrk response() hook instead of
#                     wrk's status error counter (which counts >= 400 only)
#   BENCH_KEEP=1      keep the temp directory (configs, logs, wrk output)
#
# Exit status: 0 when every check passed, 1 when a check failed, 2 when
# the setup failed (nginx did not start, wrk missing, ...).
#
# Only 127.0.0.1 is ever used.

# R_*, PORT_* and DIR_* are assigned through printf -v
# shellcheck disable=SC2154

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
DURATION=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-2}
WARMUP=${BENCH_WARMUP:-1}
CONNECTIONS=${BENCH_CONNECTIONS:-"1 16"}
export BENCH_BODY_BYTES=${BENCH_BODY_BYTES:-300}
export BENCH_STRICT=${BENCH_STRICT:-0}
BATCH=${BENCH_BATCH:-100}
KINDS="ours nchan ceiling"
LUA=$HERE/post.lua

for v in DURATION ROUNDS WARMUP BENCH_BODY_BYTES BATCH; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, not '${!v}'"
done
((DURATION > 0 && ROUNDS > 0)) || die "BENCH_SECONDS and BENCH_ROUNDS must be > 0"
for c in $CONNECTIONS; do
    [[ $c =~ ^[1-9][0-9]*$ ]] || die "bad connection count '$c'"
done

[[ -x $NGINX ]] || die "no nginx at $NGINX"
[[ -f $MODULE ]] || die "no module at $MODULE (run make first, or set T_MODULE)"
[[ -f $NCHAN ]] || die "no Nchan at $NCHAN (apt-get install libnginx-mod-nchan)"
[[ -f $LUA ]] || die "no $LUA"
command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk)"
command -v curl >/dev/null || die "curl is not installed"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/events-bench.XXXXXX")
chmod 755 "$WORK"     # workers may run as nobody

# nginx runs a private copy of the module: a rebuild rewrites the .so in
# place, which kills the workers that have it mapped (SIGBUS/SIGSEGV)
MODULE_SRC=$MODULE
MODULE=$WORK/ngx_http_events_module.so
cp "$MODULE_SRC" "$MODULE"
chmod 644 "$MODULE"

STARTED=()            # prefixes of the nginx instances we started
WRK_PID=""            # the wrk running now, if any

stop_all() {
    local rc=$? dir pid i
    trap - EXIT INT TERM
    if [[ -n $WRK_PID ]]; then
        kill -TERM "$WRK_PID" 2>/dev/null || true
        wait "$WRK_PID" 2>/dev/null || true
    fi
    quit_servers ingest.sh 50 "${STARTED[@]}"
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

# FREE_PORT: a port nothing on 127.0.0.1 accepts on right now; start()
# retries with another one if the port gets taken in between
USED_PORTS=" "
# write_conf DIR PORT KIND
write_conf() {
    local dir=$1 port=$2 kind=$3
    local t
    mkdir -p "$dir"
    chmod 755 "$dir"
    {
        if [[ $kind == ours ]]; then
            echo "load_module $MODULE;"
        elif [[ $kind == nchan ]]; then
            echo "load_module $NCHAN;"
        fi
        cat <<EOF
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log warn;

events {
    worker_connections 1024;
}

http {
    access_log off;
EOF
        for t in client_body proxy fastcgi uwsgi scgi; do
            echo "    ${t}_temp_path $dir/${t}_temp;"
        done
        if [[ $kind == ours ]]; then
            cat <<EOF

    events_zone bench 256m;

    server {
        listen 127.0.0.1:$port;
        client_body_buffer_size 16k;

        location /events {
            events_api bench;
        }

        location = /events-status {
            events_status bench;
        }
    }
}
EOF
        elif [[ $kind == ceiling ]]; then
            cat <<EOF

    # stock nginx: reads (discards) the same body and answers 201
    server {
        listen 127.0.0.1:$port;
        client_body_buffer_size 16k;

        location = /events {
            return 201;
        }
    }
}
EOF
        else
            cat <<EOF

    # the same 256 MB of shared memory as events_zone
    nchan_max_reserved_memory 256m;

    server {
        listen 127.0.0.1:$port;
        client_body_buffer_size 16k;

        location = /pub {
            nchan_publisher;
            nchan_channel_id bench;
            nchan_message_buffer_length 1000;
            nchan_message_timeout 1h;
        }

        # not used during ingest; messages stay in Nchan's memory store
        location = /sub {
            nchan_subscriber;
            nchan_channel_id bench;
            nchan_message_buffer_length 1000;
            nchan_message_timeout 1h;
        }
    }
}
EOF
        fi
    } > "$dir/nginx.conf"
}

# start KIND -> sets PORT_<kind>, DIR_<kind>
start() {
    start_server ingest.sh "$1" "$WORK/$1" "$1" "$1"
}

declare -A CMD_START

# our newest seq, 0 when the store is empty
head_seq() {
    local body
    body=$(curl -sS --max-time 10 \
        "http://127.0.0.1:$PORT_ours/events?limit=1&order=desc") \
        || { echo "ingest.sh: GET /events failed" >&2; echo -1; return; }
    if [[ $body =~ \"seq\":([0-9]+) ]]; then
        echo "${BASH_REMATCH[1]}"
    elif [[ $body == *'"data":[]'* ]]; then
        echo 0
    else
        echo "ingest.sh: unexpected GET /events answer: ${body:0:200}" >&2
        echo -1
    fi
}

# run_wrk KIND CONNS SECONDS LOGFILE -> sets R_requests, R_duration_us, ...
run_wrk() {
    local kind=$1 c=$2 secs=$3 log=$4 t=2 url line kv
    ((c == 1)) && t=1
    case $kind in
        ours) url=http://127.0.0.1:$PORT_ours/events ;;
        nchan) url=http://127.0.0.1:$PORT_nchan/pub ;;
        ceiling) url=http://127.0.0.1:$PORT_ceiling/events ;;
    esac
    WRK_CMD=(wrk "-t$t" "-c$c" "-d${secs}s" -s "$LUA" "$url")
    CMD_WRK["$kind/$c"]=$(printf '%q ' "${WRK_CMD[@]}")
    # in the background so that a signal reaches the trap at once and the
    # trap can stop this wrk by its pid
    "${WRK_CMD[@]}" > "$log" 2>&1 &
    WRK_PID=$!
    if ! wait "$WRK_PID"; then
        WRK_PID=""
        echo "ingest.sh: wrk failed:" >&2
        sed 's/^/    /' "$log" >&2
        exit 2
    fi
    WRK_PID=""
    line=$(grep '^WRK_RESULT ' "$log" | tail -1)
    [[ -n $line ]] || { echo "ingest.sh: no WRK_RESULT in:" >&2; cat "$log" >&2; exit 2; }
    for kv in ${line#WRK_RESULT }; do
        printf -v "R_${kv%%=*}" '%s' "${kv#*=}"
    done
}
declare -A CMD_WRK

median() {
    printf '%s\n' "$@" | sort -g | awk '
        { v[NR] = $1 }
        END { if (NR % 2) print v[(NR + 1) / 2];
              else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ---------------------------------------------------------------------

start ours
start nchan
start ceiling

echo "== machine"
echo "nproc: $(nproc)"
echo "cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown)"
echo "kernel: $(uname -srm)"
echo "nginx: $("$NGINX" -V 2>&1 | head -1)"
echo "nchan: $(dpkg-query -W -f='${Package} ${Version}' libnginx-mod-nchan 2>/dev/null || echo "$NCHAN")"
echo "wrk: $(wrk -v 2>&1 | head -1)"
echo "module: $MODULE_SRC (built $(stat -c '%y' "$MODULE_SRC" | cut -d. -f1), sha256 $(sha256sum "$MODULE" | cut -c1-16), run from a copy)"
echo "checkout: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src config 2>/dev/null || echo " + uncommitted changes in src/")"
echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "== servers"
echo "ours:  ${CMD_START[ours]}  (port $PORT_ours)"
echo "nchan: ${CMD_START[nchan]}  (port $PORT_nchan)"
echo "ceiling: ${CMD_START[ceiling]}  (port $PORT_ceiling)"
for kind in $KINDS; do
    dir=DIR_$kind
    echo "-- ${!dir}/nginx.conf"
    sed 's/^/    /' "${!dir}/nginx.conf"
done
echo

FAILED=0
fail() {
    echo "FAIL: $*"
    FAILED=1
}

# a worker that died makes every later number meaningless: stop there
crashes() {
    grep -c 'exited on signal' "$WORK/$1/error.log" || true
}
check_crash() {
    local kind=$1 what=$2
    if (($(crashes "$kind") > 0)); then
        echo "FAIL: $kind: nginx worker(s) crashed during $what; its error log:"
        grep -E '\[(warn|error|crit|alert|emerg)\]' "$WORK/$kind/error.log" \
            | head -20 | sed 's/^/    /'
        exit 1
    fi
}

# one POST each before anything else: a wrong status here would make
# every number below meaningless
for kind in $KINDS; do
    case $kind in
        ours) path=/events; port=$PORT_ours ;;
        nchan) path=/pub; port=$PORT_nchan ;;
        ceiling) path=/events; port=$PORT_ceiling ;;
    esac
    status=$(curl -sS -o "$WORK/probe-$kind.out" -w '%{http_code}' --max-time 10 \
        -X POST -H 'Content-Type: application/json' \
        --data-binary '{"type":"ticket.updated","resourceId":"ticket-123","payload":{"data":{"probe":true}}}' \
        "http://127.0.0.1:$port$path") || status=000
    if [[ $status != 2?? ]]; then
        echo "ingest.sh: probe POST to $kind answered $status:" >&2
        cat "$WORK/probe-$kind.out" >&2
        sed 's/^/    /' "$WORK/$kind/error.log" >&2
        exit 2
    fi
    echo "probe POST $kind$path: $status"
done

if ((WARMUP > 0)); then
    for kind in $KINDS; do
        run_wrk "$kind" 16 "$WARMUP" "$WORK/warmup-$kind.log"
        check_crash "$kind" "the warm-up"
    done
    echo "warm-up: ${WARMUP}s per server at 16 connections (not measured)"
fi
echo "body: ${R_body_bytes:-$BENCH_BODY_BYTES} bytes, non-2xx counted by: $([[ $BENCH_STRICT == 1 ]] && echo "response() hook" || echo "wrk status errors (>= 400)")"
echo

declare -A RATES
echo "== runs (${DURATION}s each)"
printf '%-5s %-5s %-6s %12s %9s %9s %9s %8s %12s %12s %s\n' \
    round conns server requests events/s p50_us p99_us non2xx seq_delta "delta-req" check
for ((r = 1; r <= ROUNDS; r++)); do
    for c in $CONNECTIONS; do
        for kind in $KINDS; do
            log=$WORK/wrk-$kind-c$c-r$r.log
            if [[ $kind == ours ]]; then
                before=$(head_seq)
            fi
            run_wrk "$kind" "$c" "$DURATION" "$log"
            check_crash "$kind" "round $r at $c connection(s)"
            rate=$(awk -v n="$R_requests" -v us="$R_duration_us" \
                'BEGIN { printf "%.1f", n / (us / 1e6) }')
            RATES["$kind/$c"]+="$rate "
            errs=$((R_err_connect + R_err_read + R_err_write + R_err_timeout))
            check=ok
            if ((R_non2xx != 0)); then
                check="non-2xx"
                fail "$kind c=$c round $r: $R_non2xx non-2xx responses"
            fi
            if ((errs != 0)); then
                check+=",socket-errors"
                echo "note: $kind c=$c round $r: socket errors connect=$R_err_connect read=$R_err_read write=$R_err_write timeout=$R_err_timeout"
            fi
            delta="-" diff="-"
            if [[ $kind == ours ]]; then
                after=$(head_seq)
                if ((before < 0 || after < 0)); then
                    check="seq?"
                    fail "ours c=$c round $r: could not read the head seq"
                else
                    delta=$((after - before))
                    diff=$((delta - R_requests))
                    # requests still in flight when wrk stops are stored
                    # but not counted by wrk: at most one per connection
                    if ((diff < 0 || diff > c + errs)); then
                        check="seq-mismatch"
                        fail "ours c=$c round $r: seq advanced $delta, wrk counted $R_requests requests"
                    fi
                fi
            fi
            printf '%-5s %-5s %-6s %12s %9s %9s %9s %8s %12s %12s %s\n' \
                "$r" "$c" "$kind" "$R_requests" "$rate" "$R_lat_p50_us" \
                "$R_lat_p99_us" "$R_non2xx" "$delta" "$diff" "$check"
        done
    done
done
echo

# batches: ours only (Nchan and the ceiling have no batch); the seq
# must advance by BATCH per request answered
BATCH_RATES=""
if ((BATCH > 1)); then
    c=${CONNECTIONS##* }
    echo "== batch runs: $BATCH events per POST, $c connections"
    printf '%-5s %12s %9s %9s %9s %8s %12s %s\n' \
        round requests events/s p50_us p99_us non2xx seq_delta check
    for ((r = 1; r <= ROUNDS; r++)); do
        before=$(head_seq)
        BENCH_BATCH=$BATCH run_wrk ours "$c" "$DURATION" \
            "$WORK/wrk-batch-c$c-r$r.log"
        CMD_BATCH="BENCH_BATCH=$BATCH ${CMD_WRK[ours/$c]}"
        check_crash ours "batch round $r"
        after=$(head_seq)
        rate=$(awk -v n="$R_requests" -v b="$BATCH" -v us="$R_duration_us" \
            'BEGIN { printf "%.1f", n * b / (us / 1e6) }')
        BATCH_RATES+="$rate "
        check=ok
        if ((R_non2xx != 0)); then
            check="non-2xx"
            fail "batch round $r: $R_non2xx non-2xx responses"
        fi
        delta=$((after - before))
        # in flight when wrk stops: stored, not counted, one per connection
        if ((before < 0 || after < 0 || delta < R_requests * BATCH
             || delta > (R_requests + c) * BATCH)); then
            check="seq-mismatch"
            fail "batch round $r: seq advanced $delta, wrk counted $R_requests requests of $BATCH"
        fi
        printf '%-5s %12s %9s %9s %9s %8s %12s %s\n' "$r" "$R_requests" \
            "$rate" "$R_lat_p50_us" "$R_lat_p99_us" "$R_non2xx" "$delta" "$check"
    done
    echo
fi

echo "== commands"
for c in $CONNECTIONS; do
    for kind in $KINDS; do
        printf '%-7s c=%s: %s\n' "$kind" "$c" "${CMD_WRK[$kind/$c]}"
    done
done
[[ -n ${CMD_BATCH:-} ]] && echo "batch:     $CMD_BATCH"
echo

echo "== ours: /events-status after the runs"
curl -sS --max-time 10 "http://127.0.0.1:$PORT_ours/events-status" || true
echo
echo

for kind in $KINDS; do
    if grep -qE '\[(warn|error|crit|alert|emerg)\]' "$WORK/$kind/error.log"; then
        echo "== $kind error log (warn and above)"
        grep -E '\[(warn|error|crit|alert|emerg)\]' "$WORK/$kind/error.log" | tail -20 | sed 's/^/    /'
        echo
    fi
done

echo "== ingest, events/s, median of $ROUNDS round(s) of ${DURATION}s, ${BENCH_BODY_BYTES}-byte events"
ratio() {
    awk -v o="$1" -v n="$2" 'BEGIN { if (n > 0) printf "%.2f", o / n; else print "-" }'
}
printf '%-12s %12s %12s %12s %11s %13s\n' connections ours nchan ceiling \
    ours/nchan ours/ceiling
for c in $CONNECTIONS; do
    # shellcheck disable=SC2086
    o=$(median ${RATES[ours/$c]})
    # shellcheck disable=SC2086
    n=$(median ${RATES[nchan/$c]})
    # shellcheck disable=SC2086
    x=$(median ${RATES[ceiling/$c]})
    printf '%-12s %12s %12s %12s %11s %13s\n' "$c" "$o" "$n" "$x" \
        "$(ratio "$o" "$n")" "$(ratio "$o" "$x")"
done
if [[ -n $BATCH_RATES ]]; then
    c=${CONNECTIONS##* }
    # shellcheck disable=SC2086
    b=$(median $BATCH_RATES)
    # shellcheck disable=SC2086
    o=$(median ${RATES[ours/$c]})
    echo "batch of $BATCH at $c connections: $b events/s, $(ratio "$b" "$o")x single-event ingest"
fi
echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)"

if ((FAILED)); then
    echo "RESULT: correctness checks FAILED"
    exit 1
fi
echo "RESULT: all correctness checks passed"
