#!/usr/bin/env bash
# Prepares this machine for Digi: Debian packages, a Docker engine that answers, and .venv.
# Usage: scripts/setup.sh [--test]   (--test also installs the test tools)
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v caddy >/dev/null 2>&1 || missing+=(caddy)
command -v git >/dev/null 2>&1 || missing+=(git)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
# A static busybox is the root filesystem of the small images Digi builds offline (tests,
# examples): no registry needs to be reachable.
[ -x /bin/busybox ] || missing+=(busybox-static)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ "${1:-}" = "--test" ]; then
  # `ss` shows the tests that no log follower is left connected to dockerd.
  command -v ss >/dev/null 2>&1 || missing+=(iproute2)
  # The managed-database tests build their PostgreSQL and Redis image from Debian's packages.
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing from Debian: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

docker_answers() { python3 - <<'PY'
import os, socket, sys
path = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")
try:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(3)
        s.connect(path)
        s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
        sys.exit(0 if b" 200 " in s.recv(64) else 1)
except OSError:
    sys.exit(1)
PY
}
if ! docker_answers; then
  echo "==> starting the Docker engine"
  if [ -d /run/systemd/system ]; then
    $sudo systemctl start docker
  else
    $sudo sh -c 'nohup dockerd >/var/log/digi-dockerd.log 2>&1 &'
  fi
  for _ in $(seq 60); do docker_answers && break; sleep 1; done
  docker_answers || { echo "error: dockerd did not start; see /var/log/digi-dockerd.log" >&2; exit 1; }
fi

extras=""
[ "${1:-}" = "--test" ] && extras="[test]"
stamp=".venv/.installed$extras"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> installing Digi$extras into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".$extras"
  touch "$stamp"
fi
