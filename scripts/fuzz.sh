#!/usr/bin/env bash
# A longer fuzz campaign than CI's: the four inference endpoints (hypothesis: crafted bodies, models
# and headers, master and virtual key) and the admin API from its OpenAPI (schemathesis, positive and
# negative cases) on SQLite and PostgreSQL. Usage: scripts/fuzz.sh [examples]
# (default 500 per admin operation and mode, ten times that for inference; CI runs 25 and 150). Needs the dev extra installed and the test services (scripts/services.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/services.sh start)"
export FLUXWAY_TEST_REDIS_URL="${REDIS_URL:-}" FLUXWAY_TEST_POSTGRES_URL="${POSTGRES_URL:-}"
n="${1:-500}"
FLUXWAY_FUZZ_EXAMPLES=$((n * 10)) python -m pytest tests/api/test_inference_fuzz.py -q -s -p no:cacheprovider
FLUXWAY_FUZZ_EXAMPLES="$n" exec python -m pytest tests/api/test_admin_fuzz.py -q -s -p no:cacheprovider
