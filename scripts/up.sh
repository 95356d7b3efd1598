#!/usr/bin/env bash
# Sets up Digi on the embedded default (SQLite, this machine's Docker engine) and runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "==> Digi's API on http://${DIGI_HOST:-127.0.0.1}:${DIGI_PORT:-4000} (GraphQL at /graphql); Ctrl-C stops it"
exec .venv/bin/digi server
