#!/usr/bin/env bash
# A longer run of the property tests of what the request path parses (issue 26): credentials,
# cookies, X-Forwarded-For and routes at the gateway; journey, PATCH, cancel and CEE bodies at
# the registry. CASES cases each (default 100 000; the test suite runs 1 000 to 2 000).
# Bounded: stops by itself. Usage: scripts/fuzz.sh [CASES]
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${1:-${CASES:-100000}}"
exec cargo nextest run --release -p gateway -p registry --no-fail-fast -E \
  'test(no_header_value_is_a_credential) | test(a_changed_character_spoils) | test(take_any_text) | test(any_path_is_a_route) | test(/validate::tests::fuzz::/)'
