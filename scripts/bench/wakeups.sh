#!/usr/bin/env bash
# Per request, what the kernel does for HAProxy and for the gateway in front of the same
# upstream (issue 24, session 28): CPU (user, system), system calls, context switches in the
# target's threads, tasks it wakes, reschedule interrupts it takes. The upstream is nginx
# answering a fixed body and HAProxy runs the peer harness's configuration (JWT checks, rate
# limit), both rendered by ../shared/bench/peers.sh; the load is wrk -t2 -c64 GET for
# $DURATION per target and round, the rounds alternating the two.
#
# CREDENTIAL says what the load presents (session 30, the ugly cases):
#   valid    each target's own good token (the default)
#   forged   one token that verifies nowhere: the gateway's real header and claims signed by
#            another Ed25519 key (a real key id, so the signature is checked); for HAProxy a
#            token signed with another HS256 secret. Every request is refused (401).
#   varied   that forged token made new on every request (a counter appended to its claims
#            segment, so each is checked in full and none is ever seen twice: what no memory
#            of refusals spares)
#   missing  no Authorization header (401 before any signature)
#
#   scripts/bench/wakeups.sh                             # ROUNDS=2 DURATION=10
#   GATEWAY_BIN=/tmp/before/gateway scripts/bench/wakeups.sh
#   CREDENTIAL=varied scripts/bench/wakeups.sh
#   TARGETS="gateway bare bare_assert" scripts/bench/wakeups.sh   # the pipeline against its
#            floor, rounds interleaved: `bare` is gateway/examples/bare_proxy (the gateway's
#            layout and forwarding, no pipeline), `bare_assert` the same plus the assertion
#            bound to each request (BARE_ASSERT=true), from $BENCH_BIN/examples
#   BENCH_METHOD=POST scripts/bench/wakeups.sh           # POST the benchmark's journey
#                                                        # (journey.json, 1.6 KB); valid only
#   CLOSE=1 scripts/bench/wakeups.sh                     # `Connection: close` on every request:
#                                                        # a new TCP connection each (clients
#                                                        # that keep none alive)
#   HAPROXY_REUSE=always CLOSE=1 scripts/bench/wakeups.sh  # HAProxy's `http-reuse` set (the
#            harness leaves its default, `safe`: a client connection's first request never
#            takes another's idle server connection, so with CLOSE=1 every request costs HAProxy
#            a new upstream connection too, where the gateway reuses its pool)
# Needs perf (linux-perf) with tracepoints, nginx and HAProxy (apt-get install nginx-light haproxy),
# and for CREDENTIAL=forged or varied Python's cryptography (pip install cryptography).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-2}
CREDENTIAL=${CREDENTIAL:-valid}
case $CREDENTIAL in valid|forged|varied|missing) ;; *) echo "CREDENTIAL: valid, forged, varied or missing" >&2; exit 1;; esac
TARGETS=${TARGETS:-haproxy gateway}
BENCH_METHOD=${BENCH_METHOD:-GET}
case $BENCH_METHOD in GET) ;; POST) [ "$CREDENTIAL" = valid ] || { echo "POST: valid credentials only" >&2; exit 1; };; *) echo "BENCH_METHOD: GET or POST" >&2; exit 1;; esac
DURATION=${DURATION:-10}
PEERS=${PEERS:-../shared/bench/peers.sh}
[ -r "$PEERS" ] || { echo "the peer harness is not at $PEERS" >&2; exit 1; }
for tool in perf nginx haproxy wrk; do
    command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 1; }
done
export GATEWAY_REGISTRY=127.0.0.1:9201 GATEWAY__RATE_LIMITS__CLASSES__JOURNEYS_READ=1000000000 \
    GATEWAY__RATE_LIMITS__CLASSES__JOURNEYS_WRITE=1000000000
source scripts/bench/stack.sh
# The harness renders its configurations into a directory it keeps with KEEP_TMP=1.
kept=$(KEEP_TMP=1 TARGETS=haproxy ROUNDS=1 DURATION=1s WARMUP=1s bash "$PEERS" 2>&1 \
    | sed -n 's/^\[peers\] kept //p')
[ -d "$kept" ] || { echo "the harness kept no configuration" >&2; exit 1; }
[ -n "${HAPROXY_REUSE:-}" ] && sed -i "s/^defaults$/defaults\n    http-reuse $HAPROXY_REUSE/" "$kept/haproxy.cfg"
nginx -c "$kept/backend.conf" -e "$kept/backend.error.log" -g 'daemon off;' & backend_pid=$!
haproxy -db -f "$kept/haproxy.cfg" & haproxy_pid=$!
trap 'kill $backend_pid $haproxy_pid 2>/dev/null; bench_cleanup; rm -rf "$kept"' EXIT
bench_start
gateway_token=$(bench_token)
# The floor (`bare`) and the floor with the request-bound assertion (`bare_assert`), in front
# of the same nginx; the same binary runs both.
case " $TARGETS " in *" bare"*)
    BARE_LISTEN=127.0.0.1:18180 BARE_UPSTREAM=127.0.0.1:9201 "$bin/examples/bare_proxy" \
        >"$work/bare.log" 2>&1 & pids+=($!); bare_pid=$!
    BARE_LISTEN=127.0.0.1:18181 BARE_UPSTREAM=127.0.0.1:9201 BARE_ASSERT=true \
        "$bin/examples/bare_proxy" >"$work/bare_assert.log" 2>&1 & pids+=($!); bare_assert_pid=$!
    for port in 18180 18181; do
        for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
    done ;;
esac
# BENCH_METHOD=POST: every request the journey, as peers.sh sends it.
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = io.open("scripts/bench/journey.json"):read("*a")
wrk.headers["Content-Type"] = "application/json"
LUA
haproxy_token=$(python3 "$(dirname "$PEERS")/mint_jwt.py" peers-bench-secret-0123456789abcdef bench-user 315360000)
# A forged token for each target: the gateway's real key id and claims under another key's
# (valid) signature; for HAProxy, the right alg and claims under another secret's HMAC.
forge() {   # target, good token
    python3 - "$@" <<'PY'
import base64, hashlib, hmac, os, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
target, token = sys.argv[1], sys.argv[2]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
signed = token.rsplit(".", 1)[0]
if target == "gateway":
    sig = Ed25519PrivateKey.generate().sign(signed.encode())
else:
    sig = hmac.new(os.urandom(32), signed.encode(), hashlib.sha256).digest()
print(signed + "." + b64(sig))
PY
}
forge gateway "$gateway_token" >"$work/forged.gateway"
forge haproxy "$haproxy_token" >"$work/forged.haproxy"
# CREDENTIAL=varied: wrk makes $TOKENS's token new on every request; each thread's counter
# starts with a letter of its own, so no two requests send the same token.
cat >"$work/tokens.lua" <<'LUA'
local digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
local threads, head, claims, signature, n = 0, nil, nil, nil, 0
local function code(x)
    local out = {}
    repeat
        local d = x % 62
        out[#out + 1] = digits:sub(d + 1, d + 1)
        x = math.floor(x / 62)
    until x == 0
    return table.concat(out)
end
function setup(thread) threads = threads + 1; thread:set("id", threads) end
function init()
    local token = io.lines(os.getenv("TOKENS"))()
    head, claims, signature = token:match("^([^.]+)%.([^.]+)%.([^.]+)$")
    claims = claims .. code(id)
end
function request()
    n = n + 1
    local token = head .. "." .. claims .. code(n) .. "." .. signature
    return wrk.format(nil, nil, {["Authorization"] = "Bearer " .. token, ["X-API-Version"] = "3.3"})
end
LUA
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
events=raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,sched:sched_switch,sched:sched_wakeup,irq_vectors:reschedule_entry
read -ra order <<<"$TARGETS"
for round in $(seq "$ROUNDS"); do
    # Each round starts one target further on, so none is always measured first (the
    # machine's slow spells and its warm caches fall on each in turn).
    start=$(( (round - 1) % ${#order[@]} ))
    for target in "${order[@]:start}" "${order[@]:0:start}"; do
        case $target in
            haproxy) pid=$haproxy_pid token=$haproxy_token url=http://127.0.0.1:9202/journeys ;;
            gateway) pid=$gateway_pid token=$gateway_token url=http://127.0.0.1:18080/v3/journeys ;;
            bare) pid=$bare_pid token=none url=http://127.0.0.1:18180/v3/journeys ;;
            bare_assert) pid=$bare_assert_pid token=none url=http://127.0.0.1:18181/v3/journeys ;;
            *) echo "TARGETS: haproxy, gateway, bare, bare_assert" >&2; exit 1 ;;
        esac
        load=(-H "Authorization: Bearer $token" -H "X-API-Version: 3.3")
        [ "$BENCH_METHOD" = POST ] && load+=(-s "$work/post.lua")
        [ "${CLOSE:-0}" = 1 ] && load+=(-H "Connection: close")
        expect=200
        [ "$BENCH_METHOD" = POST ] && expect=201
        case $CREDENTIAL in
            forged) load=(-H "Authorization: Bearer $(head -1 "$work/forged.$target")" -H "X-API-Version: 3.3"); expect=401 ;;
            varied) load=(-s "$work/tokens.lua"); expect=401 ;;
            missing) load=(-H "X-API-Version: 3.3"); expect=401 ;;
        esac
        sample=("${load[@]}")
        [ "$CREDENTIAL" = varied ] && sample=(-H "Authorization: Bearer $(sed 's/\./A./2' "$work/forged.$target")")
        [ "$BENCH_METHOD" = POST ] && sample=(-H "Authorization: Bearer $token" -H "Content-Type: application/json" --data-binary @scripts/bench/journey.json)
        status=$(curl -s -o /dev/null -w '%{http_code}' "${sample[@]}" -H "X-API-Version: 3.3" "$url")
        [ "$status" = "$expect" ] || { echo "$target answered $status, not $expect ($CREDENTIAL)" >&2; exit 1; }
        read -r user0 system0 < <(ticks "$pid")
        perf stat -x, -o "$work/perf.$target" -e "$events" -p "$pid" -- sleep "$DURATION" 2>/dev/null &
        perf_pid=$!
        out=$(TOKENS="$work/forged.$target" wrk --latency -t2 -c64 -d"${DURATION}s" "${load[@]}" "$url")
        wait "$perf_pid" || true
        read -r user1 system1 < <(ticks "$pid")
        requests=$(awk '/requests in/ {print $1}' <<<"$out")
        p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
        refused=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
        python3 - "$target" "$round" "$requests" $((user1 - user0)) $((system1 - system0)) \
            "$work/perf.$target" "$p99" "${refused:-0}" <<'PY'
import sys
target, round_, requests, user, system, counts, p99, refused = sys.argv[1:]
n = int(requests)
us = lambda ticks: int(ticks) / 100 * 1e6 / n   # USER_HZ = 100
per = {}
for line in open(counts):
    fields = line.strip().split(",")
    if len(fields) > 2 and fields[0].isdigit():
        per[fields[2].split(":")[1]] = int(fields[0]) / n
print(f"round {round_} {target:11} {n} requests, {n / ((int(user) + int(system)) / 100):.0f} per core-second;"
      f" per request: CPU {us(user) + us(system):.1f} µs (user {us(user):.1f}, system {us(system):.1f}),"
      f" system calls {per['sys_enter']:.2f} (epoll_wait {per['sys_enter_epoll_wait']:.3f}),"
      f" switches {per['sched_switch']:.3f}, wakes {per['sched_wakeup']:.3f},"
      f" reschedule IPIs {per['reschedule_entry']:.3f}; p99 {p99}, {int(refused) / n:.0%} refused")
PY
    done
done
