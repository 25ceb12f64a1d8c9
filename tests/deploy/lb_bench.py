#!/usr/bin/env python3
"""lb_bench.py: aggregate tokens/s through HAProxy (deploy/haproxy.cfg) for 1, 2 and 3 replicas.

  python3 tests/deploy/lb_bench.py --server ./sasp-server -m models/sasp-small [--threads 1]
         [--clients 12] [--seconds 20] [--max-tokens 128] [--replicas 1,2,3]

For each replica count R: R sasp-server replicas (-t THREADS, --parallel 4) on loopback, the others
of the configuration's three pointed at a closed port (HAProxy marks them down before the run), then
CLIENTS concurrent clients send streamed completions (max_tokens, ignore_eos) for SECONDS. Reports
completion tokens per second of wall time, requests, and the mean time to first token, and for R = 1
the same load straight to the replica (the balancer's own cost). Then each replica's RSS. Only
127.0.0.1 is contacted."""
import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from balancer_test import HOST, free_port, lines, wait_port, wait_state  # noqa: E402


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def client(port, stop, out, max_tokens, seed):
    n = 0
    while not stop.is_set():
        t0 = time.time()
        c = http.client.HTTPConnection(HOST, port, timeout=300)
        body = {"prompt": "def main(argv):", "max_tokens": max_tokens, "stream": True, "ignore_eos": True,
                "seed": seed * 1000 + n, "stream_options": {"include_usage": True}}
        c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        resp = c.getresponse()
        first, tokens = None, 0
        for line in lines(resp):
            payload = line[len(b"data: "):]
            if payload == b"[DONE]":
                continue
            ev = json.loads(payload)
            if ev.get("usage"):
                tokens = ev["usage"]["completion_tokens"]
            elif first is None:
                first = time.time() - t0
        c.close()
        out.append((time.time(), tokens, first))
        n += 1


def measure(port, clients, seconds, max_tokens):
    stop, out = threading.Event(), []
    ts = [threading.Thread(target=client, args=(port, stop, out, max_tokens, i)) for i in range(clients)]
    warm = time.time() + 3
    for t in ts:
        t.start()
    time.sleep(3 + seconds)
    end = time.time()
    stop.set()
    for t in ts:
        t.join()
    done = [o for o in out if warm <= o[0] <= end]
    tokens = sum(o[1] for o in done)
    ttft = [o[2] for o in done if o[2] is not None]
    return tokens / (end - warm), len(done), sum(ttft) / max(1, len(ttft))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="./sasp-server")
    ap.add_argument("-m", "--model", default="models/sasp-small")
    ap.add_argument("--config", default=os.path.join(os.path.dirname(__file__), "../../deploy/haproxy.cfg"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clients", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--replicas", default="1,2,3")
    a = ap.parse_args()
    print("lb_bench: %s, -t %d --parallel 4 per replica, %d streaming clients, max_tokens %d, %g s per run, %d CPUs"
          % (a.model, a.threads, a.clients, a.max_tokens, a.seconds, os.cpu_count()))
    for n in [int(x) for x in a.replicas.split(",")]:
        ports = [free_port() for _ in range(6)]
        procs, lb = [], None
        try:
            for i in range(n):
                p = subprocess.Popen([a.server, "-m", a.model, "--host", HOST, "--port", str(ports[i]), "-t",
                                      str(a.threads), "--parallel", "4"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
                procs.append(p)
                wait_port(ports[i], p, "replica %d" % (i + 1))
            env = dict(os.environ, SASP_LB_BIND="%s:%d" % (HOST, ports[3]), SASP_LB_STATS="%s:%d" % (HOST, ports[4]))
            for i in range(3):
                env["SASP_REPLICA%d" % (i + 1)] = "%s:%d" % (HOST, ports[i] if i < n else ports[5])
            lb = subprocess.Popen(["haproxy", "-db", "-f", a.config], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
            wait_port(ports[3], lb, "haproxy")
            for i in range(3):
                wait_state(ports[4], "r%d" % (i + 1), "UP" if i < n else "DOWN")
            if n == 1:
                tps, reqs, ttft = measure(ports[0], a.clients, a.seconds, a.max_tokens)
                print("lb_bench: 1 replica, direct     %7.0f tokens/s  %4d requests  mean TTFT %.3f s" % (tps, reqs, ttft))
            tps, reqs, ttft = measure(ports[3], a.clients, a.seconds, a.max_tokens)
            print("lb_bench: %d replica%s via HAProxy %7.0f tokens/s  %4d requests  mean TTFT %.3f s  RSS %s MB"
                  % (n, " " if n == 1 else "s", tps, reqs, ttft, "/".join("%.0f" % rss_mb(p.pid) for p in procs)))
        finally:
            for p in procs + ([lb] if lb else []):
                p.terminate()
                p.wait()


if __name__ == "__main__":
    main()
