#!/usr/bin/env python3
"""Tiered caching benchmark (issue #18): what a PoP cluster saves the origin, and what a peer
hop costs a hit.

1. Origin requests per distinct object: three edges in front of one counting origin, each
   driven by `stratus loadtest` with the same Zipf(1.0) key popularity over KEYS keys, first
   as three independent edges, then as one cluster (`--peer`). The origin counts requests and
   distinct paths; the figure is requests / distinct paths (3.0 at worst for three edges, 1.0
   when each object is fetched once per PoP).
2. Hit latency added by one peer hop: a cluster with `keep_copies = false`, one object; the
   owner answers it from its cache, the two other edges over one hop to the owner. p50/p99 of
   a closed loop of `stratus loadtest` against the owner and against a non-owner.

Every process listens on 127.0.0.1; every load run is bounded (-d). Usage:

    python3 bench/tier.py [--binary target/release/stratus] [--keys 2000] [--duration 10s]

It uses the binary given (build it first; the release build is the one to quote, a debug
build shows the same origin counts but slower latencies) and prints a Markdown table.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Origin:
    """A counting origin: every path is a 1 KiB object, cacheable for an hour."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = 0
        self.paths = set()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                with origin.lock:
                    origin.requests += 1
                    origin.paths.add(self.path)
                body = (self.path + " ").encode().ljust(1024, b".")
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.send_header("cache-control", "max-age=3600")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self):
        with self.lock:
            self.requests = 0
            self.paths = set()

    def ratio(self):
        with self.lock:
            return self.requests, len(self.paths)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_edges(binary, origin, clustered, keep_copies=True):
    """Three edges; returns (processes, urls)."""
    ports = [free_port() for _ in range(3)]
    procs = []
    tmp = tempfile.mkdtemp(prefix="stratus-tier-")
    for i, port in enumerate(ports):
        cmd = [binary, "edge", "--listen", "127.0.0.1:%d" % port, "--id", "edge-%d" % i]
        if clustered:
            peers = ", ".join('"http://127.0.0.1:%d"' % p for p in ports)
            path = os.path.join(tmp, "edge-%d.toml" % i)
            with open(path, "w") as f:
                f.write(
                    '[edge]\nlisteners = [{ listen = "127.0.0.1:%d" }]\n'
                    '[[edge.sites]]\nhosts = ["*"]\norigins = ["%s"]\n'
                    "[edge.cluster]\npeers = [%s]\nkeep_copies = %s\n"
                    % (port, origin.url, peers, "true" if keep_copies else "false")
                )
            cmd += ["--config", path]
        else:
            cmd += ["--origin", origin.url]
        env = dict(os.environ, RUST_LOG="warn")
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env))
    for p in procs:
        line = p.stdout.readline().decode()
        if "listening edge http" not in line:
            sys.exit("an edge did not start: %r" % line)
    return procs, ["http://127.0.0.1:%d" % p for p in ports]


def stop(procs):
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=35)
        except subprocess.TimeoutExpired:
            p.kill()


def loadtest(binary, args):
    out = subprocess.run([binary, "loadtest", "--json"] + args, capture_output=True, check=True)
    return json.loads(out.stdout)


def origin_per_object(binary, origin, clustered, keys, duration):
    origin.reset()
    procs, urls = start_edges(binary, origin, clustered)
    try:
        runs = [
            subprocess.Popen(
                [binary, "loadtest", "--json", "--base", url + "/k", "--keys", str(keys), "--zipf", "1.0",
                 "--seed", str(i), "-c", "8", "-d", duration],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )
            for i, url in enumerate(urls)
        ]
        reports = [json.loads(r.communicate()[0]) for r in runs]
    finally:
        stop(procs)
    requests, distinct = origin.ratio()
    client = sum(r["responses"] for r in reports)
    errors = sum(r["errors"]["total"] for r in reports)
    return requests, distinct, client, errors


def peer_hop(binary, origin, duration):
    origin.reset()
    procs, urls = start_edges(binary, origin, True, keep_copies=False)
    try:
        path = "/hop"
        # The owner is the edge whose first answer has one Cache-Status member.
        owner = None
        for url in urls:
            out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-D", "-", url + path],
                                 capture_output=True, check=True).stdout.decode().lower()
            status = [l for l in out.splitlines() if l.startswith("cache-status:")][0]
            if status.count(",") == 0:
                owner = url
        others = [u for u in urls if u != owner]
        own = loadtest(binary, ["-c", "4", "-d", duration, owner + path])
        hop = loadtest(binary, ["-c", "4", "-d", duration, others[0] + path])
    finally:
        stop(procs)
    return own["latency_ms"], hop["latency_ms"], origin.ratio()[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/stratus")
    ap.add_argument("--keys", type=int, default=2000)
    ap.add_argument("--duration", default="10s")
    a = ap.parse_args()
    origin = Origin()
    print("| set-up | client responses | errors | origin requests | distinct objects | origin requests per object |")
    print("|---|---|---|---|---|---|")
    for clustered in (False, True):
        req, distinct, client, errors = origin_per_object(a.binary, origin, clustered, a.keys, a.duration)
        name = "3 edges, clustered" if clustered else "3 independent edges"
        print("| %s | %d | %d | %d | %d | %.2f |" % (name, client, errors, req, distinct, req / max(distinct, 1)))
    own, hop, fetched = peer_hop(a.binary, origin, a.duration)
    print()
    print("| 1 KiB hit | p50 ms | p90 ms | p99 ms |")
    print("|---|---|---|---|")
    print("| at the owner | %.3f | %.3f | %.3f |" % (own["p50"], own["p90"], own["p99"]))
    print("| at a non-owner, one peer hop (keep_copies = false) | %.3f | %.3f | %.3f |" % (hop["p50"], hop["p90"], hop["p99"]))
    print("| added by the hop | %.3f | %.3f | %.3f |" % (hop["p50"] - own["p50"], hop["p90"] - own["p90"], hop["p99"] - own["p99"]))
    print("\n(origin requests for the hop object: %d)" % fetched)


if __name__ == "__main__":
    main()
