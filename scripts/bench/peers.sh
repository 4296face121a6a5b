#!/usr/bin/env bash
# Gateway against peer gateways (issue 6): runs ../shared/bench/peers.sh (direct backend,
# nginx pass-through, HAProxy with JWT checks and a rate limit, nginx + njs) with our gateway
# measured in the same run, on the same work: GET /v3/journeys with an application token,
# the full pipeline on (route, token with the blacklist, permission, version, rate limit
# shared through Redis, identity assertion), the registry upstream being the harness's
# trivial backend (127.0.0.1:9201).
#
#   scripts/bench/peers.sh                    # knobs of the harness pass through (DURATION, ...)
#   BENCH_METHOD=POST scripts/bench/peers.sh  # POST /v3/journeys with a typical journey
#                                             # (scripts/bench/journey.json, 1.6 KB), every peer
#
# GATEWAY_BIN=... runs another gateway binary in the same place (the code before a change);
# BARE=1 runs pingora with no filter in the gateway's layout there instead
# (gateway/examples/bare_proxy.rs): the pipeline's cost is the gateway's CPU per request
# over bare_proxy's, each against HAProxy in its own run.
#
# The bench operator's journey reads are lifted from the reference's 2 000/min, as the harness
# lifts its bench consumer's (BENCH_RPS): the limiter still counts every request.
set -euo pipefail
cd "$(dirname "$0")/../.."
PEERS=${PEERS:-../shared/bench/peers.sh}
[ -x "$PEERS" ] || { echo "the peer harness is not at $PEERS (set PEERS=...)" >&2; exit 1; }

export GATEWAY_REGISTRY=127.0.0.1:9201
export GATEWAY__RATE_LIMITS__CLASSES__JOURNEYS_READ=1000000000
export GATEWAY__RATE_LIMITS__CLASSES__JOURNEYS_WRITE=1000000000
export BENCH_METHOD=${BENCH_METHOD:-GET}
if [ "$BENCH_METHOD" = POST ]; then
    BENCH_BODY=$(cat scripts/bench/journey.json)
    export BENCH_BODY
fi
source scripts/bench/stack.sh
if [ "${BARE:-0}" = 1 ]; then
    # pingora with no filter in the gateway's layout, where the gateway would be.
    cargo build --release -p gateway --example bare_proxy --quiet
    BARE_LISTEN=127.0.0.1:18080 BARE_UPSTREAM=$GATEWAY_REGISTRY RUST_LOG=warn \
        "$bin/examples/bare_proxy" >"$work/bare.log" 2>&1 & pids+=($!); gateway_pid=$!
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/18080) 2>/dev/null && break; sleep 0.1; done
    token=none GATEWAY_NAME=${GATEWAY_NAME:-bare_proxy} GATEWAY_CHECKS=0
    export GATEWAY_NAME GATEWAY_CHECKS
else
    bench_start
    token=$(bench_token)
fi
log "gateway pid $gateway_pid; running the peer harness ($BENCH_METHOD /v3/journeys)"
GATEWAY_URL=http://127.0.0.1:18080 GATEWAY_TOKEN="$token" GATEWAY_PID=$gateway_pid \
    GATEWAY_NAME=${GATEWAY_NAME:-rpc-gateway} BENCH_PATH=/v3/journeys "$PEERS"
