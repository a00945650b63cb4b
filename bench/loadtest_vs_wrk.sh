#!/usr/bin/env bash
# stratus loadtest vs wrk against the same target: nginx (Debian, one worker) serving a static
# 1 KiB file over HTTP/1.1 keep-alive on loopback. The target is pinned to one CPU and the
# generator to the other (shared/BENCHMARKING.md); wrk and stratus alternate, RUNS × DURATION
# each, and the medians give the ratio. Writes bench/out/loadtest_vs_wrk.json.
#
#   bench/loadtest_vs_wrk.sh                 # 3 × 10 s each, 64 connections
#   RUNS=5 DURATION=20 CONNS=128 bench/loadtest_vs_wrk.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
GEN_CPU=${GEN_CPU:-0}
TARGET_CPU=${TARGET_CPU:-1}
PORT=${PORT:-18480}
OUT=bench/out
mkdir -p "$OUT"

install() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "installing $2 from Debian" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  fi
}
install wrk wrk
install nginx nginx-light
install curl curl
[ -x /usr/bin/time ] || install /usr/bin/time time
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

echo "building stratus (release)" >&2
cargo build --release --quiet -p stratus
STRATUS=$PWD/target/release/stratus

work=$(mktemp -d)
nginx_pid=""
cleanup() {
  if [ -n "$nginx_pid" ]; then kill "$nginx_pid" 2>/dev/null || true; wait "$nginx_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/www" "$work/logs" "$work/tmp"
chmod 755 "$work" "$work/www"  # nginx workers drop root and must read the file
head -c 1024 /dev/zero | tr '\0' 'x' > "$work/www/1k"
chmod 644 "$work/www/1k"
cat > "$work/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush off;
  keepalive_requests 100000000;
  keepalive_timeout 120s;
  open_file_cache max=100 inactive=60s;
  client_body_temp_path $work/tmp;
  proxy_temp_path $work/tmp;
  fastcgi_temp_path $work/tmp;
  uwsgi_temp_path $work/tmp;
  scgi_temp_path $work/tmp;
  server {
    listen 127.0.0.1:$PORT;
    root $work/www;
  }
}
EOF
taskset -c "$TARGET_CPU" "$NGINX" -c "$work/nginx.conf" -p "$work" &
nginx_pid=$!
URL="http://127.0.0.1:$PORT/1k"
for _ in $(seq 100); do
  curl -fsS -o /dev/null "$URL" 2>/dev/null && break
  sleep 0.1
done
size=$(curl -fsS "$URL" | wc -c)
[ "$size" = 1024 ] || { echo "target did not serve 1 KiB ($size bytes)" >&2; exit 1; }

median() { python3 -c 'import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

# CPU seconds (user + system) of a process so far, from /proc/PID/stat.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
worker=$(pgrep -P "$nginx_pid" | head -1)
[ -n "$worker" ] || { echo "no nginx worker process" >&2; exit 1; }

# Runs "$@" pinned to the generator CPU; prints its output and leaves "CPU_SECONDS" in $work/cpu.
measure() {
  local before after
  before=$(cpu_s "$worker")
  /usr/bin/time -f '%U %S' -o "$work/time" taskset -c "$GEN_CPU" "$@"
  after=$(cpu_s "$worker")
  gen_cpu=$(awk '{print $1 + $2}' "$work/time")
  target_cpu=$(python3 -c "print(round($after - $before, 2))")
}

wrk_rps=(); wrk_p99=(); wrk_us=(); st_rps=(); st_p99=(); st_errors=(); st_us=(); nginx_wrk=(); nginx_st=()
for i in $(seq "$RUNS"); do
  measure wrk -t1 -c "$CONNS" -d "${DURATION}s" --latency "$URL" > "$work/wrk.out"
  out=$(cat "$work/wrk.out")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' <<<"$out")
  us=$(python3 -c "print(round($gen_cpu * 1e6 / ($rps * $DURATION), 2))")
  wrk_rps+=("$rps"); wrk_p99+=("$p99"); wrk_us+=("$us")
  nginx_wrk+=("$(python3 -c "print(round($target_cpu / $DURATION, 2))")")
  echo "run $i wrk:     $rps req/s, p99 ${p99} ms, generator ${us} CPU µs/req, nginx CPU ${target_cpu}s" >&2

  measure "$STRATUS" loadtest -c "$CONNS" -d "${DURATION}s" --json "$URL" > "$work/stratus.json"
  read -r rps p99 errors n < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["rps"], d["latency_ms"]["p99"], d["errors"]["total"], d["requests"])' "$work/stratus.json")
  us=$(python3 -c "print(round($gen_cpu * 1e6 / $n, 2))")
  st_rps+=("$rps"); st_p99+=("$p99"); st_errors+=("$errors"); st_us+=("$us")
  nginx_st+=("$(python3 -c "print(round($target_cpu / $DURATION, 2))")")
  echo "run $i stratus: $rps req/s, p99 ${p99} ms, errors $errors, generator ${us} CPU µs/req, nginx CPU ${target_cpu}s" >&2
done

wrk_med=$(median "${wrk_rps[@]}")
st_med=$(median "${st_rps[@]}")
ratio=$(python3 -c "print(round($st_med / $wrk_med, 3))")
load=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$OUT/loadtest_vs_wrk.json" <<EOF
import json, sys
doc = {
    "target": "nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'), worker_processes 1, static 1 KiB, HTTP/1.1 keep-alive, loopback",
    "connections": $CONNS, "duration_s": $DURATION, "runs": $RUNS,
    "generator_cpu": $GEN_CPU, "target_cpu": $TARGET_CPU,
    "wrk": {"version": "$(wrk -v 2>&1 | head -1 | awk '{print $2}')", "threads": 1,
            "rps": [$(IFS=,; echo "${wrk_rps[*]}")], "p99_ms": [$(IFS=,; echo "${wrk_p99[*]}")],
            "cpu_us_per_req": [$(IFS=,; echo "${wrk_us[*]}")], "median_rps": $wrk_med},
    "stratus": {"rps": [$(IFS=,; echo "${st_rps[*]}")], "p99_ms": [$(IFS=,; echo "${st_p99[*]}")],
                "errors": [$(IFS=,; echo "${st_errors[*]}")],
                "cpu_us_per_req": [$(IFS=,; echo "${st_us[*]}")], "median_rps": $st_med},
    "nginx_cpu_share": {"during_wrk": [$(IFS=,; echo "${nginx_wrk[*]}")],
                        "during_stratus": [$(IFS=,; echo "${nginx_st[*]}")]},
    "ratio": $ratio,
    "loadavg_after": "$load",
}
json.dump(doc, open(sys.argv[1], "w"), indent=2)
EOF
echo "wrk median $wrk_med req/s, stratus loadtest median $st_med req/s: ratio $ratio (target >= 0.9)"
echo "wrote $OUT/loadtest_vs_wrk.json"
