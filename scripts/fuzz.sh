#!/usr/bin/env bash
# A longer fuzz campaign than CI's: the admin API from its OpenAPI (schemathesis, positive and
# negative cases) on SQLite and PostgreSQL. Usage: scripts/fuzz.sh [examples per operation and mode]
# (default 500; CI runs 25). Needs the dev extra installed and the test services (scripts/services.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/services.sh start)"
export FLUXWAY_TEST_REDIS_URL="${REDIS_URL:-}" FLUXWAY_TEST_POSTGRES_URL="${POSTGRES_URL:-}"
export FLUXWAY_FUZZ_EXAMPLES="${1:-500}"
exec python -m pytest tests/api/test_admin_fuzz.py -q -s -p no:cacheprovider
