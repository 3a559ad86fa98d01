# Shared by the benchmarks in t/bench: free loopback ports and waiting
# for a server to listen.  Sourced, not run; the caller defines die().

# free_port: sets FREE_PORT to a loopback port nothing listens on and
# that this run has not handed out before (kept in USED_PORTS).
free_port() {
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % 40000))
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
