#!/usr/bin/env bash
# Instructions per proxied GET (or POST) /v3/journeys, counted by callgrind: a figure that the machine's
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
#   BENCH_METHOD=POST scripts/bench/instructions.sh  # POST /v3/journeys: the benchmark's
#                                                    # journey (journey.json, 1.6 KB), each
#                                                    # with its own operator_journey_id, so
#                                                    # every one is stored (201)
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
BENCH_METHOD=${BENCH_METHOD:-GET}
export GATEWAY__RATE_LIMITS__CLASSES__JOURNEYS_READ=1000000000
export GATEWAY__RATE_LIMITS__CLASSES__JOURNEYS_WRITE=1000000000
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
# POST: journey.json with its id replaced by one of the same length per request, so that the
# body's size stays 1.6 KB and no journey is a duplicate (409).
script=()
if [ "$BENCH_METHOD" = POST ]; then
    cat >"$work/post.lua" <<'EOF'
local body = io.open("scripts/bench/journey.json"):read("*a"):gsub("\n$", "")
local template = body:gsub("benchjourney0001", "%%016d", 1)
local counter = os.time() * 1000000
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
function request()
    counter = counter + 1
    return wrk.format(nil, nil, nil, template:format(counter))
end
EOF
    script=(-s "$work/post.lua")
fi

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
        wrk -t1 -c"$CONNS" -d"$duration" "${script[@]}" -H "Authorization: Bearer $token" "$url" >"$work/wrk.$run.txt"
        requests=$(awk '/requests in/ {print $1}' "$work/wrk.$run.txt")
        if grep -q Non-2xx "$work/wrk.$run.txt"; then log "$(grep Non-2xx "$work/wrk.$run.txt")"; fi
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
echo "$target: $requests requests ($BENCH_METHOD), $per instructions per request (idle run $idle, loaded run $loaded)"
