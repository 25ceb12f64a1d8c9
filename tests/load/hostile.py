#!/usr/bin/env python3
"""hostile.py: sasp-server keeps serving a normal client while thousands of connections try to lock it
out (issue 17). Python standard library only; run by tests/load/hostile.sh under `make check`.

  1. baseline: a normal client (127.0.0.1) sends N requests (default 200), one connection each, 10 ms
     apart, alternating POST /v1/completions (max_tokens 4) and GET /health; their latencies are kept;
  2. a child process opens --idle connections (default 5,000) that send nothing and --trickle (default
     1,000) that send their request headers a byte every 250 ms, from 127.0.0.2 and up, at most
     --per-ip (default 100, under the server's default --max-conn-per-ip of 128) per source address;
  3. with those open, the normal client sends the same N requests again; the daemon's threads
     (/proc/PID/status) and RSS are read, and its open connections from /metrics;
  4. the per-address limit: --max-conn-per-ip + 8 more connections from one address; exactly 8 are
     closed at once and /metrics counts exactly 8, and every one of the others answers a request.

With --via-haproxy CONFIG the same attack goes through HAProxy running that file (deploy/haproxy.cfg)
in front of one replica started with --trusted-proxy 127.0.0.1, as docs/deploy.md sets it up: the
balancer holds the hostile connections (its own current sessions are counted, and the replica's stay
few), the per-address limit is the balancer's (128, its denied connections are counted), and then
X-Forwarded-For must carry each client to the replica: with --max-inflight-per-client 1 there, a
second held request from one address gets 429 while another address's gets 200.

Fails when a normal request does not get 200, when the p99 latency with the hostile connections is over
2x the baseline's and more than SLACK_MS above it (a ratio from one run; the pair of phases is measured
again once if it is, as the machine is shared; the baseline's p99 is a millisecond or two, and on a
2-core machine running other suites beside this one a ratio of 2 is a few milliseconds of scheduling:
CI failed on 1.63 against 5.82 ms, while a client locked out by the attack waits whole seconds), when the daemon's thread count grows with the connections, or when the extra
connections of step 4 are not refused. The daemon runs with --header-timeout 120 so that the hostile
connections stay open for the whole run (the default of 10 s would close them: test_guard.py checks
that). Prints the figures as one JSON line (--json FILE writes them too).
"""
import argparse
import http.client
import json
import os
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import time

HOST = "127.0.0.1"


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Threads", "VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def metrics(port):
    c = http.client.HTTPConnection(HOST, port, timeout=30)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def one_request(port, i):
    """A fresh connection and one request: (status, seconds)."""
    t = time.perf_counter()
    c = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        if i % 2:
            c.request("GET", "/health")
        else:
            body = json.dumps({"prompt": "hello %d" % i, "max_tokens": 4, "ignore_eos": True})
            c.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        status = r.status
    except OSError as e:
        status = "error: %s" % e
    finally:
        c.close()
    return status, time.perf_counter() - t


def normal_client(port, n):
    lat, bad = [], []
    for i in range(n):
        st, dt = one_request(port, i)
        lat.append(dt)
        if st != 200:
            bad.append(st)
        time.sleep(0.01)  # paced, so that the phase lasts while the hostile connections trickle
    lat.sort()
    return {"p50_ms": lat[len(lat) // 2] * 1e3, "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3,
            "max_ms": lat[-1] * 1e3, "failed": bad}


def hostile_main(port, n_idle, n_trickle, per_ip):
    """Child: open the connections, say how many on stdout, trickle until stdin closes. It runs at a
    lower priority, so that its own sending competes less with the daemon and the normal client."""
    os.nice(10)
    socks, trickle = [], []
    addr_i = [2]
    used = [0]

    def source():
        if used[0] == per_ip:
            addr_i[0] += 1
            used[0] = 0
        used[0] += 1
        return "127.0.%d.%d" % (addr_i[0] // 250, 2 + addr_i[0] % 250)

    failed = 0
    todo = list(range(n_idle + n_trickle))
    while todo:  # in batches, each waited for, so the listen queue never overflows
        batch, todo = todo[:250], todo[250:]
        poller, pending = select.poll(), {}
        for k in batch:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((source(), 0))
            s.setblocking(False)
            try:
                s.connect((HOST, port))
            except BlockingIOError:
                pass
            (socks if k < n_idle else trickle).append(s)
            poller.register(s, select.POLLOUT)
            pending[s.fileno()] = s
        deadline = time.time() + 10
        while pending and time.time() < deadline:
            for fd, ev in poller.poll(500):
                poller.unregister(fd)
                s = pending.pop(fd)
                if ev & (select.POLLERR | select.POLLHUP) or s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    failed += 1
        failed += len(pending)
    print(json.dumps({"connected": n_idle + n_trickle - failed, "failed": failed}), flush=True)
    header = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow\r\nX-Pad: " + b"a" * 200
    pos = 0
    os.set_blocking(sys.stdin.fileno(), False)
    while True:
        try:
            if sys.stdin.read() == "":
                break
        except (BlockingIOError, TypeError):
            pass
        b = header[pos % len(header):pos % len(header) + 1]
        for s in trickle:
            try:
                s.send(b)
            except OSError:
                pass
        pos += 1
        time.sleep(0.25)


def start_server(args):
    cmd = [args.server, "-m", args.model, "--host", HOST, "--port", "0", "-t", "1", "--parallel", "2",
           "--header-timeout", "120"]
    if args.via_haproxy:
        # the balancer's address is trusted; one generation in flight per client, slow enough to hold
        cmd += ["--trusted-proxy", HOST, "--max-inflight-per-client", "1", "--step-delay", "2"]
    log = open(args.server_log, "wb")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log)
    port = None
    deadline = time.time() + 60
    while time.time() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)/", line)
        if m:
            port = int(m.group(1))
            break
    if port is None:
        p.kill()
        sys.exit("hostile.py: the server did not start (log: %s)" % args.server_log)
    import threading
    threading.Thread(target=p.stdout.read, daemon=True).start()
    return p, port


REFUSED_PER_IP = 'sasp_connections_refused_total{limit="per_ip"}'


class Target:
    """Where the clients connect and where its counters are read: the server itself, or the balancer
    in front of it (then `port` is HAProxy's and `stats` its Prometheus endpoint)."""

    def __init__(self, replica_port, lb_port=None, stats_port=None):
        self.replica_port = replica_port
        self.port = lb_port or replica_port
        self.stats = stats_port

    def open_connections(self):
        if self.stats:
            return metrics(self.stats).get('haproxy_frontend_current_sessions{proxy="sasp"}', 0)
        return metrics(self.port).get("sasp_connections_open", 0)

    def refused_per_ip(self):
        if self.stats:
            return metrics(self.stats).get('haproxy_frontend_denied_connections_total{proxy="sasp"}', 0)
        return metrics(self.port).get(REFUSED_PER_IP, 0)


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_haproxy(args, replica_port):
    """HAProxy with args.via_haproxy, all three of its replicas this one server; (process, Target) once
    a request through it answers."""
    lb, stats = free_port(), free_port()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 2 * 8192 + 100:
        sys.exit("hostile.py: HAProxy's maxconn of 8192 needs %d open files; the hard limit is %d"
                 % (2 * 8192 + 100, hard))
    env = dict(os.environ, SASP_LB_BIND="%s:%d" % (HOST, lb), SASP_LB_STATS="%s:%d" % (HOST, stats),
               SASP_LB_HEADER_TIMEOUT="120s")
    for i in (1, 2, 3):
        env["SASP_REPLICA%d" % i] = "%s:%d" % (HOST, replica_port)
    log = open(args.server_log + ".haproxy", "wb")
    p = subprocess.Popen(["haproxy", "-db", "-f", args.via_haproxy], env=env, stdout=log, stderr=log)
    deadline = time.time() + 30
    while time.time() < deadline and p.poll() is None:
        if one_request(lb, 1)[0] == 200:
            return p, Target(replica_port, lb, stats)
        time.sleep(0.25)
    p.kill()
    sys.exit("hostile.py: haproxy did not serve through %s (log: %s.haproxy)" % (args.via_haproxy, args.server_log))


def forwarded_check(t):
    """Through the balancer, X-Forwarded-For names each client: with one generation in flight per client
    at the replica, a held request from 127.0.7.1 gets 200, a second from there 429, one from 127.0.7.2
    200. Returns the three statuses."""
    def hold(source):
        c = http.client.HTTPConnection(HOST, t.port, timeout=30, source_address=(source, 0))
        c.request("POST", "/completion", body=json.dumps({"prompt": "hold", "n_predict": 240, "stream": True,
                                                          "ignore_eos": True}),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status == 200:
            r.read(1)  # the stream has begun: the request is in flight at the replica
        else:
            r.read()
        return c, r.status
    held = []
    try:
        for source in ("127.0.7.1", "127.0.7.1", "127.0.7.2"):
            c, status = hold(source)
            held.append((c, status))
        return [st for _, st in held]
    finally:
        for c, _ in held:
            c.close()


SLACK_MS = 20  # p99 may grow by this much whatever the ratio: a time slice or two of a busy scheduler


def too_slow(r):
    """The normal client's p99 with the hostile connections open is over 2x the baseline's and more
    than SLACK_MS above it."""
    return r["p99_ratio"] > 2.0 and r["hostile"]["p99_ms"] - r["baseline"]["p99_ms"] > SLACK_MS


def per_ip_check(t, limit, timeout=60.0):
    """limit + 8 connections from one address: exactly 8 are closed at accept and counted, and each of
    the other limit answers a request on its connection. Waits for those events (up to timeout), not
    for a time. Returns (connections closed, refusals counted, connections that answered)."""
    port = t.port
    before = t.refused_per_ip()
    socks = []
    for _ in range(limit + 8):
        s = socket.socket()
        s.bind(("127.0.9.9", 0))
        s.connect((HOST, port))
        socks.append(s)
    deadline = time.time() + timeout
    closed, counted = set(), 0
    while time.time() < deadline and (len(closed) < 8 or counted < 8):
        ready, _, _ = select.select([s for s in socks if s not in closed], [], [], 0.2)
        for s in ready:
            try:
                if s.recv(1) == b"":
                    closed.add(s)
            except OSError:
                closed.add(s)
        counted = int(t.refused_per_ip() - before)
    answered = 0
    for s in socks:   # every connection the limit let in must serve; a closed one cannot
        if s in closed:
            continue
        try:
            s.settimeout(max(1.0, deadline - time.time()))
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            if s.recv(64).startswith(b"HTTP/1.1 200"):
                answered += 1
            else:
                closed.add(s)
        except OSError:
            closed.add(s)
    for s in socks:
        s.close()
    return len(closed), counted, answered


def measure_pair(args, t, pid):
    port = t.port
    base = normal_client(port, args.requests)
    before = proc_status(pid)
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--hostile-child", str(port),
                              str(args.idle), str(args.trickle), str(args.per_ip)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    opened = json.loads(child.stdout.readline())
    target = args.idle + args.trickle
    deadline = time.time() + 20
    while time.time() < deadline and t.open_connections() < target:
        time.sleep(0.2)
    held = t.open_connections()
    during = proc_status(pid)
    hostile = normal_client(port, args.requests)
    after = proc_status(pid)
    m2 = metrics(t.replica_port)
    child.stdin.close()
    child.wait(30)
    return {"baseline": base, "hostile": hostile, "opened": opened,
            "connections_open": held, "server_connections_peak": m2.get("sasp_connections_open_peak"),
            "threads_before": before["Threads"], "threads_during": max(during["Threads"], after["Threads"]),
            "rss_before_kb": before["VmRSS"], "rss_during_kb": max(during["VmRSS"], after["VmRSS"]),
            "p99_ratio": hostile["p99_ms"] / max(base["p99_ms"], 1e-3)}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--hostile-child":
        hostile_main(*[int(a) for a in sys.argv[2:6]])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", required=True)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--idle", type=int, default=5000)
    ap.add_argument("--trickle", type=int, default=1000)
    ap.add_argument("--per-ip", type=int, default=100)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--server-log", default="/tmp/sasp-hostile-server.log")
    ap.add_argument("--json")
    ap.add_argument("--via-haproxy", metavar="CONFIG", help="attack through HAProxy running this file")
    args = ap.parse_args()
    need = args.idle + args.trickle + 512
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        print("hostile.py: the hard limit of open files is %d, under the %d this test needs; skipped" % (hard, need))
        return 77
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))  # the server and the child inherit it
    server, port = start_server(args)
    lb = None
    try:
        t = Target(port)
        if args.via_haproxy:
            lb, t = start_haproxy(args, port)
        normal_client(t.port, 20)  # warm up
        r = measure_pair(args, t, server.pid)
        if too_slow(r) and not r["hostile"]["failed"]:
            print("hostile.py: p99 ratio %.2f; measuring the pair again (shared machine)" % r["p99_ratio"])
            r = measure_pair(args, t, server.pid)
        r["per_ip_extra_closed"], r["refused_per_ip"], r["per_ip_answered"] = per_ip_check(t, 128)
        if lb:
            r["forwarded_statuses"] = forwarded_check(t)
    except OSError as e:  # a counter or a check that got no answer at all
        print("hostile.py: FAIL: %s stopped answering: %r" % ("the balancer" if lb else "the server", e))
        r = None
    finally:
        if lb:
            lb.terminate()
            lb.wait(30)
        server.send_signal(signal.SIGTERM)
        rc = server.wait(30)
    if r is None:
        return 1
    r["server_exit_status"] = rc
    print(json.dumps(r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)
    errors = []
    if r["baseline"]["failed"] or r["hostile"]["failed"]:
        errors.append("normal requests failed: %s %s" % (r["baseline"]["failed"][:5], r["hostile"]["failed"][:5]))
    if (r["connections_open"] or 0) < args.idle + args.trickle:
        errors.append("%s held %s connections, not the %d hostile ones"
                      % ("the balancer" if lb else "the server", r["connections_open"], args.idle + args.trickle))
    if too_slow(r):
        errors.append("p99 with hostile connections is %.2fx the baseline's and %.1f ms above it (limits 2x and "
                      "%d ms)" % (r["p99_ratio"], r["hostile"]["p99_ms"] - r["baseline"]["p99_ms"], SLACK_MS))
    if lb and (r["server_connections_peak"] or 0) > 64:
        errors.append("the replica behind the balancer held %s connections at once (the balancer should "
                      "hold the hostile ones)" % r["server_connections_peak"])
    if lb and r["forwarded_statuses"] != [200, 429, 200]:
        errors.append("through the balancer, held requests from 127.0.7.1, 127.0.7.1, 127.0.7.2 got %s, not "
                      "[200, 429, 200]: X-Forwarded-For does not carry the client" % r["forwarded_statuses"])
    if r["threads_during"] > r["threads_before"] + 2:
        errors.append("threads grew from %d to %d" % (r["threads_before"], r["threads_during"]))
    if r["per_ip_extra_closed"] != 8 or r["refused_per_ip"] != 8 or r["per_ip_answered"] != 128:
        errors.append("the per-address limit of 128 closed %d of 136 connections, not 8 (counted %d); "
                      "%d of the others answered, not 128" % (r["per_ip_extra_closed"], r["refused_per_ip"],
                                                              r["per_ip_answered"]))
    if rc != 0:
        errors.append("server exit status %s" % rc)
    for e in errors:
        print("hostile.py: FAIL: " + e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
