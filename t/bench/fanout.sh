#!/usr/bin/env bash
#
# Fan-out benchmark: N Server-Sent Events subscribers on our events_stream
# and, side by side, on Nchan's eventsource subscriber (Debian's
# libnginx-mod-nchan), both under the same stock nginx, 2 workers each.
#
#   t/bench/fanout.sh
#
# For every subscriber count N, each server gets a fresh nginx; then,
# ours first and Nchan second:
#   1. worker memory with no subscriber (RssAnon: the zones are shared
#      memory and not counted there), N streams opened by one epoll client
#      (t/bench/fanout_client.c, compiled into the temp directory), one
#      probe event delivered to all of them, memory again: the difference
#      divided by N is the memory per idle subscriber;
#   2. for every rate: a separate publisher process POSTs ~300-byte events
#      at that rate (or, for "max", as fast as its connections get answers)
#      for BENCH_SECONDS; each event carries its send time, so every
#      delivery gives a publish -> receive latency; then the subscribers
#      drain (until every stream has every event, or nothing came for
#      BENCH_DRAIN_IDLE_MS, or BENCH_DRAIN_MAX seconds passed).
#
# Delivered events/s = unique events received over all streams, divided
# by the time from the phase start to the last event received (at least
# BENCH_SECONDS).  "missing" = published x streams - unique received at
# the end of the drain (lost, or still queued when the drain gave up);
# "gaps" = holes inside what a stream received (per publisher connection
# counter); "dup" = events a stream got twice; for ours "seq_gaps" and
# "seq_dups" check that seq goes up by exactly 1 on every stream;
# "foreign" = events of an earlier phase still arriving (each phase starts
# only once the workers are idle, so this should be 0); "lagging" = our
# status counter of streams cut or reset for falling behind.
#
# Environment:
#   T_MODULE             our module (default build/ngx_http_events_module.so)
#   NGINX_BIN            nginx binary (default /usr/sbin/nginx)
#   NCHAN_MODULE         Nchan (default /usr/lib/nginx/modules/ngx_nchan_module.so)
#   BENCH_SUBSCRIBERS    subscriber counts (default "100 1000 5000 10000";
#                        counts that the fd limit cannot hold are skipped)
#   BENCH_RATES          events/s, "max" for saturation (default "10 100 1000 max")
#   BENCH_SECONDS        seconds of publishing per rate (default 5)
#   BENCH_PUB_CONNS      publisher connections at "max" (default 4)
#   BENCH_RATE_CONNS     publisher connections at a fixed rate (default 64):
#                        the schedule is open loop, an event goes out on
#                        any idle connection, so slow answers do not lower
#                        the offered rate (up to this many in flight)
#   BENCH_BODY_BYTES     POST body size (default 300)
#   BENCH_PUB_GRACE      seconds the publisher waits after BENCH_SECONDS for
#                        answers still due (default 30); it sends nothing new
#   BENCH_DRAIN_IDLE_MS  drain ends after this long without an event (default 3000)
#   BENCH_DRAIN_MAX      drain ends after this many seconds at most (default 20)
#   BENCH_MAX_RSS_MB     abort a server's phases when its workers' RSS
#                        passes this (default 8000)
#   BENCH_SERVERS        "ours nchan" (default), or one of them
#   BENCH_FLOOR=0        skip nginx's own floor: a third nginx (ours' config)
#                        holding N requests whose headers never end, i.e.
#                        what any request in flight costs before a module
#                        sees it (default 1)
#   BENCH_PERF           "N:RATE" (e.g. "5000:max"): perf-record our workers
#                        during that phase and print the hottest symbols
#   BENCH_PERF_CALLGRAPH perf's --call-graph (default fp; nginx has no frame
#                        pointers, "dwarf" finds callers but costs more)
#   BENCH_ROUNDS         rounds per subscriber count (default 1): each round
#                        runs every rate on ours, then on Nchan, so that the
#                        servers alternate and noise falls on both; with 2 or
#                        more, a table gives per-round p99 ratios (ours /
#                        Nchan) with their median, min and max; the other
#                        tables show the last round
#   BENCH_KEEP=1         keep the temp directory (configs, logs, outputs)
#
# Exit status: 0 when the run completed and ours lost, skipped and
# duplicated nothing; 1 when a correctness check failed; 2 when the
# set-up failed.  Targets (ratios against Nchan) are reported, not
# enforced.
#
# Only 127.0.0.1 is ever used.

# R_*, PORT_* and DIR_* are assigned through printf -v
# shellcheck disable=SC2154

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
SUBSCRIBERS=${BENCH_SUBSCRIBERS:-"100 1000 5000 10000"}
RATES=${BENCH_RATES:-"10 100 1000 max"}
DURATION=${BENCH_SECONDS:-5}
PUB_CONNS=${BENCH_PUB_CONNS:-4}
RATE_CONNS=${BENCH_RATE_CONNS:-64}
BODY_BYTES=${BENCH_BODY_BYTES:-300}
PUB_GRACE=${BENCH_PUB_GRACE:-30}
DRAIN_IDLE_MS=${BENCH_DRAIN_IDLE_MS:-3000}
DRAIN_MAX=${BENCH_DRAIN_MAX:-20}
MAX_RSS_MB=${BENCH_MAX_RSS_MB:-8000}
SERVERS=${BENCH_SERVERS:-"ours nchan"}
PERF_AT=${BENCH_PERF:-}
FLOOR=${BENCH_FLOOR:-1}
PERF_CG=${BENCH_PERF_CALLGRAPH:-fp}
ROUNDS=${BENCH_ROUNDS:-1}
CLIENT_SRC=$HERE/fanout_client.c

for v in DURATION PUB_GRACE PUB_CONNS RATE_CONNS BODY_BYTES DRAIN_IDLE_MS DRAIN_MAX MAX_RSS_MB ROUNDS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a whole number > 0, not '${!v}'"
done
((PUB_CONNS <= 64 && RATE_CONNS <= 64)) || die "BENCH_PUB_CONNS and BENCH_RATE_CONNS must be at most 64"
for n in $SUBSCRIBERS; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "bad subscriber count '$n'"
done
for r in $RATES; do
    [[ $r =~ ^[1-9][0-9]*$ || $r == max ]] || die "bad rate '$r'"
done
for s in $SERVERS; do
    [[ $s == ours || $s == nchan ]] || die "bad server '$s'"
done
[[ -z $PERF_AT || $PERF_AT =~ ^[0-9]+:([0-9]+|max)$ ]] || die "BENCH_PERF must be N:RATE"

[[ -x $NGINX ]] || die "no nginx at $NGINX"
[[ -f $MODULE ]] || die "no module at $MODULE (run make first, or set T_MODULE)"
[[ -f $NCHAN ]] || die "no Nchan at $NCHAN (apt-get install libnginx-mod-nchan)"
[[ -f $CLIENT_SRC ]] || die "no $CLIENT_SRC"
command -v gcc >/dev/null || die "gcc is not installed"
command -v curl >/dev/null || die "curl is not installed"
if [[ -n $PERF_AT ]]; then
    command -v perf >/dev/null || die "BENCH_PERF needs perf (apt-get install linux-perf)"
fi

# the client holds N sockets, nginx up to N per worker
MAX_N=0
for n in $SUBSCRIBERS; do ((n > MAX_N)) && MAX_N=$n; done
NEED_FDS=$((MAX_N + 256))
if (($(ulimit -n) < NEED_FDS)); then
    if (($(ulimit -Hn) < NEED_FDS)); then
        ulimit -Hn "$NEED_FDS" 2>/dev/null || true
    fi
    ulimit -n "$(($(ulimit -Hn) < NEED_FDS ? $(ulimit -Hn) : NEED_FDS))" 2>/dev/null || true
fi
FD_LIMIT=$(ulimit -n)
FD_HARD=$(ulimit -Hn)
RUN_N=""
SKIPPED_N=""
for n in $SUBSCRIBERS; do
    if ((n + 256 <= FD_LIMIT)); then
        RUN_N+="$n "
    else
        SKIPPED_N+="$n "
    fi
done
[[ -n $RUN_N ]] || die "ulimit -n is $FD_LIMIT: no subscriber count fits"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/events-fanout.XXXXXX")
chmod 755 "$WORK"     # workers may run as nobody

# nginx runs a private copy of the module: a rebuild rewrites the .so in
# place, which kills the workers that have it mapped (SIGBUS/SIGSEGV)
MODULE_SRC=$MODULE
MODULE=$WORK/ngx_http_events_module.so
cp "$MODULE_SRC" "$MODULE"
chmod 644 "$MODULE"

CLIENT=$WORK/fanout_client
CC_CMD=(gcc -O2 -g -Wall -Wextra -o "$CLIENT" "$CLIENT_SRC")
"${CC_CMD[@]}" || die "the client did not compile"

STARTED=()            # prefixes of the nginx instances we started
BG_PIDS=()            # client, publisher, perf: whatever runs now
SUB_PID=""
CTL_OPEN=0

stop_all() {
    local rc=$? dir pid i
    trap - EXIT INT TERM
    if ((CTL_OPEN)); then
        echo QUIT >&7 2>/dev/null || true
        exec 7>&- || true
    fi
    for pid in "${BG_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${BG_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    quit_servers fanout.sh 100 "${STARTED[@]}"
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
# a write to the client's fifo after it is gone must fail, not kill us
trap '' PIPE

forget_pid() {
    local p keep=()
    for p in "${BG_PIDS[@]}"; do
        [[ $p == "$1" ]] || keep+=("$p")
    done
    BG_PIDS=("${keep[@]}")
}

# FREE_PORT: a port nothing on 127.0.0.1 accepts on right now; start()
# retries with another one if the port gets taken in between
USED_PORTS=" "
# write_conf DIR PORT KIND N
write_conf() {
    local dir=$1 port=$2 kind=$3 n=$4
    local t conns=$((n + 1024)) nofile
    # workers run as nobody and cannot go past the hard limit
    nofile=$((conns + 64))
    [[ $FD_HARD != unlimited ]] && ((nofile > FD_HARD)) && nofile=$FD_HARD
    mkdir -p "$dir"
    chmod 755 "$dir"
    {
        if [[ $kind == ours || $kind == floor ]]; then
            echo "load_module $MODULE;"
        else
            echo "load_module $NCHAN;"
        fi
        cat <<EOF
worker_processes 2;
worker_rlimit_nofile $nofile;
pid $dir/nginx.pid;
# info: our "stream cut" / "fell out of the window" are info messages
error_log $dir/error.log info;

events {
    # either worker may accept all of them
    worker_connections $conns;
}

http {
    access_log off;
EOF
        for t in client_body proxy fastcgi uwsgi scgi; do
            echo "    ${t}_temp_path $dir/${t}_temp;"
        done
        if [[ $kind == ours || $kind == floor ]]; then
            cat <<EOF

    events_zone bench 512m;

    server {
        listen 127.0.0.1:$port backlog=4096;
        client_body_buffer_size 16k;

        location /events {
            events_api bench;
        }

        location = /events/stream {
            events_stream bench;
        }

        location = /events-status {
            events_status bench;
        }
    }
}
EOF
        else
            cat <<EOF

    # the same 512 MB of shared memory as events_zone
    nchan_max_reserved_memory 512m;

    server {
        listen 127.0.0.1:$port backlog=4096;
        client_body_buffer_size 16k;

        location = /pub {
            nchan_publisher;
            nchan_channel_id bench;
            nchan_message_buffer_length 100000;
            nchan_message_timeout 1h;
        }

        # like ours without Last-Event-ID: from the next message on
        location = /sub {
            nchan_subscriber eventsource;
            nchan_subscriber_first_message newest;
            nchan_channel_id bench;
            nchan_message_buffer_length 100000;
            nchan_message_timeout 1h;
        }

        location = /nchan-status {
            nchan_stub_status;
        }
    }
}
EOF
        fi
    } > "$dir/nginx.conf"
}

declare -A CMD_START

# start KIND N -> sets PORT_<kind>, DIR_<kind>
start() {
    start_server fanout.sh "$1" "$WORK/$1-$2" "$1/$2" "$1" "$2"
}

# stop KIND: quit and wait (bounded) for the master to go
stop() {
    local kind=$1 dir pid i
    dir=DIR_$kind; dir=${!dir}
    pid=MASTER_$kind; pid=${!pid}
    "$NGINX" -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" -s quit 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    echo "fanout.sh: nginx $pid ($dir) ignored quit; terminating" >&2
    kill -TERM "$pid" 2>/dev/null || true
}

workers() {
    local pid=MASTER_$1
    ps -o pid= --ppid "${!pid}" | tr -d ' ' | tr '\n' ' '
}

# sum of the workers' RssAnon in kB
rss_anon() {
    local p sum=0 v
    for p in $(workers "$1"); do
        v=$(awk '/^RssAnon:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

# sum of the workers' utime + stime in clock ticks
cpu_ticks() {
    local p sum=0 s f
    for p in $(workers "$1"); do
        s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        s=${s##*) }
        read -r -a f <<< "$s"
        # after "pid (comm) ": state is f[0]; utime, stime are fields 14, 15
        sum=$((sum + f[11] + f[12]))
    done
    echo "$sum"
}
TCK=$(getconf CLK_TCK)

crashes() {
    local dir=DIR_$1
    grep -c 'exited on signal' "${!dir}/error.log" || true
}

# subscribers the server itself counts
server_subscribers() {
    local kind=$1 port body
    port=PORT_$kind; port=${!port}
    if [[ $kind == ours ]]; then
        body=$(curl -sS --max-time 10 "http://127.0.0.1:$port/events-status" || true)
        if [[ $body =~ \"streams\":\{\"subscribers\":([0-9]+) ]]; then
            echo -n "${BASH_REMATCH[1]}"
        else
            echo -n "?"
        fi
        # per worker
        echo -n " (per worker:"
        grep -o '"subscribers":[0-9]*,"streamed"' <<< "${body%%\"streams\"*}" \
            | sed 's/"subscribers":\([0-9]*\).*/ \1/' | tr -d '\n' || true
        echo ")"
    else
        body=$(curl -sS --max-time 10 "http://127.0.0.1:$port/nchan-status" || true)
        if [[ $body =~ subscribers:\ ([0-9]+) ]]; then
            echo "${BASH_REMATCH[1]}"
        else
            echo "?"
        fi
    fi
}

ours_lagging() {
    local body
    body=$(curl -sS --max-time 10 "http://127.0.0.1:$PORT_ours/events-status" || true)
    if [[ $body =~ \"streams\":\{[^}]*\"lagging\":([0-9]+) ]]; then
        echo "${BASH_REMATCH[1]}"
    else
        echo 0
    fi
}

ms() { awk -v u="$1" 'BEGIN { if (u == "-" || u < 0) print "-"; else printf "%.2f", u / 1000 }'; }

# num VALUE: VALUE, or 0 for "-"
num() { if [[ $1 =~ ^-?[0-9]+$ ]]; then echo "$1"; else echo 0; fi; }

# kv FIELD "k=v k=v ...": the value of FIELD
kv() {
    if [[ " $2 " =~ \ $1=([^ ]*)\  ]]; then
        echo "${BASH_REMATCH[1]}"
    else
        echo "-"
    fi
}

# ---------------------------------------------------------------------
# the subscriber client: commands through a fifo, results in a file

CTL=$WORK/ctl
mkfifo "$CTL"
SUB_OUT=""
SUB_RUN=0

# sub_start KIND N -> SUB_PID, READY line in SUB_READY
sub_start() {
    local kind=$1 n=$2 port path args i line
    port=PORT_$kind; port=${!port}
    if [[ $kind == ours ]]; then
        path=/events/stream
        args=(-s)
    elif [[ $kind == floor ]]; then
        path=/events/stream
        args=(-x)
    else
        path=/sub
        args=()
    fi
    SUB_RUN=$((SUB_RUN + 1))
    SUB_OUT=$WORK/sub-$kind-$n-$SUB_RUN.out
    # past one source address's ports: 127.0.0.1 to 127.0.0.K
    ((n > 20000)) && args+=(-A $(( (n + 19999) / 20000 )))
    SUB_CMD=("$CLIENT" sub -p "$port" -u "$path" -n "$n" "${args[@]}" -P 256 -T 120)
    CMD_SUB[$kind/$n]=$(printf '%q ' "${SUB_CMD[@]}")
    "${SUB_CMD[@]}" < "$CTL" > "$SUB_OUT" 2> "${SUB_OUT%.out}.err" &
    SUB_PID=$!
    BG_PIDS+=("$SUB_PID")
    exec 7> "$CTL"
    CTL_OPEN=1
    SUB_READY=""
    for ((i = 0; i < 1300; i++)); do       # 130 s; the client gives up at 120
        line=$(grep '^READY ' "$SUB_OUT" 2>/dev/null || true)
        if [[ -n $line ]]; then
            SUB_READY=$line
            return 0
        fi
        kill -0 "$SUB_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "fanout.sh: the subscriber client did not get ready:" >&2
    sed 's/^/    /' "$SUB_OUT" "${SUB_OUT%.out}.err" >&2
    exit 2
}

sub_stop() {
    local i
    if ((CTL_OPEN)); then
        echo QUIT >&7 || true
        exec 7>&-
        CTL_OPEN=0
    fi
    for ((i = 0; i < 100; i++)); do
        kill -0 "$SUB_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -TERM "$SUB_PID" 2>/dev/null || true
    wait "$SUB_PID" 2>/dev/null || true
    forget_pid "$SUB_PID"
    SUB_PID=""
}

# ask for the phase's end; wait (bounded) for its RESULT line -> R_LINE
# while watching the workers' memory; "" if aborted
PEAK_RSS=0
watch_rss() {
    local kind=$1 r
    r=$(rss_anon "$kind")
    ((r > PEAK_RSS)) && PEAK_RSS=$r
    if ((r > MAX_RSS_MB * 1024)); then
        return 1
    fi
    return 0
}

sub_end() {
    local kind=$1 phase=$2 expected=$3 i line
    echo "END $expected $DRAIN_IDLE_MS $((DRAIN_MAX * 1000))" >&7
    R_LINE=""
    for ((i = 0; i < (DRAIN_MAX + 20) * 10; i++)); do
        line=$(grep "^RESULT phase=$phase " "$SUB_OUT" 2>/dev/null || true)
        if [[ -n $line ]]; then
            R_LINE=$line
            return 0
        fi
        if ! watch_rss "$kind"; then
            ABORT="worker RSS over ${MAX_RSS_MB} MB while draining"
            return 1
        fi
        kill -0 "$SUB_PID" 2>/dev/null || break
        sleep 0.1
    done
    ABORT="no RESULT from the client"
    return 1
}

# publish KIND PHASE RATE SECS CONNS -> P_LINE
publish() {
    local kind=$1 phase=$2 rate=$3 secs=$4 conns=$5 port path extra=() pid i
    port=PORT_$kind; port=${!port}
    if [[ $kind == ours ]]; then path=/events; else path=/pub; extra=(-j); fi
    [[ $rate == max ]] && rate=0
    PUB_CMD=("$CLIENT" pub -p "$port" -u "$path" -r "$rate" -d "$secs" -c "$conns" \
        -g "$phase" -b "$BODY_BYTES" -G "$PUB_GRACE" "${extra[@]}")
    "${PUB_CMD[@]}" > "$WORK/pub-$phase.out" 2> "$WORK/pub-$phase.err" &
    pid=$!
    BG_PIDS+=("$pid")
    for ((i = 0; i < (secs + PUB_GRACE + 10) * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        if ! watch_rss "$kind"; then
            ABORT="worker RSS over ${MAX_RSS_MB} MB while publishing"
            kill -TERM "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
    P_LINE=$(grep '^PUB ' "$WORK/pub-$phase.out" || true)
}

# settle KIND: wait (at most 30 s) until the workers are idle (under 5% of
# a CPU over half a second), so that no phase pays for the last one's
# backlog; SETTLED = seconds waited
settle() {
    local kind=$1 i a b
    SETTLED=0
    for ((i = 1; i <= 60; i++)); do
        a=$(cpu_ticks "$kind")
        sleep 0.5
        b=$(cpu_ticks "$kind")
        if (((b - a) * 40 <= TCK)); then
            SETTLED=$(awk -v i="$i" 'BEGIN { printf "%.1f", i / 2 }')
            return 0
        fi
    done
    SETTLED=30+
}

declare -A CMD_SUB CMD_PUB RES MEM NOTES
PHASE=0
FAILED=0
fail() {
    echo "FAIL: $*"
    FAILED=1
}

# ---------------------------------------------------------------------

echo "== machine"
echo "nproc: $(nproc)"
echo "cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown)"
echo "memory: $(awk '/^MemTotal/ { printf "%.1f GB", $2 / 1048576 }' /proc/meminfo)"
echo "kernel: $(uname -srm)"
echo "nginx: $("$NGINX" -V 2>&1 | head -1)"
echo "nchan: $(dpkg-query -W -f='${Package} ${Version}' libnginx-mod-nchan 2>/dev/null || echo "$NCHAN")"
echo "gcc: $(gcc --version | head -1)"
echo "module: $MODULE_SRC (built $(stat -c '%y' "$MODULE_SRC" | cut -d. -f1), sha256 $(sha256sum "$MODULE" | cut -c1-16), run from a copy)"
echo "checkout: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src config 2>/dev/null || echo " + uncommitted changes in src/")"
echo "ulimit -n: $FD_LIMIT; subscriber counts run: $RUN_N${SKIPPED_N:+ (skipped, over the fd limit: $SKIPPED_N)}"
echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "busiest processes at start (other load skews every number below):"
ps -eo pcpu=,comm= --sort=-pcpu | head -4 | sed 's/^/    /'
echo "client: ${CC_CMD[*]}"
echo "settings: rates '$RATES', ${DURATION}s each, publisher connections: $RATE_CONNS at a fixed rate, $PUB_CONNS at max; ${BODY_BYTES}-byte bodies, drain: ${DRAIN_IDLE_MS} ms idle or ${DRAIN_MAX}s at most"
echo

declare -A FLOOR_B ROUND_P99 ROUND_ACC PROBE
for n in $RUN_N; do
    if [[ $FLOOR == 1 ]]; then
        # nginx's own cost of a request in flight, before any module runs
        start floor "$n"
        curl -sS -o /dev/null --max-time 10 -X POST -H 'Content-Type: application/json' \
            --data-binary '{"type":"bench.warmup"}' "http://127.0.0.1:$PORT_floor/events" || true
        sleep 0.5
        fb=$(rss_anon floor)
        sub_start floor "$n"
        sleep 1
        fa=$(rss_anon floor)
        fo=$(kv open "$SUB_READY")
        sub_stop
        stop floor
        if ((fo > 0)); then FLOOR_B[$n]=$(( (fa - fb) * 1024 / fo )); else FLOOR_B[$n]=-; fi
        echo "== nginx floor, N=$n: ${CMD_START[floor/$n]}"
        echo "$fo requests whose headers never end ($(printf '%q ' "${SUB_CMD[@]}")): worker RssAnon $fb kB -> $fa kB, ${FLOOR_B[$n]} B per request"
        echo
    fi

    for kind in $SERVERS; do
        start "$kind" "$n"
    done

    # the no-subscriber baseline of every server before any stream
    declare -A BASE=()
    for kind in $SERVERS; do
        if [[ $kind == ours ]]; then path=/events; port=$PORT_ours; else path=/pub; port=$PORT_nchan; fi
        status=$(curl -sS -o "$WORK/probe.out" -w '%{http_code}' --max-time 10 \
            -X POST -H 'Content-Type: application/json' -H 'Accept: application/json' \
            --data-binary '{"type":"bench.warmup","payload":{"data":{"probe":true}}}' \
            "http://127.0.0.1:$port$path") || status=000
        if [[ $status != 2?? ]]; then
            echo "fanout.sh: probe POST to $kind answered $status:" >&2
            cat "$WORK/probe.out" >&2
            exit 2
        fi
    done
    sleep 0.5
    for kind in $SERVERS; do
        BASE[$kind]=$(rss_anon "$kind")
    done

    for ((round = 1; round <= ROUNDS; round++)); do
    for kind in $SERVERS; do
        echo "== $kind, N=$n, round $round of $ROUNDS: ${CMD_START[$kind/$n]}"
        sub_start "$kind" "$n"
        opened=$(kv open "$SUB_READY")
        echo "streams: $SUB_READY; the server counts: $(server_subscribers "$kind")"
        if ((opened < n)); then
            fail "$kind N=$n: only $opened of $n streams opened"
            sed 's/^/    /' "${SUB_OUT%.out}.err" | sort | uniq -c | head -5
        fi
        sleep 1
        rss_conn=$(rss_anon "$kind")

        # one event to every stream: the way in works, and the streams
        # have been through a delivery before they are measured idle
        PHASE=$((PHASE + 1))
        echo "PHASE $PHASE" >&7
        ABORT=""
        publish "$kind" "$PHASE" 1 1 1
        sub_end "$kind" "$PHASE" 1 || true
        if [[ -z $R_LINE || $(kv missing "$R_LINE") != 0 ]]; then
            fail "$kind N=$n: the probe event did not reach every stream: ${R_LINE:-$ABORT}"
        else
            # the first event to every idle stream: how long the last waited
            PROBE[$kind/$n]="p50=$(ms "$(kv lat_p50_us "$R_LINE")") max=$(ms "$(kv lat_max_us "$R_LINE")")"
            echo "probe event to $opened idle streams: publish -> receive p50 $(kv p50 "${PROBE[$kind/$n]}") ms, last stream $(kv max "${PROBE[$kind/$n]}") ms"
        fi
        sleep 1
        rss_idle=$(rss_anon "$kind")
        MEM[$kind/$n]="base=${BASE[$kind]} conn=$rss_conn idle=$rss_idle open=$opened"
        printf 'worker RssAnon: %s kB with none, %s kB with %s streams, %s kB after one event; per stream: %s B (%s B before the event)\n' \
            "${BASE[$kind]}" "$rss_conn" "$opened" "$rss_idle" \
            "$(( opened ? (rss_idle - BASE[$kind]) * 1024 / opened : 0 ))" \
            "$(( opened ? (rss_conn - BASE[$kind]) * 1024 / opened : 0 ))"

        printf '%-6s %8s %7s %9s %8s %8s %8s %8s %9s %5s %4s %6s %6s %7s %6s %7s %7s %7s %7s %s\n' \
            rate published pub/s deliv/s p50_ms p90_ms p99_ms max_ms missing gaps dup seqgap closed lagging foreign srv_cpu cli_cpu us/1k peakMB end
        for rate in $RATES; do
            settle "$kind"
            if [[ $SETTLED != 0.5 ]]; then
                NOTES[$kind/$n]+="$rate: workers busy before the phase, waited ${SETTLED}s. "
            fi
            PHASE=$((PHASE + 1))
            ABORT=""
            PEAK_RSS=0
            lag0=0
            [[ $kind == ours ]] && lag0=$(ours_lagging)
            cpu0=$(cpu_ticks "$kind")
            perf_pid=""
            if [[ $kind == ours && $PERF_AT == "$n:$rate" ]]; then
                PERF_DATA=$WORK/perf-$kind-$n-$rate.data
                PERF_CMD=(perf record -F 999 --call-graph "$PERF_CG" -o "$PERF_DATA" -p "$(workers "$kind" | tr ' ' ',' | sed 's/,$//')")
                "${PERF_CMD[@]}" > "$WORK/perf.log" 2>&1 &
                perf_pid=$!
                BG_PIDS+=("$perf_pid")
            fi
            echo "PHASE $PHASE" >&7
            if [[ $rate == max ]]; then pc=$PUB_CONNS; else pc=$RATE_CONNS; fi
            publish "$kind" "$PHASE" "$rate" "$DURATION" "$pc"
            CMD_PUB[$kind/$n/$rate]=$(printf '%q ' "${PUB_CMD[@]}")
            ok=$(kv ok "$P_LINE")
            [[ $ok == - ]] && ok=0
            R_LINE=""
            if [[ -z $ABORT ]]; then
                sub_end "$kind" "$PHASE" "$ok" || true
            fi
            if [[ -n $perf_pid ]]; then
                kill -INT "$perf_pid" 2>/dev/null || true
                wait "$perf_pid" 2>/dev/null || true
                forget_pid "$perf_pid"
            fi
            cpu1=$(cpu_ticks "$kind")
            lag1=0
            [[ $kind == ours ]] && lag1=$(ours_lagging)
            srv_cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v t="$TCK" 'BEGIN { printf "%.2f", (b - a) / t }')

            if [[ -z $R_LINE ]]; then
                echo "$rate: ABORTED: $ABORT (peak worker RssAnon ${PEAK_RSS} kB); $P_LINE"
                RES[$kind/$n/$rate]="aborted=1"
                NOTES[$kind/$n]+="$rate: aborted ($ABORT). "
                # drop the backlog with the streams, then start over
                kill -TERM "$SUB_PID" 2>/dev/null || true
                sub_stop
                sleep 2
                sub_start "$kind" "$n"
                echo "       streams again: $SUB_READY; worker RssAnon now $(rss_anon "$kind") kB"
                continue
            fi

            rx=$(kv rx "$R_LINE")
            dup=$(kv dup "$R_LINE")
            last=$(kv last_rx_us "$R_LINE")
            secs=$(awk -v l="$last" -v d="$DURATION" 'BEGIN { s = l / 1e6; if (s < d) s = d; print s }')
            deliv=$(awk -v r="$rx" -v d="$dup" -v s="$secs" 'BEGIN { printf "%.0f", (r - d) / s }')
            pubrate=$(awk -v o="$ok" -v e="$(kv elapsed_us "$P_LINE")" 'BEGIN { if (e > 0) printf "%.0f", o / (e / 1e6); else print 0 }')
            us_per_k=$(awk -v c="$srv_cpu" -v r="$rx" -v d="$dup" 'BEGIN { if (r - d > 0) printf "%.1f", c * 1e9 / (r - d); else print "-" }')
            cli_cpu=$(awk -v c="$(kv cpu_us "$R_LINE")" 'BEGIN { printf "%.2f", c / 1e6 }')
            p50=$(ms "$(kv lat_p50_us "$R_LINE")")
            p90=$(ms "$(kv lat_p90_us "$R_LINE")")
            p99=$(ms "$(kv lat_p99_us "$R_LINE")")
            pmax=$(ms "$(kv lat_max_us "$R_LINE")")
            missing=$(kv missing "$R_LINE")
            gaps=$(kv gaps "$R_LINE")
            seqgap=$(( $(num "$(kv seq_gaps "$R_LINE")") + $(num "$(kv seq_dups "$R_LINE")") ))
            [[ $kind == ours ]] || seqgap=-
            closed=$(kv closed "$R_LINE")
            lagging=$((lag1 - lag0))
            [[ $kind == ours ]] || lagging=-
            RES[$kind/$n/$rate]="deliv=$deliv p50=$p50 p99=$p99 missing=$missing gaps=$gaps dup=$dup seqgap=$seqgap closed=$closed published=$ok srv_cpu=$srv_cpu us_per_k=$us_per_k peak_rss=$PEAK_RSS"
            ROUND_P99[$kind/$n/$rate/$round]=$p99
            ROUND_ACC[$kind/$n/$rate/$round]=$ok
            printf '%-6s %8s %7s %9s %8s %8s %8s %8s %9s %5s %4s %6s %6s %7s %6s %7s %7s %7s %7s %s\n' \
                "$rate" "$ok" "$pubrate" "$deliv" "$p50" "$p90" "$p99" "$pmax" \
                "$missing" "$gaps" "$dup" "$seqgap" "$closed" "$lagging" "$(kv foreign "$R_LINE")" \
                "$srv_cpu" "$cli_cpu" "$us_per_k" "$((PEAK_RSS / 1024))" \
                "$(kv why "$R_LINE") $(awk -v u="$(kv wait_us "$R_LINE")" 'BEGIN { printf "+%.1fs", u / 1e6 }')"
            echo "    pub: $P_LINE" >> "$WORK/details.log"
            echo "    sub: $R_LINE" >> "$WORK/details.log"
            if [[ -z $P_LINE ]]; then
                NOTES[$kind/$n]+="$rate: the publisher printed nothing ($(head -c 200 "$WORK/pub-$PHASE.err")). "
            elif (($(num "$(kv non2xx "$P_LINE")") + $(num "$(kv errors "$P_LINE")") > 0)); then
                NOTES[$kind/$n]+="$rate: publisher non2xx=$(kv non2xx "$P_LINE") errors=$(kv errors "$P_LINE") (first bad status $(kv first_bad_status "$P_LINE")). "
            fi
            if (($(num "$(kv unsent "$P_LINE")") + $(num "$(kv abandoned "$P_LINE")") > 0)); then
                NOTES[$kind/$n]+="$rate: the publisher could not send $(kv unsent "$P_LINE") scheduled events in time and gave up waiting for $(kv abandoned "$P_LINE") answers. "
            fi
            if (($(num "$(kv resets "$R_LINE")") + $(num "$(kv bad "$R_LINE")") > 0)); then
                NOTES[$kind/$n]+="$rate: resets=$(kv resets "$R_LINE") unparsable=$(kv bad "$R_LINE"). "
            fi
            if (($(num "$(kv late "$P_LINE")") > 0)) && [[ $rate != max ]]; then
                NOTES[$kind/$n]+="$rate: $(kv late "$P_LINE") events sent >1 ms late (max $(kv max_late_us "$P_LINE") us). "
            fi
            if [[ $kind == ours ]]; then
                if ((dup != 0 || seqgap != 0 || gaps != 0)); then
                    fail "ours N=$n rate=$rate: dup=$dup gaps=$gaps seq gaps+dups=$seqgap"
                fi
                if ((missing != 0)); then
                    NOTES[$kind/$n]+="$rate: $missing deliveries missing at the end of the drain ($(kv why "$R_LINE")). "
                fi
            fi
            if [[ -n $perf_pid ]]; then
                echo "    perf: ${PERF_CMD[*]}"
                perf report -i "$PERF_DATA" --no-children --sort dso,symbol \
                    --percent-limit 0.7 --stdio -g none 2>/dev/null \
                    | awk '/^ +[0-9.]+%/ { printf "    %7s  %-28s %s\n", $1, $2, $4 }' \
                    | head -40 > "$WORK/perf-top.txt" || true
                echo "    perf report -i $PERF_DATA --no-children --sort dso,symbol --stdio" >> "$WORK/perf-top.txt"
                if [[ ${BENCH_KEEP:-0} != 1 ]]; then
                    echo "    (BENCH_KEEP=1 keeps the perf data)" >> "$WORK/perf-top.txt"
                fi
                PERF_TOP=$WORK/perf-top.txt
            fi
            if (($(crashes "$kind") > 0)); then
                fail "$kind N=$n rate=$rate: nginx worker(s) crashed"
                grep -E 'exited on signal' "$WORK/$kind-$n/error.log" | head -3 || true
            fi
        done
        [[ -n $SUB_PID ]] && sub_stop
        echo
    done
    done

    for kind in $SERVERS; do
        stop "$kind"
    done
done

# ---------------------------------------------------------------------

echo "== commands"
for n in $RUN_N; do
    for kind in $SERVERS; do
        echo "$kind N=$n nginx:       ${CMD_START[$kind/$n]}"
        echo "$kind N=$n subscribers: ${CMD_SUB[$kind/$n]:-}  (stdin: PHASE id / END expected idle_ms max_ms / QUIT)"
        for rate in $RATES; do
            [[ -n ${CMD_PUB[$kind/$n/$rate]:-} ]] && echo "$kind N=$n publisher:   ${CMD_PUB[$kind/$n/$rate]}"
        done
    done
done
echo "configs: ours as $WORK/ours-N/nginx.conf, Nchan as $WORK/nchan-N/nginx.conf; the first of each:"
for kind in $SERVERS; do
    first=${RUN_N%% *}
    echo "-- $kind (N=$first)"
    sed 's/^/    /' "$WORK/$kind-$first/nginx.conf"
done
echo

for n in $RUN_N; do
    for kind in $SERVERS; do
        log=$WORK/$kind-$n/error.log
        echo "== $kind N=$n error.log: $(grep -c '' "$log") lines;" \
            "by level: $(grep -oE '\[(debug|info|notice|warn|error|crit|alert|emerg)\]' "$log" | sort | uniq -c | awk '{ printf "%s %s, ", $2, $1 }')"
        # messages without time, pid, connection and client details
        grep -E '\[(info|warn|error|crit|alert|emerg)\]' "$log" \
            | sed -E 's/^[0-9\/]+ [0-9:]+ //; s/[0-9]+#[0-9]+: (\*[0-9]+ )?//; s/, client: .*//; s/[0-9]+ bytes/N bytes/g' \
            | sort | uniq -c | sort -rn | head -8 | sed 's/^/    /' || true
        [[ -n ${NOTES[$kind/$n]:-} ]] && echo "    notes: ${NOTES[$kind/$n]}"
    done
done
echo

if [[ -n ${PERF_TOP:-} ]]; then
    echo "== perf: ours' workers at N:rate = $PERF_AT (self time, by dso and symbol)"
    cat "$PERF_TOP"
    echo
fi

g() { kv "$2" "${RES[$1]:-}"; }
ratio() {
    awk -v o="$1" -v c="$2" 'BEGIN { if (o == "-" || c == "-" || c + 0 == 0) print "-"; else printf "%.2f", o / c }'
}

# accepted: events the server answered 2xx; "*" when it took fewer than 90%
# of the events the schedule offered (the publisher ran out of connections
# because answers came late: that server was overloaded)
acc() {
    local p
    p=$(g "$1" published)
    if [[ $p != - && $2 != max ]] && ((p * 10 < 9 * $2 * DURATION)); then
        echo "$p*"
    else
        echo "$p"
    fi
}
echo "== fan-out, $DURATION s per rate, ${BODY_BYTES}-byte events, 2 workers each"
printf '%-6s %-5s | %7s %7s | %10s %10s %6s | %8s %8s | %8s %8s %6s | %7s %7s | %7s %7s\n' \
    N rate "acc us" "acc nch" "deliv/s us" "deliv/s nch" ratio "p50 us" "p50 nch" "p99 us" "p99 nch" ratio \
    "miss us" "miss nch" "us/1k" "nch/1k"
for n in $RUN_N; do
    for rate in $RATES; do
        o=ours/$n/$rate c=nchan/$n/$rate
        printf '%-6s %-5s | %7s %7s | %10s %10s %6s | %8s %8s | %8s %8s %6s | %7s %7s | %7s %7s\n' \
            "$n" "$rate" "$(acc "$o" "$rate")" "$(acc "$c" "$rate")" \
            "$(g "$o" deliv)" "$(g "$c" deliv)" "$(ratio "$(g "$o" deliv)" "$(g "$c" deliv)")" \
            "$(g "$o" p50)" "$(g "$c" p50)" "$(g "$o" p99)" "$(g "$c" p99)" \
            "$(ratio "$(g "$o" p99)" "$(g "$c" p99)")" \
            "$(g "$o" missing)" "$(g "$c" missing)" "$(g "$o" us_per_k)" "$(g "$c" us_per_k)"
    done
done
echo "(acc = events accepted (2xx) in the phase, * = under 90% of the offered rate x $DURATION s:"
echo " the server answered the publisher too slowly, i.e. it was overloaded, and its latencies"
echo " are queueing delays of a different amount of work than the other server's;"
echo " latency in ms, publish -> receive; miss = deliveries not received by the end of the drain;"
echo " us/1k = worker CPU microseconds per 1000 deliveries, i.e. ns per delivery)"
echo

# per round: the p99 ratio of the two servers in that round, then the
# median and spread of those ratios (one noisy round moves the median
# little, and the spread says how far to trust it)
if ((ROUNDS > 1)) && [[ $SERVERS == "ours nchan" ]]; then
    echo "== publish -> receive p99 over $ROUNDS alternating rounds (ms; ratio = ours / Nchan per round)"
    printf '%-6s %-5s | %-40s | %-40s | %6s %6s %6s %s\n' N rate "p99 ours by round" \
        "p99 nchan by round" median min max note
    for n in $RUN_N; do
        for rate in $RATES; do
            [[ $rate == max ]] && continue
            os="" cs="" rs="" note=""
            for ((round = 1; round <= ROUNDS; round++)); do
                o=${ROUND_P99[ours/$n/$rate/$round]:--}
                c=${ROUND_P99[nchan/$n/$rate/$round]:--}
                os+="$o " cs+="$c "
                r=$(ratio "$o" "$c")
                [[ $r != - ]] && rs+="$r "
                for k in ours nchan; do
                    a=${ROUND_ACC[$k/$n/$rate/$round]:--}
                    if [[ $a != - ]] && ((a * 10 < 9 * rate * DURATION)); then
                        note="overloaded in some round (accepted < 90% of offered)"
                    fi
                done
            done
            if [[ -n $rs ]]; then
                # shellcheck disable=SC2086
                read -r med lo hi < <(printf '%s\n' $rs | sort -g | awk '
                    { v[NR] = $1 }
                    END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
                          printf "%.2f %.2f %.2f\n", m, v[1], v[NR] }')
            else
                med=- lo=- hi=-
            fi
            printf '%-6s %-5s | %-40s | %-40s | %6s %6s %6s %s\n' "$n" "$rate" \
                "$os" "$cs" "$med" "$lo" "$hi" "$note"
        done
    done
    echo
fi

echo "== worker memory per idle subscriber (RssAnon of both workers, after one event)"
printf '%-6s | %10s %10s %6s | %14s %14s | %s\n' N "B/sub us" "B/sub nch" ratio "at connect us" "at connect nch" "nginx floor B/request"
declare -A PERSUB
for n in $RUN_N; do
    row=()
    for kind in ours nchan; do
        m=${MEM[$kind/$n]:-}
        if [[ -z $m ]]; then
            PERSUB[$kind/$n]=- ; row+=(- -); continue
        fi
        b=$(kv base "$m") c=$(kv conn "$m") i=$(kv idle "$m") op=$(kv open "$m")
        if ((op > 0)); then
            PERSUB[$kind/$n]=$(( (i - b) * 1024 / op ))
            row+=("${PERSUB[$kind/$n]}" "$(( (c - b) * 1024 / op ))")
        else
            PERSUB[$kind/$n]=- ; row+=(- -)
        fi
    done
    printf '%-6s | %10s %10s %6s | %14s %14s | %s\n' "$n" "${row[0]}" "${row[2]}" \
        "$(ratio "${row[0]}" "${row[2]}")" "${row[1]}" "${row[3]}" "${FLOOR_B[$n]:--}"
done
echo "(nginx floor: the same nginx and config as ours holding N requests whose headers"
echo " never end; what every request in flight costs before any module sees it)"
echo

met() { if [[ $1 == 1 ]]; then echo "MET"; elif [[ $1 == 0 ]]; then echo "NOT MET"; else echo "n/a"; fi; }
echo "== targets"
for n in $RUN_N; do
    o=$(g "ours/$n/max" deliv) c=$(g "nchan/$n/max" deliv)
    v=$(awk -v o="$o" -v c="$c" 'BEGIN { if (o == "-" || c == "-" || c + 0 == 0) print "-"; else print (o >= 2 * c) ? 1 : 0 }')
    echo "saturation deliveries/s >= 2x Nchan, N=$n: ours $o, nchan $c, ratio $(ratio "$o" "$c"): $(met "$v")"
done
for n in 1000 5000; do
    [[ " $RUN_N " == *" $n "* ]] || continue
    for rate in $RATES; do
        o=$(g "ours/$n/$rate" p99) c=$(g "nchan/$n/$rate" p99)
        v=$(awk -v o="$o" -v c="$c" 'BEGIN { if (o == "-" || c == "-" || c + 0 == 0) print "-"; else print (o <= 0.7 * c) ? 1 : 0 }')
        ov=""
        [[ $(acc "ours/$n/$rate" "$rate") == *\* ]] && ov+=", ours overloaded"
        [[ $(acc "nchan/$n/$rate" "$rate") == *\* ]] && ov+=", nchan overloaded"
        [[ $rate == max ]] && ov+=", saturation: queueing delay"
        echo "p99 <= 0.7x Nchan's, N=$n rate=$rate: ours $o ms, nchan $c ms, ratio $(ratio "$o" "$c"): $(met "$v")${ov:+ (${ov#, })}"
    done
done
for n in $RUN_N; do
    p=${PERSUB[ours/$n]:-} f=${FLOOR_B[$n]:-}
    v=$(awk -v p="$p" -v f="$f" 'BEGIN { if (p == "-" || p == "" || f == "-" || f == "") print "-"; else print (p <= 1.05 * f) ? 1 : 0 }')
    echo "worker memory per idle subscriber within 5% of nginx's floor, N=$n: ours $p B, floor ${f:--} B: $(met "$v")"
done
echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "details (every PUB and RESULT line): $WORK/details.log$([[ ${BENCH_KEEP:-0} == 1 ]] || echo " (BENCH_KEEP=1 keeps it)")"

if ((FAILED)); then
    echo "RESULT: correctness checks FAILED"
    exit 1
fi
echo "RESULT: all correctness checks passed"
