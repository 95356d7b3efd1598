#!/usr/bin/env bash
# Sets up what the suite needs (scripts/setup.sh --test), then runs every check and test.
# Needs PostgreSQL (DIGI_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/postgres)
# and Redis (DIGI_TEST_REDIS_URL, default redis://127.0.0.1:6379/0). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test

echo "==> ruff check";          .venv/bin/ruff check .
echo "==> ruff format --check"; .venv/bin/ruff format --check .
echo "==> mypy digi_core";      .venv/bin/mypy digi_core
echo "==> pytest";              .venv/bin/pytest "$@"
