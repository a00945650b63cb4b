#!/usr/bin/env bash
# Benchmarks Stratus side by side with nginx proxy_cache, Varnish and Apache Traffic Server in one
# run, on this machine, each peer in its best tuning for the row.
# Installs what is missing from Debian's packages, builds the release binary once, then runs
# bench/run.py, which writes bench/results.md and bench/out/results.json.
#
#   bench/run.sh                 # everything (about 20 minutes on 2 cores, plus the build)
#   bench/run.sh --quick         # one repetition of 5 s each, to check the harness
#   bench/run.sh --only tls      # one scenario: hits, large, gzip, disk, h2, tls, zipf, ...
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v varnishd >/dev/null 2>&1 || need+=(varnish)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
command -v traffic_server >/dev/null 2>&1 || need+=(trafficserver)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Debian starts the packaged services on install; the benchmark runs its own instances.
for svc in nginx varnish trafficserver; do service "$svc" stop >/dev/null 2>&1 || true; done

cargo build --release --locked --bin stratus
exec python3 bench/run.py "$@"
