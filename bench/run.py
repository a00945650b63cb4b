#!/usr/bin/env python3
"""Stratus next to nginx proxy_cache, Varnish and Apache Traffic Server, same origin, same load
generator, one run; each peer in its best tuning for the row (see `TUNING`).

Method (../shared/BENCHMARKING.md): the load generator and the origin share CPU 0, the proxy under
test runs alone on CPU 1 with one worker; each measurement is repeated and products are
interleaved (A B C A B C); medians are reported together with the proxy's CPU time per request,
which survives background noise best. Called by bench/run.sh, which installs and builds first.
"""

import argparse
import asyncio
import datetime
import http.server
import json
import os
import platform
import re
import shutil
import signal
import socket
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STRATUS = os.environ.get("STRATUS_BIN", os.path.join(ROOT, "target", "release", "stratus"))
OUT = os.path.join(ROOT, "bench", "out")
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
LOAD_CPU = "0"
PROXY_CPU = "1" if NCPU > 1 else "0"

ORIGIN_PORT = 18000
SLOW_PORT = 18001
PORTS = {"stratus": 18080, "nginx": 18082, "varnish": 18083, "stratus-log": 18087, "ats": 18094,
         "static": 18092, "stratus-disk": 18093, "nginx-disk": 18089, "varnish-file": 18091,
         "nginx-log": 18095}
# admin ports: 18081 (stratus), 18088 (stratus-log), 18090 (stratus-disk)
STRATUS_ADMIN = 18081
# HTTP/2 hit throughput (h2load): cleartext h2 with prior knowledge, and h2 over TLS by ALPN.
# Stratus answers h2c on its usual port (HTTP/1.1 and h2c share it); nginx needs its own
# `listen … http2` port for prior knowledge.
H2C_PORTS = {"stratus": PORTS["stratus"], "nginx": 18084}
H2_TLS_PORTS = {"stratus": 18085, "nginx": 18086}

# Every peer at its best for the row (issue #23). nginx reads its cached bodies from files, so
# `sendfile` decides its copies: off is cheaper for small objects (one write of head and body
# from user space), on for large ones (no copy through user space). `tcp_nopush on` (TCP_CORK)
# with sendfile stalled keep-alive responses here (100 KiB: 40 MiB/s instead of 1,000), so it
# stays off.
#
# Large objects also get a fixed 256 KiB socket send buffer, for every peer that has the setting
# (Stratus `limits.send_buffer`, nginx `listen … sndbuf=`, Traffic Server
# `net.sock_send_buffer_size_in`; Varnish has none). On loopback the kernel's autotuned buffer
# (up to 4 MiB here) lets one write push a whole 1 MiB response through the client's TCP receive
# path on the proxy's own core, so each proxy was charged for its client's kernel work; with the
# fixed buffer the client's ACKs drive most of that from the load generator's core
# (docs/performance.md, "Large objects": Stratus 1 MiB 232 → 133 µs, nginx 295–351 → 110–116).
TUNING = {
    "small": {"sendfile": False, "sndbuf": None},
    "large": {"sendfile": True, "sndbuf": 256 << 10},
}
# What the report says about each peer's set-up, per tuning.
TUNING_NOTE = {
    "small": "nginx `sendfile off`",
    "large": "nginx `sendfile on`; 256 KiB send buffers (not Varnish)",
}
# Peers that are not caching proxies but are shown for reference in the 1 KiB row: nginx serving
# the file itself (the cost of a static file server answering the same request).
REFERENCE = ("static",)
PEERS = ("nginx", "varnish", "ats")

ZIPF_KEYS = 100_000
# The Zipf test's cache holds 10 % of the keys: 10,000 objects of 1 KiB. Every product gets the
# same memory budget for it, sized so that a product with ~1.4 KB per 1 KiB object (Varnish's
# figure) holds 10,000.
ZIPF_CACHE_MIB = 14
MAIN_CACHE_MIB = 512


def log(*args):
    print(f"[{datetime.datetime.now().strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)


def wait_port(port, limit=20.0):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {limit}s")


def http_get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, dict(r.headers), r.read()


# ---------------------------------------------------------------- process accounting

def descendants(pid):
    """pid and every process below it."""
    out = [pid]
    try:
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    except OSError:
        children = []
    for c in children:
        out.extend(descendants(int(c)))
    return out


def cpu_split(pids):
    """User and system CPU seconds of pids (processes: their threads included)."""
    user = system = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return user / CLK_TCK, system / CLK_TCK


def status_mib(pids, field):
    """Sum of a /proc/PID/status memory field (VmRSS, VmHWM) over pids, in MiB."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += sum(int(line.split()[1]) for line in f if line.startswith(field + ":"))
        except OSError:
            pass
    return total / 1024


def peak_rss_mib(pids):
    return status_mib(pids, "VmHWM")


def rss_mib(pids):
    return status_mib(pids, "VmRSS")


def shm_mib(proc):
    """MiB of RAM that a server's cache files on tmpfs (/dev/shm) occupy: nginx's proxy_cache
    and Traffic Server's disk cache keep cached bodies there in these runs, outside their RSS
    but in memory all the same."""
    root = getattr(proc, "cleanup", None)
    if not root or not root.startswith("/dev/shm/"):
        return 0.0
    used = 0
    for d, _, files in os.walk(root):
        for name in files:
            try:
                used += os.lstat(os.path.join(d, name)).st_blocks * 512
            except OSError:
                pass
    return used / (1 << 20)


def memory_mib(proc):
    """What a server's cache costs in RAM: its RSS plus its cache files on tmpfs."""
    return rss_mib(proc.pids()) + shm_mib(proc)


# ---------------------------------------------------------------- servers

class Proc:
    """A started server; `pids()` covers its workers too."""

    def __init__(self, name, argv, cwd=None, env=None, pidfile=None):
        self.name = name
        self.pidfile = pidfile
        self.log = open(os.path.join(OUT, f"{name}.log"), "w")
        self.p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                  start_new_session=True)

    def root_pid(self):
        if self.pidfile:
            for _ in range(100):
                try:
                    with open(self.pidfile) as f:
                        return int(f.read().strip())
                except (OSError, ValueError):
                    time.sleep(0.05)
        return self.p.pid

    def pids(self):
        return descendants(self.root_pid())

    def stop(self):
        try:
            os.killpg(self.p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.p.pid, signal.SIGKILL)
        self.log.close()


def start_nginx_conf(work, name, http, port, cpu=PROXY_CPU, cleanup=None):
    """Writes `{name}.conf`, one nginx worker whose `http` block holds `http`, and starts it on
    `cpu`; returns the process once `port` answers."""
    conf = os.path.join(work, f"{name}.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
daemon off;
pid {work}/{name}.pid;
error_log {work}/{name}-error.log;
events {{ worker_connections 4096; }}
http {{{http}}}
""")
    p = Proc(name, ["taskset", "-c", cpu, "nginx", "-c", conf, "-p", work])
    p.cleanup = cleanup
    wait_port(port)
    return p


def start_origin(work):
    """nginx serving static files on CPU 0: /1k, /1m, /k/N (any N) → the same 1 KiB body,
    /dk/N → the same 1 KiB body as application/octet-stream and /m/N → the same 1 MiB body."""
    docroot = os.path.join(work, "www")
    os.makedirs(docroot, exist_ok=True)
    with open(os.path.join(docroot, "1k"), "wb") as f:
        f.write(b"x" * 1024)
    with open(os.path.join(docroot, "1m"), "wb") as f:
        f.write(os.urandom(1 << 20))
    with open(os.path.join(docroot, "100k"), "wb") as f:
        f.write(os.urandom(100 << 10))
    with open(os.path.join(docroot, "text"), "wb") as f:
        f.write(compressible_text(16 << 10))
    return start_nginx_conf(work, "origin", f"""
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{ORIGIN_PORT} backlog=4096;
    root {docroot};
    add_header Cache-Control "public, max-age=3600";
    location /k/ {{ try_files /1k =404; }}
    # The disk scenario's objects: not compressible, so the edge stores them without
    # `Vary: Accept-Encoding` (varying objects stay in Stratus's memory tier).
    location /dk/ {{ default_type application/octet-stream; try_files /1k =404; }}
    location /m/ {{ default_type application/octet-stream; try_files /1m =404; }}
    location = /text {{ default_type text/plain; }}
    location = /nginx_status {{ stub_status; }}
  }}
""", ORIGIN_PORT, cpu=LOAD_CPU)


def compressible_text(size):
    """Text that compresses like a web page (about 4:1 with gzip), reproducibly."""
    words = ("cache edge origin object purge header stale fresh request response latency "
             "bytes memory policy token vary range slice tier disk client server").split()
    out, i = [], 0
    while sum(len(w) + 1 for w in out) < size:
        i = (i * 1103515245 + 12345) % (1 << 31)
        out.append(words[i % len(words)] + (str(i % 997) if i % 3 == 0 else ""))
    return (" ".join(out)[:size]).encode()


def static_server(work, sendfile=False):
    """nginx serving the origin's files itself on the proxy CPU: what a hit is measured against."""
    return start_nginx_conf(work, "static", f"""
  access_log off;
  sendfile {"on" if sendfile else "off"};
  keepalive_requests 1000000;
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{PORTS['static']} backlog=4096;
    root {work}/www;
    add_header Cache-Control "public, max-age=3600";
  }}
""", PORTS["static"])


def origin_requests():
    _, _, body = http_get(f"http://127.0.0.1:{ORIGIN_PORT}/nginx_status")
    # "Active connections: 1 \nserver accepts handled requests\n 1 1 1 \n..."
    return int(body.decode().split("\n")[2].split()[2])


class SlowOrigin:
    """Answers every path after 500 ms with a cacheable 1 KiB body; counts requests."""

    def __init__(self):
        self.count = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                with outer.lock:
                    outer.count += 1
                time.sleep(0.5)
                body = b"s" * 1024
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "public, max-age=3600")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            request_queue_size = 1024

        self.server = Server(("127.0.0.1", SLOW_PORT), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def start_stratus(work, cache_mib, origin_port, access_log=False, sndbuf=None):
    """Stratus without an access log, as every peer runs in the comparison rows, or with it on
    (the default in production, JSON lines; here to a file on disk) as `stratus-log`, which the
    `hits` scenario compares with nginx logging the same way (`nginx-log`); `sndbuf`:
    `limits.send_buffer`."""
    name = "stratus-log" if access_log else "stratus"
    log = os.path.join(work, "access.log") if access_log else "off"
    config = []
    if sndbuf:
        conf = os.path.join(work, f"{name}-limits.toml")
        with open(conf, "w") as f:
            f.write(f"""[edge]
listeners = [{{ listen = "127.0.0.1:{PORTS[name]}" }}]
[edge.limits]
send_buffer = "{sndbuf >> 10}KiB"
[[edge.sites]]
hosts = ["*"]
origins = ["http://127.0.0.1:{origin_port}"]
""")
        config = ["--config", conf]
    p = Proc(name, ["taskset", "-c", PROXY_CPU, STRATUS, "edge", *config,
                    "--listen", f"127.0.0.1:{PORTS[name]}",
                    "--admin", f"127.0.0.1:{STRATUS_ADMIN + (7 if access_log else 0)}",
                    "--origin", f"http://127.0.0.1:{origin_port}",
                    "--cache-size", f"{cache_mib}MiB",
                    "--access-log", log],
             env={**os.environ, "RUST_LOG": "warn"})
    wait_port(PORTS[name])
    return p


def start_stratus_h2(work, cache_mib, origin_port, tls):
    """Stratus with its plain listener (HTTP/1.1 + h2c) and a TLS listener; `tls` = (cert, key)."""
    conf = os.path.join(work, "stratus-h2.toml")
    with open(conf, "w") as f:
        f.write(f"""
[edge]
access_log = "off"
listeners = [{{ listen = "127.0.0.1:{PORTS['stratus']}" }}, {{ listen = "127.0.0.1:{H2_TLS_PORTS['stratus']}", tls = true }}]
admin = {{ listen = "127.0.0.1:{STRATUS_ADMIN}" }}
cache = {{ size = "{cache_mib}MiB" }}
[[edge.sites]]
hosts = ["*"]
origins = ["http://127.0.0.1:{origin_port}"]
tls = {{ cert = "{tls[0]}", key = "{tls[1]}" }}
""")
    p = Proc("stratus", ["taskset", "-c", PROXY_CPU, STRATUS, "edge", "--config", conf],
             env={**os.environ, "RUST_LOG": "warn"})
    wait_port(H2_TLS_PORTS["stratus"])
    return p


# The access log of the `hits` scenario's nginx-log: the fields of Stratus's JSON lines that
# nginx has variables for, buffered as an operator would run it.
NGINX_JSON_LOG = ("""'{"time":"$time_iso8601","client":"$remote_addr","method":"$request_method","""
                  """"scheme":"$scheme","host":"$host","path":"$request_uri","protocol":"$server_protocol","""
                  """"status":$status,"bytes":$body_bytes_sent,"duration_ms":$request_time,"""
                  """"cache":"$upstream_cache_status","origin_status":"$upstream_status","""
                  """"origin_ms":"$upstream_response_time","user_agent":"$http_user_agent","""
                  """"referer":"$http_referer"}'""")


def start_nginx(work, cache_mib, origin_port, tls=None, sendfile=False, access_log=False, sndbuf=None):
    """nginx proxy_cache; with `access_log`, JSON lines to a file (`buffer=64k flush=1s`), as
    the `nginx-log` product of the `hits` scenario."""
    name = "nginx-log" if access_log else "nginx"
    logging = (f"log_format json escape=json {NGINX_JSON_LOG};\n"
               f"  access_log {work}/{name}-access.log json buffer=64k flush=1s;") if access_log else "access_log off;"
    cache_dir = tempfile.mkdtemp(prefix="nginx-cache-", dir="/dev/shm")
    # nginx's max_size is not a hard limit under load (it grew to 4-5x here), so the number of
    # objects is capped by the keys zone too: ~8,000 keys per MiB of zone.
    keys_zone = max(1, round(cache_mib * 1024 / 1.4 / 8000 * 1024))
    return start_nginx_conf(work, name, f"""
  {logging}
  sendfile {"on" if sendfile else "off"};
  tcp_nopush off;  # with sendfile it stalled keep-alive responses here (see TUNING)
  keepalive_requests 1000000;
  # Compressed hits (the `gzip` row): nginx compresses each response as it sends it.
  gzip on;
  gzip_types text/plain;
  gzip_proxied any;
  gzip_vary on;
  proxy_cache_path {cache_dir} levels=1:2 keys_zone=bench:{keys_zone}k max_size={cache_mib}m inactive=1h use_temp_path=off;
  upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{PORTS[name]} backlog=4096{f" sndbuf={sndbuf >> 10}k" if sndbuf else ""};{nginx_h2(tls)}
    location / {{
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache bench;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 10s;
      proxy_cache_valid 200 1h;
      add_header X-Cache $upstream_cache_status;
    }}
  }}
""", PORTS[name], cleanup=cache_dir)


def nginx_h2(tls):
    """Extra listen lines for the HTTP/2 scenario: h2c (prior knowledge) and h2 over TLS."""
    if not tls:
        return ""
    return f"""
    listen 127.0.0.1:{H2C_PORTS['nginx']} http2 backlog=4096;
    listen 127.0.0.1:{H2_TLS_PORTS['nginx']} ssl http2 backlog=4096;
    ssl_certificate {tls[0]};
    ssl_certificate_key {tls[1]};
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    # nginx before 1.23.4 (Debian's is 1.22) leaves TLS 1.3 out of its default `ssl_protocols`:
    # without this line every TLS row compared its TLS 1.2 with Stratus's TLS 1.3, and its
    # "resumed" handshakes were TLS 1.2 abbreviated ones, which skip the ECDHE that TLS 1.3
    # resumption runs (docs/performance.md, TLS). `tls_resumed12` measures that case on both.
    ssl_protocols TLSv1.2 TLSv1.3;
    # The cipher order Stratus uses (AES-128-GCM first, `edge/src/proxy/tls.rs`): nginx otherwise
    # follows the client's order, and OpenSSL clients (s_time, h2load, wrk) list AES-256-GCM with
    # SHA-384 first, whose key schedule costs several times more here.
    ssl_prefer_server_ciphers on;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;"""


def start_varnish(work, cache_mib, origin_port):
    vcl = os.path.join(work, "bench.vcl")
    with open(vcl, "w") as f:
        f.write(f"""vcl 4.1;
backend origin {{ .host = "127.0.0.1"; .port = "{origin_port}"; }}
sub vcl_backend_response {{
  # Compressed hits (the `gzip` row): stored compressed once, as Stratus does.
  if (beresp.http.content-type ~ "^text/") {{ set beresp.do_gzip = true; }}
}}
""")
    name = os.path.join(work, "varnish")
    p = Proc("varnish", ["taskset", "-c", PROXY_CPU, "varnishd", "-F", "-n", name,
                         "-a", f"127.0.0.1:{PORTS['varnish']}", "-f", vcl,
                         "-s", f"malloc,{cache_mib}M",
                         "-p", "thread_pools=1", "-p", "thread_pool_min=50",
                         "-P", os.path.join(work, "varnish.pid")],
             pidfile=os.path.join(work, "varnish.pid"))
    wait_port(PORTS["varnish"], limit=40)
    return p


def start_ats(work, cache_mib, origin_port, disk_mib=None, sndbuf=None):
    """Apache Traffic Server 9.2 as a reverse proxy: its RAM cache (`cache_mib`) in front of a
    small disk cache (a file on tmpfs), one exec thread, no access log, no Via headers."""
    root = os.path.join(work, f"ats-{time.time_ns()}")
    etc = os.path.join(root, "etc")
    shutil.copytree("/etc/trafficserver", etc)
    for d in ("run", "log"):
        os.makedirs(os.path.join(root, d))
    disk_dir = tempfile.mkdtemp(prefix="ats-cache-", dir="/dev/shm")
    disk_mib = disk_mib or ATS_DISK_MIB
    with open(os.path.join(disk_dir, "cache.db"), "wb") as f:
        f.truncate(disk_mib << 20)
    with open(os.path.join(root, "runroot.yaml"), "w") as f:
        f.write("".join(f"{k}: {v}\n" for k, v in {
            "prefix": root, "exec_prefix": "/usr", "bindir": "/usr/bin", "sbindir": "/usr/sbin",
            "sysconfdir": etc, "datadir": disk_dir, "includedir": "/usr/include",
            "libdir": "/usr/lib/trafficserver", "libexecdir": "/usr/lib/trafficserver/modules",
            "localstatedir": root, "runtimedir": os.path.join(root, "run"),
            "logdir": os.path.join(root, "log"), "cachedir": disk_dir}.items()))
    records = {
        "proxy.config.http.server_ports": ("STRING", str(PORTS["ats"])),
        "proxy.config.exec_thread.autoconfig": ("INT", 0),
        "proxy.config.exec_thread.limit": ("INT", 1),
        "proxy.config.exec_thread.affinity": ("INT", 0),
        "proxy.config.accept_threads": ("INT", 0),
        "proxy.config.task_threads": ("INT", 1),
        "proxy.config.cache.threads_per_disk": ("INT", 1),
        "proxy.config.cache.ram_cache.size": ("INT", cache_mib << 20),
        "proxy.config.cache.ram_cache_cutoff": ("INT", 4 << 20),
        # Directory entries for 1 KiB objects (the default sizes the directory for 8,000-byte
        # ones, which would cap the Zipf run's 14 MiB disk at about 1,800 objects).
        "proxy.config.cache.min_average_object_size": ("INT", 1024),
        "proxy.config.log.logging_enabled": ("INT", 0),
        "proxy.config.reverse_proxy.enabled": ("INT", 1),
        "proxy.config.url_remap.remap_required": ("INT", 1),
        "proxy.config.http.cache.required_headers": ("INT", 0),
        "proxy.config.http.insert_request_via_str": ("INT", 0),
        "proxy.config.http.insert_response_via_str": ("INT", 0),
        "proxy.config.http.insert_client_ip": ("INT", 0),
        "proxy.config.http.insert_squid_x_forwarded_for": ("INT", 0),
        "proxy.config.http.keep_alive_no_activity_timeout_in": ("INT", 120),
        "proxy.config.net.connections_throttle": ("INT", 10000),
        "proxy.config.http.server_session_sharing.pool": ("STRING", "thread"),
        "proxy.config.admin.user_id": ("STRING", "trafficserver"),
        "proxy.config.diags.debug.enabled": ("INT", 0),
    }
    if sndbuf:
        records["proxy.config.net.sock_send_buffer_size_in"] = ("INT", sndbuf)
    with open(os.path.join(etc, "records.config"), "w") as f:
        f.write("".join(f"CONFIG {k} {t} {v}\n" for k, (t, v) in records.items()))
    with open(os.path.join(etc, "storage.config"), "w") as f:
        f.write(f"{disk_dir}/cache.db {disk_mib}M\n")
    with open(os.path.join(etc, "remap.config"), "w") as f:
        f.write(f"map / http://127.0.0.1:{origin_port}/\n")
    with open(os.path.join(etc, "plugin.config"), "w") as f:
        f.write("")
    # ATS refuses to run as root and drops to proxy.config.admin.user_id.
    subprocess.run(["chown", "-R", "trafficserver", root, disk_dir], check=True)
    os.chmod(root, 0o755)
    p = Proc("ats", ["taskset", "-c", PROXY_CPU, "traffic_server", f"--run-root={root}/runroot.yaml"], cwd=root)
    p.cleanup = disk_dir
    wait_port(PORTS["ats"], limit=40)
    return p


# ATS's disk cache under its RAM cache for the throughput rows (on tmpfs, so no disk waits).
ATS_DISK_MIB = 256

STARTERS = {"stratus": start_stratus, "nginx": start_nginx, "varnish": start_varnish, "ats": start_ats,
            "stratus-log": lambda work, cache_mib, port: start_stratus(work, cache_mib, port, True),
            "nginx-log": lambda work, cache_mib, port, **kw: start_nginx(work, cache_mib, port, access_log=True, **kw),
            "static": lambda work, cache_mib, port, sendfile=False: static_server(work, sendfile)}


def start(product, work, cache_mib, origin_port=ORIGIN_PORT, tuning=None):
    tuning = tuning or TUNING["small"]
    if product in ("nginx", "nginx-log", "static"):
        extra = {"sndbuf": tuning["sndbuf"]} if product != "static" and tuning.get("sndbuf") else {}
        p = STARTERS[product](work, cache_mib, origin_port, sendfile=tuning["sendfile"], **extra)
    elif product in ("stratus", "ats") and tuning.get("sndbuf"):
        p = STARTERS[product](work, cache_mib, origin_port, sndbuf=tuning["sndbuf"])
    else:
        p = STARTERS[product](work, cache_mib, origin_port)
    time.sleep(0.3)
    return p


def stop(p):
    p.stop()
    cleanup = getattr(p, "cleanup", None)
    if cleanup:
        shutil.rmtree(cleanup, ignore_errors=True)


# ---------------------------------------------------------------- load

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_h2load(text):
    out = {}
    m = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", text)
    out["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", text)
    if m:
        out["requests"] = int(m.group(1))
        out["errors"] = sum(int(x) for x in m.groups()[1:])
    m = re.search(r"status codes: (\d+) 2xx", text)
    if m and out.get("requests"):
        # With -D the 2xx count may include a response that arrived after the clock stopped.
        out["errors"] = out.get("errors", 0) + max(0, out["requests"] - int(m.group(1)))
    m = re.search(r"^time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", text, re.M)
    out["mean_ms"] = float(m.group(1)) * UNITS[m.group(2)] if m else None
    m = re.search(r"Application protocol: (\S+)", text)
    out["protocol"] = m.group(1) if m else None
    return out


def h2load(url, seconds, clients, streams, count=None):
    """h2load on the load CPU: `count` requests, or for `seconds` (h2c prior knowledge for http://)."""
    argv = ["taskset", "-c", LOAD_CPU, "h2load", "-t1", f"-c{clients}", f"-m{streams}"]
    argv += [f"-n{count}"] if count else [f"-D{seconds}"]
    argv.append(url)
    res = subprocess.run(argv, capture_output=True, text=True, timeout=(seconds or 10) + 60)
    return parse_h2load(res.stdout)


def parse_wrk(text):
    out = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    out["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in", text)
    out["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", text)
    if m:
        scale = {"B": 1 / (1 << 20), "KB": 1 / 1024, "MB": 1, "GB": 1024}.get(m.group(2), 0)
        out["mib_s"] = float(m.group(1)) * scale
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)", text, re.M)
        out[f"p{pct}_ms"] = float(m.group(1)) * UNITS[m.group(2)] if m else None
    out["errors"] = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses: (\d+)", text))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["errors"] += sum(int(x) for x in m.groups())
    return out


def wrk(url, seconds, connections, script=None, headers=()):
    argv = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        argv += ["-s", script]
    for h in headers:
        argv += ["-H", h]
    argv.append(url)
    res = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    return parse_wrk(res.stdout)


def measured(proc, fn):
    """Runs fn() and adds the proxy's CPU µs per request and peak RSS to its result."""
    pids = proc.pids()
    user0, sys0 = cpu_split(pids)
    res = fn()
    user1, sys1 = cpu_split(pids)
    cpu = (user1 - user0) + (sys1 - sys0)
    res["cpu_s"] = cpu
    if res.get("requests"):
        res["cpu_us_per_req"] = cpu / res["requests"] * 1e6
        # The kernel's share (sockets, files) apart from the proxy's own code.
        res["sys_us_per_req"] = (sys1 - sys0) / res["requests"] * 1e6
    res["peak_rss_mib"] = peak_rss_mib(pids)
    return res


def warm(url, count=1):
    for _ in range(count):
        http_get(url)


ZIPF_LUA = """
-- Zipf(1.0) over N keys, seeded per thread: /k/0 is the most popular.
local N = {n}
local cdf = {{}}
local sum = 0
for i = 1, N do sum = sum + 1 / i; cdf[i] = sum end
for i = 1, N do cdf[i] = cdf[i] / sum end
math.randomseed({seed})
request = function()
  local u = math.random()
  local lo, hi = 1, N
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return wrk.format("GET", "/k/" .. (lo - 1))
end
"""


async def one_request(port, path):
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    ok = data.startswith(b"HTTP/1.1 200") and len(data) >= 1024
    return time.perf_counter() - t0, ok


async def burst(port, path, n):
    return await asyncio.gather(*(one_request(port, path) for _ in range(n)))


# ---------------------------------------------------------------- scenarios

def scenario_hits(products, work, reps, seconds, path, conns, key, tuning="small", headers=(), load=None):
    """Hits on `path` from wrk with `conns` connections (or from `load(url)`), products
    interleaved, `reps` times."""
    load = load or (lambda url: wrk(url, seconds, conns, headers=headers))
    results = {p: [] for p in products}
    procs = {}
    try:
        for p in products:
            procs[p] = start(p, work, MAIN_CACHE_MIB, tuning=TUNING[tuning])
        for p in products:
            for _ in range(3):
                http_get(f"http://127.0.0.1:{PORTS[p]}{path}", dict(h.split(": ", 1) for h in headers))
        for rep in range(reps):
            for p in products:
                url = f"http://127.0.0.1:{PORTS[p]}{path}"
                r = measured(procs[p], lambda: load(url))
                tail = f", p99.9 {r['p999_ms']} ms" if "p999_ms" in r else ""
                log(f"{key} {p} rep {rep + 1}: {r.get('rps') or 0:.0f} req/s, {r.get('mib_s', 0):.0f} MiB/s, "
                    f"p50 {r.get('p50_ms')} ms, p99 {r.get('p99_ms')} ms{tail}, {r.get('cpu_us_per_req', 0):.1f} CPU µs/req "
                    f"({r.get('sys_us_per_req', 0):.1f} in the kernel), {r.get('errors')} errors")
                results[p].append(r)
        if headers:
            # Each product must really have answered compressed, or the row compares nothing.
            for p in products:
                _, h, body = http_get(f"http://127.0.0.1:{PORTS[p]}{path}", dict(x.split(": ", 1) for x in headers))
                encoding = {k.lower(): v for k, v in h.items()}.get("content-encoding")
                log(f"{key} {p}: Content-Encoding {encoding}, {len(body)} bytes")
                for r in results[p]:
                    r["encoded"] = 1 if encoding else 0
    finally:
        for p in procs.values():
            stop(p)
    return {p: median_of(rs) for p, rs in results.items()}


TAIL_RATE = 50_000


def loadtest_at(url, rate, seconds, connections=64):
    """`stratus loadtest` at a constant `rate`: latency from each request's intended send time
    (coordinated omission corrected, as wrk2), so a stall counts for every request it delayed.
    wrk measures from the actual send, and at saturation its p99 is the queue, not the server."""
    argv = ["taskset", "-c", LOAD_CPU, STRATUS, "loadtest", "--rate", str(rate), f"-c{connections}",
            "-d", f"{seconds}s", "--warmup", "1s", "--json", url]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    try:
        j = json.loads(res.stdout)
    except ValueError:
        log(f"loadtest gave no report (exit {res.returncode}): {res.stderr.strip()[-300:]}")
        return {}
    lat = j.get("latency_ms") or {}
    return {"requests": j.get("requests"), "rps": j.get("rps"), "p50_ms": lat.get("p50"),
            "p99_ms": lat.get("p99"), "p999_ms": lat.get("p99_9"), "errors": (j.get("errors") or {}).get("total")}


def scenario_profile(work, seconds=10):
    """perf profile of Stratus serving 1 KiB hits (64 connections): where a hit's CPU goes."""
    proc = start("stratus", work, MAIN_CACHE_MIB)
    data = os.path.join(OUT, "perf.data")
    try:
        url = f"http://127.0.0.1:{PORTS['stratus']}/1k"
        warm(url, 3)
        pid = str(proc.pids()[0])
        rec = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-o", data, "-p", pid, "--", "sleep", str(seconds)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = wrk(url, seconds, 64)
        rec.wait(timeout=seconds + 30)
    finally:
        stop(proc)
    report = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,symbol",
                             "--percent-limit", "0.7", "-g", "none"], capture_output=True, text=True).stdout
    top = [re.sub(r"[\s-]+$", "", l) for l in report.splitlines() if l.strip() and not l.startswith("#")]
    path = os.path.join(OUT, "profile.txt")
    with open(path, "w") as f:
        f.write("\n".join(top) + "\n")
    log(f"profile: {r['rps']:.0f} req/s while profiled; self time by symbol in {path}")
    return {"rps": r["rps"], "top": top[:40]}


def self_signed(work):
    """An ECDSA P-256 certificate for 127.0.0.1 (both proxies use the same one)."""
    cert, key = os.path.join(work, "bench.crt"), os.path.join(work, "bench.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


def scenario_h2_hits(products, work, reps, seconds, clients=16, streams=16):
    """1 KiB hits over HTTP/2, h2c and TLS: Stratus and nginx (Varnish 7.1 has no TLS)."""
    products = [p for p in products if p in ("stratus", "nginx")]
    tls = self_signed(work)
    starters = {"stratus": start_stratus_h2, "nginx": start_nginx}
    modes = {"h2c_1k": ("http", H2C_PORTS), "h2_tls_1k": ("https", H2_TLS_PORTS)}
    results = {m: {p: [] for p in products} for m in modes}
    procs = {}
    try:
        for p in products:
            procs[p] = starters[p](work, MAIN_CACHE_MIB, ORIGIN_PORT, tls=tls)
            time.sleep(0.3)
        for p in products:
            for scheme, ports in modes.values():
                # Fills the cache; nginx keys by scheme, so each URL is warmed over its own protocol.
                h2load(f"{scheme}://127.0.0.1:{ports[p]}/1k", None, 1, 1, count=100)
        for rep in range(reps):
            for mode, (scheme, ports) in modes.items():
                for p in products:
                    url = f"{scheme}://127.0.0.1:{ports[p]}/1k"
                    r = measured(procs[p], lambda: h2load(url, seconds, clients, streams))
                    log(f"{mode} {p} rep {rep + 1}: {r['rps']:.0f} req/s over {r.get('protocol')}, "
                        f"{r.get('cpu_us_per_req', 0):.1f} CPU µs/req, {r.get('errors')} errors")
                    results[mode][p].append(r)
    finally:
        for p in procs.values():
            stop(p)
    return {m: {p: median_of(rs) for p, rs in by.items()} for m, by in results.items()}


def tls_version(port):
    """The protocol version a default OpenSSL client negotiates with the server on `port`."""
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}"], input="",
                       capture_output=True, text=True, timeout=10)
    m = re.search(r"(?:New|Reused), (TLSv[\d.]+)", r.stdout)
    return m.group(1) if m else None


def s_time(port, seconds, reuse, procs=4, args=()):
    """Handshakes per second with `openssl s_time` (`procs` sequential clients in parallel, one
    HTTP/1.0 GET of /1k per connection): full handshakes (`-new`) or resumed ones (`-reuse`).
    Counts the connections that really resumed (s_time prints `r` for each)."""
    # s_time sends `GET <path> HTTP/1.0` and nothing else; Stratus answers a request without
    # `Host` with 400, so the path carries one (the last header's value gets " HTTP/1.0").
    path = "/1k HTTP/1.0\r\nHost: 127.0.0.1\r\nX-Bench: s_time"
    argv = ["taskset", "-c", LOAD_CPU, "openssl", "s_time", "-connect", f"127.0.0.1:{port}",
            "-new" if not reuse else "-reuse", *args, "-time", str(seconds), "-www", path]
    runs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            for _ in range(procs)]
    out = {"requests": 0, "rps": 0.0, "resumed": 0}
    for r in runs:
        text, _ = r.communicate(timeout=seconds + 60)
        m = re.search(r"(\d+) connections in ([\d.]+) real seconds, (\d+) bytes read per connection", text)
        if m:
            out["requests"] += int(m.group(1))
            out["rps"] += int(m.group(1)) / max(float(m.group(2)), 1e-9)
            # A 1 KiB body and its head, not an error page: otherwise the row measures nothing.
            if int(m.group(3)) < 1024:
                out["errors"] = out.get("errors", 0) + int(m.group(1))
        if reuse:
            # s_time prints one character per connection of the reuse loop: `r` when resumed.
            m = re.search(r"starting\s*(\S*)", text)
            out["resumed"] += m.group(1).count("r") if m else 0
    if reuse and out["requests"]:
        out["resumed_share"] = out["resumed"] / out["requests"]
    return out


def scenario_tls(products, work, reps, seconds):
    """TLS with an ECDSA P-256 certificate, both proxies on the same one: full handshakes per
    second (one request per connection), resumed handshakes, and 1 KiB keep-alive hits over
    HTTP/1.1 + TLS (wrk, 64 connections)."""
    products = [p for p in products if p in ("stratus", "nginx")]
    tls = self_signed(work)
    starters = {"stratus": start_stratus_h2, "nginx": start_nginx}
    results = {m: {p: [] for p in products} for m in ("tls_full", "tls_resumed", "tls_resumed12", "tls_1k")}
    procs = {}
    try:
        for p in products:
            procs[p] = starters[p](work, MAIN_CACHE_MIB, ORIGIN_PORT, tls=tls)
            time.sleep(0.3)
        for p in products:
            wrk(f"https://127.0.0.1:{H2_TLS_PORTS[p]}/1k", 1, 1)
            # The rows compare TLS 1.3 with TLS 1.3 (see `nginx_h2`).
            version = tls_version(H2_TLS_PORTS[p])
            if version != "TLSv1.3":
                raise SystemExit(f"{p} negotiated {version} with a default client, not TLSv1.3")
        for rep in range(reps):
            for p in products:
                port = H2_TLS_PORTS[p]
                for mode, fn in (("tls_full", lambda: s_time(port, seconds, False)),
                                 ("tls_resumed", lambda: s_time(port, seconds, True)),
                                 ("tls_resumed12", lambda: s_time(port, seconds, True, args=("-tls1_2",))),
                                 ("tls_1k", lambda: wrk(f"https://127.0.0.1:{port}/1k", seconds, 64))):
                    r = measured(procs[p], fn)
                    log(f"{mode} {p} rep {rep + 1}: {r['rps']:.0f}/s, {r.get('cpu_us_per_req', 0):.1f} CPU µs each, "
                        f"{r.get('errors', 0)} errors"
                        + (f", {r.get('resumed_share', 0):.2f} resumed" if mode.startswith("tls_resumed") else ""))
                    results[mode][p].append(r)
    finally:
        for p in procs.values():
            stop(p)
    return {m: {p: median_of(rs) for p, rs in by.items()} for m, by in results.items()}


def median_of(runs):
    keys = {k for r in runs for k, v in r.items() if isinstance(v, (int, float))}
    return {k: statistics.median([r[k] for r in runs if isinstance(r.get(k), (int, float))]) for k in keys}


def scenario_zipf(products, work, seconds, warm_seconds):
    script = os.path.join(work, "zipf.lua")
    with open(script, "w") as f:
        f.write(ZIPF_LUA.format(n=ZIPF_KEYS, seed=42))
    out = {}
    for p in products:
        if p == "ats":
            # Its disk cache (on tmpfs) holds the objects; the RAM cache only copies hot ones.
            proc = start_ats(work, ZIPF_CACHE_MIB, ORIGIN_PORT, disk_mib=ZIPF_CACHE_MIB)
        else:
            proc = start(p, work, ZIPF_CACHE_MIB)
        try:
            url = f"http://127.0.0.1:{PORTS[p]}/"
            wrk(url, warm_seconds, 32, script)
            before = origin_requests()
            r = measured(proc, lambda: wrk(url, seconds, 32, script))
            fetched = origin_requests() - before - 1  # the status request itself
            r["hit_ratio"] = 1 - fetched / max(1, r["requests"])
            r["rss_mib"] = rss_mib(proc.pids())
            r["memory_mib"] = r["rss_mib"] + shm_mib(proc)
            log(f"zipf {p}: hit ratio {r['hit_ratio']:.3f} over {r['requests']} requests, RSS {r['rss_mib']:.0f} MiB, "
                f"with cache files on tmpfs {r['memory_mib']:.0f} MiB")
            out[p] = r
        finally:
            stop(proc)
    return out


def scenario_coalescing(products, work, slow):
    out = {}
    for i, p in enumerate(products):
        proc = start(p, work, MAIN_CACHE_MIB, origin_port=SLOW_PORT)
        try:
            path = f"/coalesce-{i}-{time.time_ns()}"
            before = slow.count
            results = asyncio.run(burst(PORTS[p], path, 200))
            lat = sorted(t for t, _ in results)
            out[p] = {
                "origin_requests": slow.count - before,
                "complete": sum(1 for _, ok in results if ok),
                "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1e3,
                "max_ms": lat[-1] * 1e3,
            }
            log(f"coalescing {p}: {out[p]}")
        finally:
            stop(proc)
    return out


def scenario_object_overhead(products, work, first=5_000, n=20_000):
    """Memory growth per cached 1 KiB object (RSS and cache files on tmpfs, `memory_mib`): the
    growth while n more distinct keys are cached, after
    `first` keys have warmed connections, pools and the proxy's fixed structures (so the figure
    is the cost of one more object, not start-up costs spread over the objects)."""

    def walk(p, a, b):
        # One connection walks keys a..b-1 in order (then again, as hits): every key is fetched.
        script = os.path.join(work, f"seq-{a}.lua")
        with open(script, "w") as f:
            f.write(f"""
local i = {a} - 1
request = function()
  i = i + 1
  if i >= {b} then i = {a} end
  return wrk.format("GET", "/k/s" .. i)
end
""")
        r = wrk(f"http://127.0.0.1:{PORTS[p]}/", max(3, (b - a) // 2000 + 2), 1, script)
        return min(b - a, r["requests"])

    out = {}
    for p in products:
        proc = start(p, work, MAIN_CACHE_MIB)
        try:
            walk(p, 0, first)
            base, base_rss = memory_mib(proc), rss_mib(proc.pids())
            stored = walk(p, first, first + n)
            per = (memory_mib(proc) - base) * (1 << 20) / max(1, stored)
            rss_per = (rss_mib(proc.pids()) - base_rss) * (1 << 20) / max(1, stored)
            out[p] = {"objects": stored, "bytes_per_object": per, "overhead_per_object": per - 1024,
                      "rss_bytes_per_object": rss_per}
            log(f"memory {p}: {per:.0f} B per 1 KiB object, {rss_per:.0f} of them in RSS ({stored} objects)")
        finally:
            stop(proc)
    return out


# ---------------------------------------------------------------- report

# ---------------------------------------------------------------- disk tier (issue #17)

DISK_PRODUCTS = {"stratus": "stratus-disk", "nginx": "nginx-disk", "varnish": "varnish-file"}
DISK_GIB = 4
UNIFORM_LUA = """
-- Uniform over N keys under PREFIX, seeded per thread.
local N = {n}
math.randomseed({seed})
request = function() return wrk.format("GET", "{prefix}" .. math.random(0, N - 1)) end
"""
SEQUENTIAL_LUA = """
-- Every key under /dk/ once, in order, split between threads.
local i = 0
local threads = 0
setup = function(thread) thread:set("first", threads); threads = threads + 1 end
init = function() i = first end
request = function() local p = "/dk/" .. i; i = i + {threads}; return wrk.format("GET", p) end
"""


def disk_dir(work, name):
    """A cache directory on the real disk (never /dev/shm or tmpfs)."""
    d = tempfile.mkdtemp(prefix=f"{name}-", dir=os.environ.get("BENCH_DISK_DIR", "/var/tmp"))
    os.chmod(d, 0o777)
    return d


def start_stratus_disk(work, cache_mib, origin_port, cache_dir=None, max_object_gib=None):
    """Stratus with a `cache_mib` memory tier and a DISK_GIB disk tier in `cache_dir`; with
    `max_object_gib`, objects up to that size are stored (the flags cap them at 64 MiB)."""
    cache_dir = cache_dir or disk_dir(work, "stratus-disk")
    if max_object_gib:
        conf = os.path.join(work, "stratus-disk.toml")
        with open(conf, "w") as f:
            f.write(f"""[edge]
access_log = "off"
[edge.cache]
size = "{cache_mib}MiB"
max_object_size = "{max_object_gib}GiB"
[edge.cache.disk]
path = "{cache_dir}"
size = "{DISK_GIB}GiB"
[[edge.listeners]]
listen = "127.0.0.1:{PORTS['stratus-disk']}"
[edge.admin]
listen = "127.0.0.1:{STRATUS_ADMIN + 9}"
[[edge.sites]]
hosts = ["*"]
origins = ["http://127.0.0.1:{origin_port}"]
""")
        args = ["--config", conf]
    else:
        args = ["--listen", f"127.0.0.1:{PORTS['stratus-disk']}",
                "--admin", f"127.0.0.1:{STRATUS_ADMIN + 9}",
                "--origin", f"http://127.0.0.1:{origin_port}",
                "--cache-size", f"{cache_mib}MiB",
                "--cache-dir", cache_dir, "--disk-size", f"{DISK_GIB}GiB",
                "--access-log", "off"]
    p = Proc("stratus-disk", ["taskset", "-c", PROXY_CPU, STRATUS, "edge", *args],
             env={**os.environ, "RUST_LOG": "info"})
    p.cleanup = cache_dir
    wait_port(PORTS["stratus-disk"], limit=120)
    return p


def start_nginx_disk(work, cache_mib, origin_port):
    """nginx proxy_cache on a real disk directory; `cache_mib` is unused (nginx's memory tier
    is the page cache)."""
    cache_dir = disk_dir(work, "nginx-disk")
    return start_nginx_conf(work, "nginx-disk", f"""
  access_log off;
  keepalive_requests 1000000;
  proxy_cache_path {cache_dir} levels=1:2 keys_zone=disk:64m max_size={DISK_GIB}g inactive=1h use_temp_path=off;
  upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{PORTS['nginx-disk']} backlog=4096;
    location / {{
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache disk;
      proxy_cache_lock on;
      proxy_cache_valid 200 1h;
    }}
  }}
""", PORTS["nginx-disk"], cleanup=cache_dir)


def start_varnish_file(work, cache_mib, origin_port):
    """Varnish with `-s file` on a real disk (its memory tier is the page cache)."""
    store = disk_dir(work, "varnish-file")
    vcl = os.path.join(work, "bench-file.vcl")
    with open(vcl, "w") as f:
        f.write(f"""vcl 4.1;
backend origin {{ .host = "127.0.0.1"; .port = "{origin_port}"; }}
""")
    name = os.path.join(work, "varnish-file")
    p = Proc("varnish-file", ["taskset", "-c", PROXY_CPU, "varnishd", "-F", "-n", name,
                              "-a", f"127.0.0.1:{PORTS['varnish-file']}", "-f", vcl,
                              "-s", f"file,{store}/varnish.bin,{DISK_GIB}G",
                              "-p", "thread_pools=1", "-p", "thread_pool_min=50",
                              "-P", os.path.join(work, "varnish-file.pid")],
             pidfile=os.path.join(work, "varnish-file.pid"))
    p.cleanup = store
    wait_port(PORTS["varnish-file"], limit=40)
    return p


STARTERS.update({"stratus-disk": start_stratus_disk, "nginx-disk": start_nginx_disk,
                 "varnish-file": start_varnish_file})


def stratus_disk_metric(name):
    _, _, body = http_get(f"http://127.0.0.1:{STRATUS_ADMIN + 9}/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def scenario_disk(products, work, reps, seconds):
    """Issue #17: hits served from a disk tier (uniform keys over a working set far larger than
    Stratus's memory tier), Zipf(1.0) hit ratio with memory for ~10 % of the keys, and
    Stratus's time to ready after a restart with 100k objects on disk; and the RSS while a
    2 GiB object streams through a 64 MiB memory tier (`scenario_disk_large`)."""
    names = [DISK_PRODUCTS[p] for p in products if p in DISK_PRODUCTS]
    out = {"hit_1k": {}, "hit_1m": {}, "zipf": {}, "restart": {}}
    out["large"] = scenario_disk_large(names, work)
    cases = [("hit_1k", "/dk/", 20_000, 2, 64), ("hit_1m", "/m/", 400, 16, 16)]
    for key, prefix, n, memory_mib, conns in cases:
        script = os.path.join(work, f"uniform-{key}.lua")
        with open(script, "w") as f:
            f.write(UNIFORM_LUA.format(n=n, seed=7, prefix=prefix))
        for p in names:
            proc = start(p, work, memory_mib)
            try:
                url = f"http://127.0.0.1:{PORTS[p]}/"
                wrk(url, seconds * 2, conns, script)  # fill: every key stored at least once
                runs = [measured(proc, lambda: wrk(url, seconds, conns, script)) for _ in range(reps)]
                r = median_of(runs)
                if p == "stratus-disk":
                    r["disk_hits"] = stratus_disk_metric('stratus_edge_cache_hits_total{tier="disk"}')
                log(f"disk {key} {p}: {r['rps']:.0f} req/s, p99 {r.get('p99_ms')} ms, "
                    f"{r.get('cpu_us_per_req', 0):.1f} CPU µs/req of which {r.get('sys_us_per_req', 0):.1f} in the kernel")
                out[key][p] = r
            finally:
                stop(proc)
    script = os.path.join(work, "zipf-disk.lua")
    with open(script, "w") as f:
        f.write(ZIPF_LUA.format(n=ZIPF_KEYS, seed=42).replace('"/k/"', '"/dk/"'))
    for p in names:
        # ~1.8 KiB per 1 KiB object in Stratus's memory tier: 18 MiB holds ~10 % of 100k keys.
        proc = start(p, work, 18)
        try:
            url = f"http://127.0.0.1:{PORTS[p]}/"
            wrk(url, seconds, 32, script)
            before = origin_requests()
            r = measured(proc, lambda: wrk(url, seconds * 2, 32, script))
            fetched = origin_requests() - before - 1
            r["hit_ratio"] = 1 - fetched / max(1, r["requests"])
            log(f"disk zipf {p}: hit ratio {r['hit_ratio']:.3f}")
            out["zipf"][p] = r
        finally:
            stop(proc)
    if "stratus-disk" in names:
        cache_dir = disk_dir(work, "stratus-restart")
        proc = start_stratus_disk(work, 64, ORIGIN_PORT, cache_dir)
        proc.cleanup = None
        script = os.path.join(work, "sequential.lua")
        with open(script, "w") as f:
            f.write(SEQUENTIAL_LUA.format(threads=1))
        url = f"http://127.0.0.1:{PORTS['stratus-disk']}/"
        deadline = time.time() + 300
        while stratus_disk_metric('stratus_edge_cache_entries{tier="disk"}') < 100_000 and time.time() < deadline:
            wrk(url, 10, 32, script)
        objects = stratus_disk_metric('stratus_edge_cache_entries{tier="disk"}')
        stop(proc)
        t0 = time.perf_counter()
        proc = start_stratus_disk(work, 64, ORIGIN_PORT, cache_dir)
        ready = time.perf_counter() - t0
        status, headers, _ = http_get(f"http://127.0.0.1:{PORTS['stratus-disk']}/dk/1")
        out["restart"]["stratus-disk"] = {"objects": objects, "ready_s": ready, "first_status": status}
        log(f"disk restart: {objects:.0f} objects, ready in {ready:.2f} s")
        proc.cleanup = cache_dir
        stop(proc)
    return out


# The large-object row: a 2 GiB object through a 64 MiB memory tier, twice (fill, then a hit
# from disk). The origin serves it from a sparse file (made in no time, removed afterwards).
LARGE_GIB = 2
LARGE_MEMORY_MIB = 64


def disk_write_rate(directory, mib=64):
    """MiB/s of one direct, synced 64 MiB write into `directory` (dd `oflag=direct`): what the
    disk takes right now, past the page cache."""
    probe = os.path.join(directory, "stratus-bench-probe")
    try:
        t = time.time()
        subprocess.run(["dd", "if=/dev/zero", f"of={probe}", "bs=1M", f"count={mib}", "oflag=direct",
                        "conv=fdatasync"], capture_output=True, check=True, timeout=120)
        return mib / max(time.time() - t, 1e-9)
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        if os.path.exists(probe):
            os.remove(probe)


def settle_disk(directory, want_mib_s=300, limit_s=120):
    """Waits until the disk under `directory` takes writes at `want_mib_s` again, for at most
    `limit_s`: this VM's virtual disk slows to about 70 MiB/s for a while after gigabytes were
    written (builds, access logs, earlier fills), also after `sync`, and a fill row measured then
    measures the disk's state, not the proxy. Returns the last probe's MiB/s (reported with the
    row)."""
    os.sync()
    start, rate = time.time(), None
    while time.time() - start < limit_s:
        rate = disk_write_rate(directory)
        if rate is None or rate >= want_mib_s:
            break
        time.sleep(5)
    log(f"disk write rate {rate or 0:.0f} MiB/s after {time.time() - start:.0f} s of settling")
    return rate


def download(url):
    """GETs `url` with curl on the load CPU, body discarded; (bytes, seconds, cache-status)."""
    out = subprocess.run(["taskset", "-c", LOAD_CPU, "curl", "-s", "-o", "/dev/null", "-D", "-",
                          "-w", "\n%{size_download} %{time_total}", url],
                         capture_output=True, text=True, timeout=1800).stdout
    lines = out.strip().splitlines()
    size, secs = lines[-1].split()
    status = next((l.split(":", 1)[1].strip() for l in lines if l.lower().startswith("cache-status:")), "")
    return int(size), float(secs), status


def reset_peak(pids):
    """Resets VmHWM to the current RSS (Linux clear_refs), so the next peak is of what follows."""
    for pid in pids:
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass


def scenario_disk_large(names, work):
    """RSS and throughput while a LARGE_GIB object streams through a LARGE_MEMORY_MIB memory tier
    with a disk tier on a real disk: the first GET fills (origin → disk and client), the second
    is a hit served from disk. Peak RSS (VmHWM) of the proxy, per phase."""
    big = os.path.join(work, "www", "big")
    with open(big, "wb") as f:
        f.truncate(LARGE_GIB << 30)  # sparse: no time, no disk space
    # The first read of a new sparse file is slow here (the origin sent it to curl directly at
    # 91 MB/s, then at 1,726 MB/s), and the first product's fill paid it alone: read it once.
    size, secs, _ = download(f"http://127.0.0.1:{ORIGIN_PORT}/big")
    log(f"origin warm-up: {size >> 20} MiB at {size / (1 << 20) / max(secs, 1e-9):.0f} MiB/s")
    out = {}
    try:
        for p in names:
            if p == "stratus-disk":
                proc = start_stratus_disk(work, LARGE_MEMORY_MIB, ORIGIN_PORT, max_object_gib=LARGE_GIB + 1)
            else:
                proc = start(p, work, LARGE_MEMORY_MIB)
            try:
                time.sleep(0.5)
                url = f"http://127.0.0.1:{PORTS[p]}/big"
                r = {"idle_rss_mib": rss_mib(proc.pids())}
                before = origin_requests()
                for phase in ("fill", "hit"):
                    if phase == "fill":
                        r["disk_mib_s_before_fill"] = settle_disk(os.environ.get("BENCH_DISK_DIR", "/var/tmp"))
                    reset_peak(proc.pids())
                    base = rss_mib(proc.pids())
                    size, secs, status = download(url)
                    r[f"{phase}_mib_s"] = size / (1 << 20) / secs if secs else None
                    r[f"{phase}_peak_rss_mib"] = peak_rss_mib(proc.pids())
                    r[f"{phase}_growth_mib"] = r[f"{phase}_peak_rss_mib"] - base
                    r[f"{phase}_bytes"] = size
                    r[f"{phase}_cache_status"] = status
                    log(f"disk large {p} {phase}: {size >> 20} MiB at {r[f'{phase}_mib_s'] or 0:.0f} MiB/s, "
                        f"peak RSS {r[f'{phase}_peak_rss_mib']:.0f} MiB ({status})")
                r["origin_requests"] = origin_requests() - before - 1  # less the status request
                r["peak_rss_mib"] = max(r["fill_peak_rss_mib"], r["hit_peak_rss_mib"])
                out[p] = r
            finally:
                stop(proc)
    finally:
        os.remove(big)
    return out


def ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "–"


def fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else "–"


def write_report(res, meta):
    lines = [
        f"# Benchmark results — {meta['date']}",
        "",
        f"Machine: {meta['machine']}. Proxy alone on CPU {PROXY_CPU}, load generator (wrk, h2load or "
        f"`openssl s_time`) and origin (nginx static) on CPU {LOAD_CPU}. Medians of {meta['reps']} × "
        f"{meta['seconds']} s, products interleaved; the whole run took {meta.get('minutes')} minutes. "
        "Reproduce with `bench/run.sh`.",
        "",
        "Each peer runs in its best tuning for the row (the last column says which): nginx with "
        "`sendfile off` for small objects and `sendfile on` for 100 KiB and 1 MiB; "
        "Traffic Server 9.2 with its RAM cache in front of a 256 MiB disk cache on tmpfs, one exec "
        "thread, no logging; Varnish with `malloc` storage and one thread pool. No peer writes an "
        "access log in the comparison rows (Varnish keeps only its in-memory log); the access-log "
        "rows compare Stratus and nginx each writing JSON lines to a file.",
        "",
        "| measure | Stratus | nginx | Varnish | Traffic Server | best other | Stratus/best | tuning |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def row(name, get, spec, higher_better=True, note="", compare=True):
        s = get("stratus")
        others = {p: get(p) for p in PEERS}
        have = {p: v for p, v in others.items() if isinstance(v, (int, float)) and v}
        best = (max if higher_better else min)(have.values()) if have and compare else None
        r = ratio(s, best) if higher_better else ratio(best, s)
        cells = " | ".join(fmt(others[p], spec) for p in PEERS)
        lines.append(f"| {name} | {fmt(s, spec)} | {cells} | {fmt(best, spec)} | {r} | {note} |")

    def g(section, key):
        return lambda p: res.get(section, {}).get(p, {}).get(key)

    small, large = TUNING_NOTE["small"], TUNING_NOTE["large"]
    row("1 KiB hits, req/s (wrk, 64 conns)", g("hit_1k", "rps"), ",.0f", note=small)
    row("1 KiB hits, p50 ms", g("hit_1k", "p50_ms"), ".2f", higher_better=False, note=small)
    row("1 KiB hits, p99 ms", g("hit_1k", "p99_ms"), ".2f", higher_better=False, note=small)
    row("1 KiB hits, proxy CPU µs/req", g("hit_1k", "cpu_us_per_req"), ".1f", higher_better=False, note=small)
    row(f"1 KiB hits at a constant {TAIL_RATE:,} req/s, p99 ms (stratus loadtest, 64 conns)",
        g("tail_1k", "p99_ms"), ".2f", higher_better=False, note=small + "; latency from the intended send time (wrk2's correction)")
    row(f"1 KiB hits at a constant {TAIL_RATE:,} req/s, p99.9 ms", g("tail_1k", "p999_ms"), ".2f",
        higher_better=False, note=small)
    static = res.get("hit_1k", {}).get("static", {})
    if static:
        lines.append(f"| 1 KiB, nginx serving the file itself: req/s, CPU µs/req | "
                     f"{fmt(static.get('rps'), ',.0f')}, {fmt(static.get('cpu_us_per_req'), '.1f')} | | | | | | "
                     "reference: a static file server, `sendfile off` |")
    # The access log: Stratus and nginx each writing JSON lines to a file, against themselves
    # without (the rows above).
    h1k = res.get("hit_1k", {})
    if h1k.get("stratus-log") and h1k.get("nginx-log"):
        for label, key, spec, better in (("req/s", "rps", ",.0f", True), ("proxy CPU µs/req", "cpu_us_per_req", ".1f", False)):
            s_on, n_on = h1k["stratus-log"].get(key), h1k["nginx-log"].get(key)
            s_off, n_off = h1k.get("stratus", {}).get(key), h1k.get("nginx", {}).get(key)
            r = ratio(s_on, n_on) if better else ratio(n_on, s_on)
            lines.append(f"| 1 KiB hits, access log on: {label} | {fmt(s_on, spec)} | {fmt(n_on, spec)} | | | "
                         f"{fmt(n_on, spec)} | {r} | JSON lines to a file; nginx `buffer=64k flush=1s` |")
        for label, p in (("Stratus", "stratus"), ("nginx", "nginx")):
            on, off = h1k[f"{p}-log"], h1k.get(p, {})
            lines.append(f"| {label}: access log on/off, req/s and CPU µs/req | "
                         f"{ratio(on.get('rps'), off.get('rps'))}, {ratio(on.get('cpu_us_per_req'), off.get('cpu_us_per_req'))} "
                         "| | | | | | the cost of logging each request |")
    diskmem = res.get("diskmem", {})
    if diskmem:
        d, m = diskmem.get("stratus-disk", {}), diskmem.get("stratus", {})
        lines.append(f"| 1 KiB memory hits with a disk tier configured: req/s, CPU µs/req | "
                     f"{fmt(d.get('rps'), ',.0f')}, {fmt(d.get('cpu_us_per_req'), '.1f')} (without: "
                     f"{fmt(m.get('rps'), ',.0f')}, {fmt(m.get('cpu_us_per_req'), '.1f')}) | | | | | | `--cache-dir` |")
    row("100 KiB hits, MiB/s (wrk, 16 conns)", g("hit_100k", "mib_s"), ",.0f", note=large)
    row("100 KiB hits, proxy CPU µs/req", g("hit_100k", "cpu_us_per_req"), ".1f", higher_better=False, note=large)
    row("1 MiB hits, MiB/s (wrk, 16 conns)", g("hit_1m", "mib_s"), ",.0f", note=large)
    row("1 MiB hits, proxy CPU ms per request", lambda p: (res.get("hit_1m", {}).get(p, {}).get("cpu_us_per_req") or 0) / 1e3 or None, ".2f", higher_better=False, note=large)
    row("16 KiB text hits, gzip, req/s (wrk, 64 conns)", g("gzip", "rps"), ",.0f",
        note="Stratus, Varnish: stored compressed; nginx: `gzip on` per response")
    row("16 KiB text hits, gzip, proxy CPU µs/req", g("gzip", "cpu_us_per_req"), ".1f", higher_better=False)
    row(f"Zipf(1.0) hit ratio, {ZIPF_KEYS:,} keys, {ZIPF_CACHE_MIB} MiB cache", g("zipf", "hit_ratio"), ".3f",
        note=f"Traffic Server: {ZIPF_CACHE_MIB} MiB disk cache (tmpfs) + the same RAM cache")
    row("memory MiB at the end of that Zipf run (RSS + cache files on tmpfs)", g("zipf", "memory_mib"), ".0f",
        higher_better=False)
    row("1 KiB hits over h2c, req/s (h2load, 16 conns × 16 streams)", g("h2c_1k", "rps"), ",.0f", note=small)
    row("1 KiB hits over h2c, proxy CPU µs/req", g("h2c_1k", "cpu_us_per_req"), ".1f", higher_better=False)
    row("1 KiB hits over h2 + TLS, req/s (h2load, 16 conns × 16 streams)", g("h2_tls_1k", "rps"), ",.0f", note=small)
    row("1 KiB hits over h2 + TLS, proxy CPU µs/req", g("h2_tls_1k", "cpu_us_per_req"), ".1f", higher_better=False)
    tls = "ECDSA P-256, TLS 1.3, AES-128-GCM (both in server order); nginx `ssl_session_cache shared:SSL:10m`"
    row("TLS full handshakes/s (s_time -new ×4, one GET each)", g("tls_full", "rps"), ",.0f", note=tls)
    row("TLS full handshake, proxy CPU µs each", g("tls_full", "cpu_us_per_req"), ".0f", higher_better=False)
    row("TLS resumed handshakes/s (s_time -reuse ×4)", g("tls_resumed", "rps"), ",.0f", note=tls)
    row("TLS resumed handshake, proxy CPU µs each", g("tls_resumed", "cpu_us_per_req"), ".0f", higher_better=False)
    row("share of those really resumed", g("tls_resumed", "resumed_share"), ".2f")
    tls12 = "TLS 1.2 clients (`s_time -tls1_2`): an abbreviated handshake, no ECDHE"
    row("TLS 1.2 resumed handshakes/s (s_time -reuse -tls1_2 ×4)", g("tls_resumed12", "rps"), ",.0f", note=tls12)
    row("TLS 1.2 resumed handshake, proxy CPU µs each", g("tls_resumed12", "cpu_us_per_req"), ".0f",
        higher_better=False)
    row("1 KiB hits over HTTP/1.1 + TLS, req/s (wrk, 64 conns)", g("tls_1k", "rps"), ",.0f", note=small)
    row("1 KiB hits over HTTP/1.1 + TLS, proxy CPU µs/req", g("tls_1k", "cpu_us_per_req"), ".1f", higher_better=False)
    row("1 KiB hits over HTTP/1.1 + TLS, p99 ms", g("tls_1k", "p99_ms"), ".2f", higher_better=False)
    row("origin requests for 200 concurrent misses", g("coalescing", "origin_requests"), "d", higher_better=False)
    row("p99 ms of those 200 clients (origin takes 500 ms)", g("coalescing", "p99_ms"), ".0f", higher_better=False)
    row("peak RSS MiB (1 KiB hit run)", g("hit_1k", "peak_rss_mib"), ".0f", higher_better=False)
    row("memory bytes per cached 1 KiB object (RSS + cache files on tmpfs)", g("memory", "bytes_per_object"), ",.0f",
        higher_better=False)

    def d(sub, key):
        return lambda p: res.get("disk", {}).get(sub, {}).get(DISK_PRODUCTS.get(p), {}).get(key)

    row("disk tier: 1 KiB hits, 20,000 keys uniform, 2 MiB memory, req/s (64 conns)", d("hit_1k", "rps"), ",.0f")
    row("disk tier: 1 MiB hits, 400 keys uniform, 16 MiB memory, MiB/s (16 conns)", d("hit_1m", "mib_s"), ",.0f")
    row(f"disk tier: Zipf(1.0) hit ratio, {ZIPF_KEYS:,} keys, 18 MiB memory (~10 % of keys)", d("zipf", "hit_ratio"), ".3f")
    row("disk tier: seconds to ready after a restart with 100k objects", d("restart", "ready_s"), ".2f", higher_better=False)
    large_note = (f"{LARGE_GIB} GiB object, {LARGE_MEMORY_MIB} MiB memory tier; nginx proxy_cache, "
                  "Varnish `-s file` (mmap'd: its RSS counts the file pages it touched)")
    row(f"disk tier: peak RSS MiB while a {LARGE_GIB} GiB object streams through (fill, then disk hit)",
        d("large", "peak_rss_mib"), ".0f", higher_better=False, note=large_note)
    row(f"disk tier: {LARGE_GIB} GiB object, fill MiB/s (origin → disk and client)", d("large", "fill_mib_s"), ",.0f",
        note=large_note)
    row(f"disk tier: {LARGE_GIB} GiB object, hit from disk MiB/s", d("large", "hit_mib_s"), ",.0f", note=large_note)
    row("disk's own write rate just before that fill, MiB/s (64 MiB, `dd oflag=direct`)",
        d("large", "disk_mib_s_before_fill"), ",.0f", note="the conditions of the row above, not a comparison", compare=False)
    lines += ["", "Ratios compare Stratus with the best of the others and are oriented so that above 1× means "
              "Stratus is better. A dash: the peer cannot do it here (Varnish has no TLS; Traffic Server "
              "is left out of the h2, TLS, gzip and memory rows). Memory per cached object is the growth "
              "while 20,000 more 1 KiB objects are cached, after 5,000 have warmed the proxy up. nginx "
              "and Traffic Server keep cached bodies in files, here on tmpfs: RAM outside their RSS, so "
              "the memory rows count those files' blocks too.", ""]
    for extra in meta.get("notes", []):
        lines.append(f"- {extra}")
    with open(os.path.join(ROOT, "bench", "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one repetition of 5 s each")
    ap.add_argument("--seconds", type=int, help="length of each measurement (default 10, --quick 5)")
    ap.add_argument("--products", default="stratus,nginx,varnish,ats")
    ap.add_argument("--only", choices=["hits", "tail", "large", "h2", "tls", "gzip", "diskmem", "disk", "disklarge", "zipf", "coalescing", "memory",
                                       "profile", "accesslog"],
                    help="run only this scenario (profile: perf of Stratus's hit path, never in a full run); "
                         "prints its figures, keeps bench/results.md")
    args = ap.parse_args()
    reps, seconds = (1, 5) if args.quick else (3, 10)
    seconds = args.seconds or seconds
    products = args.products.split(",")
    if "ats" in products and not shutil.which("traffic_server"):
        log("traffic_server is not installed (bench/run.sh installs it): Traffic Server left out")
        products.remove("ats")
    os.makedirs(OUT, exist_ok=True)
    work = tempfile.mkdtemp(prefix="stratus-bench-")
    os.chmod(work, 0o755)  # varnishd compiles the VCL as an unprivileged user
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{NCPU} cores, {platform.machine()}, {os.uname().release}",
        "reps": reps,
        "seconds": seconds,
        "loadavg_before": os.getloadavg(),
        "started": time.time(),
    }
    res = {}
    origin = start_origin(work)
    slow = SlowOrigin()
    try:
        def runs(name):
            return args.only in (None, name)

        if runs("hits"):
            # Stratus with its access log on (the default) and off, and nginx serving the file
            # itself: the cost of a static file server answering the same request.
            small = products + [p for p in ("stratus-log", "static") if "stratus" in products]
            small += ["nginx-log"] if "nginx" in products else []
            res["hit_1k"] = scenario_hits(small, work, reps, seconds, "/1k", 64, "1k", "small")
            # The access-log rows compare nothing unless both really wrote a line per request.
            for name, file in (("stratus-log", "access.log"), ("nginx-log", "nginx-log-access.log")):
                path = os.path.join(work, file)
                if os.path.exists(path):
                    with open(path, "rb") as f:
                        n = sum(1 for _ in f)
                    log(f"{name}: {n:,} access-log lines")
                    meta.setdefault("notes", []).append(f"{name} wrote {n:,} access-log lines in the `hits` scenario.")
        if runs("tail"):
            # 1 KiB hits at a constant rate, below every peer's capacity: the tail a client sees
            # when the proxy is not the bottleneck (stalls, housekeeping).
            res["tail_1k"] = scenario_hits(products, work, reps, seconds, "/1k", 64, "tail", "small",
                                           load=lambda url: loadtest_at(url, TAIL_RATE, seconds))
        if runs("large"):
            res["hit_100k"] = scenario_hits(products, work, reps, seconds, "/100k", 16, "100k", "large")
            res["hit_1m"] = scenario_hits(products, work, reps, seconds, "/1m", 16, "1m", "large")
        if runs("gzip"):
            # 16 KiB of text to clients that accept gzip: Stratus and Varnish store it compressed
            # once; nginx compresses each response. ATS (no compress plugin here) is left out.
            zipped = [p for p in products if p in ("stratus", "nginx", "varnish")]
            res["gzip"] = scenario_hits(zipped, work, reps, seconds, "/text", 64, "gzip", "small",
                                        headers=("Accept-Encoding: gzip",))
        if runs("diskmem"):
            # Memory hits of an edge that also has a disk tier: the tier must cost them nothing.
            # Both without an access log (start_stratus_disk runs with `--access-log off`).
            res["diskmem"] = scenario_hits(["stratus", "stratus-disk"], work, reps, seconds, "/1k", 64,
                                           "1k-disk")
        if runs("h2"):
            res.update(scenario_h2_hits(products, work, reps, seconds))
        if runs("tls"):
            res.update(scenario_tls(products, work, reps, seconds))
        if runs("zipf"):
            res["zipf"] = scenario_zipf(products, work, seconds * 2, seconds)
        if runs("coalescing"):
            res["coalescing"] = scenario_coalescing(products, work, slow)
        if runs("memory"):
            res["memory"] = scenario_object_overhead([p for p in products if p != "ats"], work)
        if runs("disk"):
            res["disk"] = scenario_disk([p for p in products if p != "ats"], work, reps, seconds)
        if args.only == "disklarge":
            # Only the large-object row of the disk scenario (a few minutes, not 25).
            names = [DISK_PRODUCTS[p] for p in products if p in DISK_PRODUCTS]
            res["disk"] = {"large": scenario_disk_large(names, work)}
        if args.only == "profile":
            res["profile"] = scenario_profile(work)
        if args.only == "accesslog":
            # Issue #20: the access log must not slow the hit path measurably. 1 KiB hits with
            # the log on (JSON lines to a file) against the same edge with `--access-log off`.
            r = scenario_hits(["stratus-log", "stratus"], work, reps, seconds, "/1k", 64, "1k-log")
            res["access_log"] = r
            on, off = r["stratus-log"], r["stratus"]
            log(f"access log on: {on['rps']:.0f} req/s, {on.get('cpu_us_per_req', 0):.1f} CPU µs/req; "
                f"off: {off['rps']:.0f} req/s, {off.get('cpu_us_per_req', 0):.1f} CPU µs/req; "
                f"on/off throughput {on['rps'] / off['rps']:.3f}")
    finally:
        origin.stop()
        slow.server.shutdown()
    meta["loadavg_after"] = os.getloadavg()
    meta["minutes"] = round((time.time() - meta.pop("started")) / 60, 1)
    log(f"done in {meta['minutes']} minutes")
    if args.only:
        with open(os.path.join(OUT, f"results-{args.only}.json"), "w") as f:
            json.dump({"meta": meta, "results": res}, f, indent=2)
        print(json.dumps(res, indent=2))
        return
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump({"meta": meta, "results": res}, f, indent=2)
    print(write_report(res, meta))


if __name__ == "__main__":
    main()
