#!/usr/bin/env bash
# Instructions per proxied GET /v3/journeys, counted by callgrind: a figure that the machine's
# load does not move (the same binary and load give the same count), so a change to the
# gateway can be compared with the code before even on a noisy machine. User-space
# instructions only: the kernel's share (system calls, wake-ups) is not in it, and valgrind
# offers no SHA extensions, so SHA-256 is counted in its portable form (several times the
# instructions of the SHA-NI form the gateway uses on a real x86 CPU).
#
#   scripts/bench/instructions.sh                    # the release gateway, full pipeline
#   GATEWAY_BIN=/tmp/before/gateway scripts/bench/instructions.sh   # another build
#   BARE=1 scripts/bench/instructions.sh             # pingora with no filter (bare_proxy)
#   KEEP=/tmp/cg scripts/bench/instructions.sh       # keeps the callgrind files there, for
#                                                    # callgrind_annotate --inclusive=yes
#   CONNS=1 scripts/bench/instructions.sh            # one connection: every request its own
#                                                    # wake-ups, so the count does not move
#                                                    # with how many requests one wake-up finds
#                                                    # (with 8, it does when the machine's
#                                                    # load changes valgrind's pace: ±10 %)
#
# Each binary runs twice under callgrind, against the real registry and auth-service: once
# started and stopped with no load, once under `wrk -t1 -c8` for $DURATION. Instructions per
# request = (loaded - idle) / requests. Background work that runs per second (health checks,
# the blacklist feed, usage flushes) is counted in with the requests: compare runs of the
# same duration.
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-20s}
CONNS=${CONNS:-8}
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
export GATEWAY__RATE_LIMITS__CLASSES__JOURNEYS_READ=1000000000
source scripts/bench/stack.sh
# valgrind starts slowly: wait longer for the gateway than stack.sh does.
wait_for() { for _ in $(seq 1 300); do curl -sf "$1" >/dev/null && return 0; sleep 0.2; done; log "$1 never answered"; exit 1; }

if [ "${BARE:-0}" = 1 ]; then
    cargo build --release -p gateway --example bare_proxy --quiet
    target=$bin/examples/bare_proxy
    url=http://127.0.0.1:18085/v3/journeys
else
    target=${GATEWAY_BIN:-$bin/gateway}
    url=http://127.0.0.1:18080/v3/journeys
fi
wrapper=$work/callgrind-gateway
cat >"$wrapper" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file=$work/callgrind.\$RUN.%p "$target"
EOF
chmod +x "$wrapper"

# One measurement: prints "<instructions> <requests>".
measure() {
    local run=$1 duration=$2 requests=0 vg=
    export RUN=$run
    if [ "${BARE:-0}" = 1 ]; then
        bench_start registry
        BARE_LISTEN=127.0.0.1:18085 BARE_UPSTREAM=127.0.0.1:18082 "$wrapper" >"$work/bare.log" 2>&1 &
        vg=$!
        for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/18085) 2>/dev/null && break; sleep 0.2; done
    else
        GATEWAY_BIN=$wrapper bench_start registry
    fi
    local token
    token=$(bench_token)
    if [ "$duration" != 0 ]; then
        wrk -t1 -c"$CONNS" -d"$duration" -H "Authorization: Bearer $token" "$url" >"$work/wrk.$run.txt"
        requests=$(awk '/requests in/ {print $1}' "$work/wrk.$run.txt")
    fi
    if [ -n "$vg" ]; then
        kill -INT "$vg"
        for _ in $(seq 100); do kill -0 "$vg" 2>/dev/null || break; sleep 0.2; done
        kill "$vg" 2>/dev/null || true
        wait "$vg" 2>/dev/null || true
    fi
    bench_stop
    local total
    total=$(for f in "$work"/callgrind."$run".*; do
        callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
    done | awk '{s += $1} END {print s}')
    echo "$total $requests"
}

log "callgrind: $target, idle"
read -r idle _ < <(measure idle 0)
log "callgrind: $target, $DURATION of wrk -t1 -c$CONNS"
read -r loaded requests < <(measure loaded "$DURATION")
per=$(( (loaded - idle) / requests ))
if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$work"/callgrind.* "$KEEP"/; fi
echo "$target: $requests requests, $per instructions per request (idle run $idle, loaded run $loaded)"
