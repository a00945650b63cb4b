#!/usr/bin/env bash
# Smoke test of the Stratus origin with aws-cli and boto3 (pip install awscli boto3).
#
#   S3_URL=http://127.0.0.1:9000 STRATUS_ACCESS_KEY=… STRATUS_SECRET_KEY=… tests/smoke/s3_smoke.sh
#
# Without S3_URL it starts its own origin from STRATUS_BIN (default target/debug/stratus) on a
# free port and a temporary data directory, with throwaway credentials, and stops it at the end.
# Exits non-zero on any mismatch.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if [[ -z "${S3_URL:-}" ]]; then
  bin="${STRATUS_BIN:-$here/../../target/debug/stratus}"
  data="$(mktemp -d)"
  out="$data/stdout"
  export STRATUS_ACCESS_KEY="${STRATUS_ACCESS_KEY:-smoke-access}"
  export STRATUS_SECRET_KEY="${STRATUS_SECRET_KEY:-smoke-secret-$RANDOM$RANDOM}"
  "$bin" origin --listen 127.0.0.1:0 --data "$data/buckets" >"$out" 2>"$data/stderr" &
  pid=$!
  trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT
  for _ in $(seq 1 100); do
    S3_URL="$(awk '$1 == "listening" && $2 == "origin" && $3 == "s3" {print $4}' "$out")"
    [[ -n "$S3_URL" ]] && break
    kill -0 "$pid" 2>/dev/null || { cat "$data/stderr" >&2; echo "origin exited" >&2; exit 1; }
    sleep 0.1
  done
  [[ -n "$S3_URL" ]] || { cat "$data/stderr" >&2; echo "origin did not start" >&2; exit 1; }
  export S3_URL
fi
: "${STRATUS_ACCESS_KEY:?set STRATUS_ACCESS_KEY}" "${STRATUS_SECRET_KEY:?set STRATUS_SECRET_KEY}"
python3 "$here/s3_smoke.py"
