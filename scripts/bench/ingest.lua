-- wrk script for scripts/bench/ingest.sh: every request is a new, valid v3 journey with its own
-- operator_journey_id, trip and people (random identity keys), started an hour ago, so none is
-- a duplicate and no terms rule refuses it. Prints one machine-readable line at the end.
local counter = 0
thread_id = 0  -- set per thread by setup()
local threads = {}
local run = os.getenv("BENCH_RUN") or tostring(os.time())
local token = os.getenv("BENCH_TOKEN")
local start = os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() - 3600)
local finish = os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() - 1800)

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + thread_id)
end

local function key()
  local parts = {}
  for i = 1, 8 do
    parts[i] = string.format("%08x", math.random(0, 0x7fffffff))
  end
  return table.concat(parts)
end

local template = '{"operator_journey_id":"%s","operator_trip_id":"%s","operator_class":"C",' ..
  '"incentives":[{"index":0,"amount":150,"siret":"11000101300017"}],' ..
  '"start":{"datetime":"%s","lat":48.8566,"lon":2.3522},"end":{"datetime":"%s","lat":48.9,"lon":2.4},' ..
  '"distance":12000,' ..
  '"driver":{"identity":{"identity_key":"%s","operator_user_id":"driver-%d","phone":"+33601020304"},"revenue":300},' ..
  '"passenger":{"identity":{"identity_key":"%s","operator_user_id":"passenger-%d","phone_trunc":"+336010203"},' ..
  '"contribution":300,"seats":1,"payments":[{"index":0,"siret":"11000101300017","type":"titre","amount":100}]}}'

function request()
  counter = counter + 1
  local id = string.format("bench-%s-%d-%d", run, thread_id, counter)
  local body = string.format(template, id, id, start, finish, key(), counter, key(), counter)
  return wrk.format("POST", "/v3/journeys", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end

local created = 0
local others = 0

local samples = 0
function response(status, headers, body)
  if status == 201 then created = created + 1 else
    others = others + 1
    if samples < 3 and os.getenv("BENCH_DEBUG") then samples = samples + 1; io.write(status, " ", body, "\n") end
  end
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format(
    "WRKRESULT requests=%d rps=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f non2xx=%d errors=%d\n",
    summary.requests, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
