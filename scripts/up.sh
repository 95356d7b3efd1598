#!/usr/bin/env bash
# Sets up Digi on the embedded default (SQLite, this machine's Docker engine, a Caddy Digi
# starts), runs it, and shows its main job: deploys examples/hello and prints its URL.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

api="http://${DIGI_HOST:-127.0.0.1}:${DIGI_PORT:-4000}"
data="${DIGI_DATA_DIR:-$HOME/.local/share/digi}"
mkdir -p "$data"

answers() {  # answers URL [HOST]: 0 when it answers 2xx
  python3 - "$@" <<'PY'
import sys, urllib.request
request = urllib.request.Request(sys.argv[1], headers={"Host": sys.argv[2]} if len(sys.argv) > 2 else {})
try:
    with urllib.request.urlopen(request, timeout=3) as response:
        sys.stdout.write(response.read().decode())
except OSError:
    sys.exit(1)
PY
}

# The example's base image: from a registry when one answers, else made here from this
# machine's static busybox (no network needed).
if ! docker image inspect busybox:stable >/dev/null 2>&1 \
  && ! timeout 60 docker pull -q busybox:stable >/dev/null 2>&1; then
  echo "==> no registry reachable: making busybox:stable from /bin/busybox"
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/etc" "$root/tmp"
  chmod 1777 "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  for applet in sh httpd echo cat ls mkdir sleep env wget; do ln -s busybox "$root/bin/$applet"; done
  tar -C "$root" -c . | docker import - busybox:stable >/dev/null
  rm -rf "$root"
fi

server=""
if answers "$api/healthz" >/dev/null; then
  echo "==> a Digi server already answers at $api"
else
  echo "==> starting digi server on $api (its log: $data/server.log)"
  digi db upgrade >/dev/null
  digi server >"$data/server.log" 2>&1 &
  server=$!
  trap 'kill -INT "$server" 2>/dev/null; wait "$server" 2>/dev/null' EXIT
  for _ in $(seq 120); do
    answers "$api/healthz" >/dev/null && break
    kill -0 "$server" 2>/dev/null || { tail -n 30 "$data/server.log" >&2; exit 1; }
    sleep 0.5
  done
fi

# A user and an API token for this demo, kept for the next run.
token_file="$data/demo-token"
if [ ! -s "$token_file" ]; then
  echo "==> creating the user demo@example.com and an API token (in $token_file)"
  (umask 077 && digi create-user demo@example.com --name Demo --token-name up.sh -q >"$token_file")
fi
DIGI_TOKEN=$(cat "$token_file")
export DIGI_TOKEN DIGI_API_URL="$api"

echo "==> deploying examples/hello"
digi up examples/hello

url=$(digi services list --json | python3 -c '
import json, sys
for service in json.load(sys.stdin):
    if service["name"] == "hello":
        print(service["url"])
        break
')
host=${url#*://}
host=${host%%/*}
port=${host##*:}
[ "$port" = "$host" ] && port=80
host=${host%:*}
echo
echo "==> examples/hello answers at $url:"
answers "http://127.0.0.1:$port/" "$host"
echo
echo "    curl -H 'Host: $host' http://127.0.0.1:$port/"
echo
echo "Deploy your own app: put a Dockerfile (and optionally a digi.toml) in its directory and"
echo "run 'DIGI_TOKEN=\$(cat $token_file) .venv/bin/digi up <dir>'. See the README."
if [ -n "$server" ]; then
  echo "Digi keeps running; Ctrl-C stops it."
  wait "$server"
fi
