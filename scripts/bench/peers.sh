#!/usr/bin/env bash
# Gateway against peer gateways (issue 6): runs ../shared/bench/peers.sh (direct backend,
# nginx pass-through, HAProxy with JWT checks and a rate limit, nginx + njs) with our gateway
# measured in the same run, on the same work: GET /v3/journeys with an application token,
# the full pipeline on (route, token with the blacklist, permission, version, rate limit
# shared through Redis, identity assertion), the registry upstream being the harness's
# trivial backend (127.0.0.1:9201).
#
#   scripts/bench/peers.sh          # knobs of the harness pass through (DURATION, CONNS, ...)
#
# The bench operator's journey reads are lifted from the reference's 2 000/min, as the harness
# lifts its bench consumer's (BENCH_RPS): the limiter still counts every request.
set -euo pipefail
cd "$(dirname "$0")/../.."
PEERS=${PEERS:-../shared/bench/peers.sh}
[ -x "$PEERS" ] || { echo "the peer harness is not at $PEERS (set PEERS=...)" >&2; exit 1; }

export GATEWAY_REGISTRY=127.0.0.1:9201
export GATEWAY__RATE_LIMITS__CLASSES__JOURNEYS_READ=1000000000
source scripts/bench/stack.sh
bench_start
token=$(bench_token)
log "gateway pid $gateway_pid; running the peer harness"
GATEWAY_URL=http://127.0.0.1:18080 GATEWAY_TOKEN="$token" GATEWAY_PID=$gateway_pid \
    GATEWAY_NAME=rpc-gateway BENCH_PATH=/v3/journeys "$PEERS"
