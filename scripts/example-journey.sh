#!/usr/bin/env bash
# Prints a valid v3 journey (started an hour ago, so within the 24 h window) for the README's
# first session:  scripts/example-journey.sh <operator_journey_id> > journey.json
set -euo pipefail
id=${1:-journey-1}
start=$(date -u -d '-1 hour' +%FT%TZ)
end=$(date -u -d '-30 min' +%FT%TZ)
key() { printf "%064d" 0 | tr 0 "$1"; }
cat <<JSON
{"operator_journey_id":"$id","operator_trip_id":"trip-1","operator_class":"C","incentives":[],
 "start":{"datetime":"$start","lat":48.8566,"lon":2.3522},"end":{"datetime":"$end","lat":48.9,"lon":2.4},
 "distance":12000,
 "driver":{"identity":{"identity_key":"$(key a)","operator_user_id":"driver-1","phone":"+33601020304"},"revenue":300},
 "passenger":{"identity":{"identity_key":"$(key b)","operator_user_id":"passenger-1","phone":"+33601020305"},"contribution":300,"seats":1}}
JSON
