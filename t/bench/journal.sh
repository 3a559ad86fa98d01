#!/usr/bin/env bash
#
# What the journal costs at ingest: wrk POSTing one ~300-byte event per
# request (t/bench/post.lua) into four nginx instances that differ only
# in their journal: none, fsync=off, fsync=interval (1s), fsync=always.
# Rounds alternate the four, so noise hits all of them; the result is
# each mode's events/s as a ratio to "none", and for fsync=always how
# many events each fdatasync() carried (the group commit), from the
# zone's "fsyncs" counter and its seqs.
#
#   t/bench/journal.sh           (make bench-journal)
#
# Environment:
#   T_MODULE          our module (default: build/ngx_http_events_module.so)
#   NGINX_BIN         nginx binary (default /usr/sbin/nginx)
#   BENCH_SECONDS     seconds per wrk run (default 5)
#   BENCH_ROUNDS      rounds (default 2)
#   BENCH_CONNECTIONS connection counts (default "1 16")
#   BENCH_MODES       journal modes to run (default "none off interval
#                     always"); the ratios need "none"
#   JOURNAL_DIR       where the journals go (default: the temp directory,
#                     under $TMPDIR); the disk under it is what is measured
#   BENCH_KEEP=1      keep the temp directory
#
# Exit status: 0 when every check passed (no non-2xx, seqs match the
# requests), 1 when one failed, 2 when the setup failed.  127.0.0.1 only.

# R_*, PORT_* and DIR_* are assigned through printf -v
# shellcheck disable=SC2154

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
DURATION=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-2}
CONNECTIONS=${BENCH_CONNECTIONS:-"1 16"}
export BENCH_BODY_BYTES=300
export BENCH_STRICT=1
LUA=$HERE/post.lua
MODES=${BENCH_MODES:-"none off interval always"}

[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECONDS must be > 0"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be > 0"
[[ -x $NGINX ]] || die "no nginx at $NGINX"
[[ -f $MODULE ]] || die "no module at $MODULE (run make first)"
command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk)"
command -v curl >/dev/null || die "curl is not installed"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/events-journal-bench.XXXXXX")
chmod 755 "$WORK"
JDIR=${JOURNAL_DIR:-$WORK}

# a private copy: a rebuild rewrites the .so in place
MODULE_SRC=$MODULE
MODULE=$WORK/ngx_http_events_module.so
cp "$MODULE_SRC" "$MODULE"
chmod 644 "$MODULE"

STARTED=()
WRK_PID=""
USED_PORTS=" "
declare -A CMD_START

stop_all() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $WRK_PID ]]; then
        kill -TERM "$WRK_PID" 2>/dev/null || true
        wait "$WRK_PID" 2>/dev/null || true
    fi
    quit_servers journal.sh 50 "${STARTED[@]}"
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        echo "kept: $WORK"
    else
        rm -rf "$WORK"
        [[ $JDIR == "$WORK" ]] || rm -rf "$JDIR"/events-journal-bench-*
    fi
    exit "$rc"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# write_conf DIR PORT MODE
write_conf() {
    local dir=$1 port=$2 mode=$3 t journal=""
    mkdir -p "$dir"
    chmod 755 "$dir"
    if [[ $mode != none ]]; then
        journal="events_journal bench $JDIR/events-journal-bench-$$-$mode fsync=$mode;"
    fi
    {
        cat <<EOF
load_module $MODULE;
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
        cat <<EOF

    events_zone bench 64m;
    $journal

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
    } > "$dir/nginx.conf"
}

# head_seq PORT -> "SEQ FSYNCS" (-1 when unknown)
head_seq() {
    local body seq=-1 fsyncs=-1
    body=$(curl -sS --max-time 10 "http://127.0.0.1:$1/events-status") \
        || { echo "-1 -1"; return; }
    if [[ $body =~ \"newestSeq\":([0-9]+) ]]; then
        seq=${BASH_REMATCH[1]}
    fi
    if [[ $body =~ \"fsyncs\":([0-9]+) ]]; then
        fsyncs=${BASH_REMATCH[1]}
    fi
    echo "$seq $fsyncs"
}

# run_wrk PORT CONNS SECONDS LOGFILE -> sets R_requests, R_duration_us, ...
run_wrk() {
    local port=$1 c=$2 secs=$3 log=$4 t=2 line kv
    ((c == 1)) && t=1
    WRK_CMD=(wrk "-t$t" "-c$c" "-d${secs}s" -s "$LUA"
        "http://127.0.0.1:$port/events")
    "${WRK_CMD[@]}" > "$log" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || { WRK_PID=""; cat "$log" >&2; exit 2; }
    WRK_PID=""
    line=$(grep '^WRK_RESULT ' "$log" | tail -1)
    [[ -n $line ]] || { cat "$log" >&2; exit 2; }
    for kv in ${line#WRK_RESULT }; do
        printf -v "R_${kv%%=*}" '%s' "${kv#*=}"
    done
}

median() {
    printf '%s\n' "$@" | sort -g | awk '
        { v[NR] = $1 }
        END { if (NR % 2) print v[(NR + 1) / 2];
              else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

for mode in $MODES; do
    start_server journal.sh "$mode" "$WORK/$mode" "$mode" "$mode"
done

echo "== machine"
echo "nproc: $(nproc), kernel: $(uname -srm)"
echo "journal filesystem: $(df -T "$JDIR" | awk 'NR == 2 { print $2 " on " $1 }')"
echo "module: $MODULE_SRC, checkout $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
# the config of the last mode (fsync=always's by default)
last=${MODES##* }
conf_dir=DIR_$last
echo "-- ${!conf_dir}/nginx.conf"
sed 's/^/    /' "${!conf_dir}/nginx.conf"
echo

FAILED=0
declare -A RATES PER_FSYNC
printf '%-5s %-5s %-9s %10s %10s %9s %9s %7s %9s %s\n' \
    round conns journal requests events/s p50_us p99_us non2xx ev/fsync check
for ((r = 1; r <= ROUNDS; r++)); do
    for c in $CONNECTIONS; do
        for mode in $MODES; do
            port_var=PORT_$mode
            port=${!port_var}
            read -r before fs_before < <(head_seq "$port")
            run_wrk "$port" "$c" "$DURATION" "$WORK/wrk-$mode-c$c-r$r.log"
            read -r after fs_after < <(head_seq "$port")
            rate=$(awk -v n="$R_requests" -v us="$R_duration_us" \
                'BEGIN { printf "%.1f", n / (us / 1e6) }')
            RATES["$mode/$c"]+="$rate "
            check=ok
            delta=$((after - before - R_requests))
            if ((R_non2xx != 0 || before < 0 || after < 0
                 || delta < 0 || delta > c))
            then
                check="FAIL (non2xx $R_non2xx, seq delta - requests $delta)"
                FAILED=1
            fi
            # events per fsync: how many requests each group commit carried
            per=-
            if [[ $mode != none ]] && ((fs_after > fs_before && before >= 0))
            then
                per=$(awk -v e=$((after - before)) \
                    -v f=$((fs_after - fs_before)) \
                    'BEGIN { printf "%.1f", e / f }')
                PER_FSYNC["$mode/$c"]+="$per "
            fi
            printf '%-5s %-5s %-9s %10s %10s %9s %9s %7s %9s %s\n' \
                "$r" "$c" "$mode" "$R_requests" "$rate" "$R_lat_p50_us" \
                "$R_lat_p99_us" "$R_non2xx" "$per" "$check"
        done
    done
done
echo
if [[ " $MODES " == *" always "* ]]; then
    echo "-- fsync=always status after the runs"
    curl -sS --max-time 10 "http://127.0.0.1:$PORT_always/events-status" \
        | grep -o '"journal":{[^}]*}' || true
    echo
fi

echo "== events/s, median of $ROUNDS round(s) of ${DURATION}s; ratio to no journal"
line=$(printf '%-6s' conns)
for mode in $MODES; do
    line+=$(printf ' %18s' "$mode")
done
echo "$line"
for c in $CONNECTIONS; do
    # shellcheck disable=SC2086
    base=$(median ${RATES[none/$c]:-0})
    line=$(printf '%-6s' "$c")
    for mode in $MODES; do
        # shellcheck disable=SC2086
        m=$(median ${RATES[$mode/$c]})
        if [[ $mode == none ]]; then
            line+=$(printf ' %18s' "$m")
        else
            line+=$(awk -v m="$m" -v b="$base" \
                'BEGIN { printf " %10s (%.2fx)", m, (b > 0 ? m / b : 0) }')
        fi
    done
    echo "$line"
done
if [[ " $MODES " == *" always "* ]]; then
    echo
    echo "== fsync=always: ratio to no journal, events per fsync (median)"
    for c in $CONNECTIONS; do
        # shellcheck disable=SC2086
        base=$(median ${RATES[none/$c]:-0})
        # shellcheck disable=SC2086
        m=$(median ${RATES[always/$c]})
        # shellcheck disable=SC2086
        per=$(median ${PER_FSYNC[always/$c]:-0})
        awk -v c="$c" -v m="$m" -v b="$base" -v p="$per" 'BEGIN {
            printf "connections %-4s fsync=always/none %s events per fsync %s\n",
                   c, (b > 0 ? sprintf("%.2fx", m / b) : "n/a"), p }'
    done
fi
echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)"

for mode in $MODES; do
    if grep -qE '\[(error|crit|alert|emerg)\]' "$WORK/$mode/error.log"; then
        echo "== $mode error log"
        grep -E '\[(error|crit|alert|emerg)\]' "$WORK/$mode/error.log" \
            | tail -10 | sed 's/^/    /'
        FAILED=1
    fi
done

if ((FAILED)); then
    echo "RESULT: checks FAILED"
    exit 1
fi
echo "RESULT: all checks passed"
