#!/usr/bin/env bash
# A one-node Ray cluster on 127.0.0.1 from PyPI `ray[default]`, for the Ray executor's
# integration test (tests/cli/ray.rs) and for trying `cedm run --executor ray` locally.
#
#   scripts/ray_local.sh start     # venv in .ray-venv (or $RAY_VENV), `ray start --head`
#   scripts/ray_local.sh stop
#   scripts/ray_local.sh status
#
# The head has 2 CPUs and 1 logical GPU (`--num-gpus 1`, no device needed), so the GPU
# accounting of jobs can be tested on a CPU machine. The dashboard (Jobs API) listens on
# 127.0.0.1:${RAY_DASHBOARD_PORT:-8265} with token authentication (the token in
# ~/.ray/auth_token); `ray` is pinned to the version tested here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${RAY_VENV:-$PWD/.ray-venv}"
PORT="${RAY_DASHBOARD_PORT:-8265}"
RAY_VERSION="2.60.0"
say() { echo "ray_local: $*" >&2; }

token() { cat "$HOME/.ray/auth_token" 2>/dev/null || true; }
up() { curl -sf -H "Authorization: Bearer $(token)" "http://127.0.0.1:$PORT/api/version" >/dev/null 2>&1; }

case "${1:-}" in
  start)
    if [ ! -x "$VENV/bin/ray" ]; then
      say "installing ray[default]==$RAY_VERSION into $VENV"
      python3 -m venv "$VENV"
      "$VENV/bin/pip" install -q "ray[default]==$RAY_VERSION"
    fi
    if up; then
      say "already running on 127.0.0.1:$PORT"
      exit 0
    fi
    # Token authentication, as Ray 2.61 makes it the default: the token goes to
    # ~/.ray/auth_token, where cedm (and Ray's CLI) find it.
    export RAY_AUTH_MODE=token
    "$VENV/bin/ray" get-auth-token --generate >/dev/null
    RAY_USAGE_STATS_ENABLED=0 "$VENV/bin/ray" start --head --num-cpus 2 --num-gpus 1 \
      --node-ip-address 127.0.0.1 --dashboard-host 127.0.0.1 --dashboard-port "$PORT" \
      --disable-usage-stats >/dev/null
    for _ in $(seq 60); do
      if up; then
        say "up: dashboard http://127.0.0.1:$PORT"
        exit 0
      fi
      sleep 1
    done
    say "the dashboard did not answer on 127.0.0.1:$PORT"
    exit 1
    ;;
  stop)
    [ -x "$VENV/bin/ray" ] && "$VENV/bin/ray" stop --force >/dev/null 2>&1 || true
    ;;
  status)
    if up; then curl -s -H "Authorization: Bearer $(token)" "http://127.0.0.1:$PORT/api/version"; echo; else echo "not running"; exit 1; fi
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
