#!/usr/bin/env python3
"""balancer_test.py: three sasp-server replicas behind HAProxy with deploy/haproxy.cfg, one killed
with SIGKILL under a mixed load and started again.

  balancer_test.py SASP_SERVER MODEL_DIR HAPROXY_CFG [--duration S]

Replicas r1, r2, r3 (tests/fixtures/tiny-model, --step-delay so that a stream lasts about a second)
on free loopback ports, HAProxy in the foreground with the repository's configuration (addresses in
its environment variables). Eight clients loop over non-streamed completions and chat completions,
SSE streams (/v1/completions) and NDJSON streams (/api/generate). When r2 has streams in flight it is
killed with SIGKILL; four seconds later it is started again on its port. Checks:
  - every non-streamed request succeeds (200, whole JSON): HAProxy retried those r2 dropped;
  - every stream that did not finish was on r2 when it died and ended with an error at the client
    (the chunked transfer cut short), and there was at least one such stream;
  - every other stream finished ([DONE], or "done": true), tokens arriving one by one (the first
    long before the last: not buffered by the balancer);
  - HAProxy marked r2 down and up again, and r2 served requests after its restart;
  - a session (X-Session-Id, or `user` in the body) stays on one replica; sessions spread.
Prints the figures: requests by kind, retried requests (HAProxy's log), cut streams, time r2 was out.
Exits non-zero on a failure."""
import argparse
import csv
import http.client
import io
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, what, limit=60):
    t0 = time.time()
    while time.time() - t0 < limit:
        if proc.poll() is not None:
            raise SystemExit("balancer_test: %s exited with %s" % (what, proc.returncode))
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("balancer_test: %s does not listen on %d" % (what, port))


class Replica:
    def __init__(self, name, server, model, port, logdir):
        self.name, self.server, self.model, self.port = name, server, model, port
        self.log = open(os.path.join(logdir, name + ".log"), "a")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([self.server, "-m", self.model, "--host", HOST, "--port", str(self.port),
                                      "-t", "1", "--parallel", "4", "--step-delay", "15"],
                                     stdout=self.log, stderr=self.log)
        wait_port(self.port, self.proc, self.name)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def lb_states(stats_port):
    """{server: status} of backend sasp, from HAProxy's CSV stats."""
    c = http.client.HTTPConnection(HOST, stats_port, timeout=5)
    c.request("GET", "/stats;csv")
    text = c.getresponse().read().decode().lstrip("# ")
    c.close()
    return {r["svname"]: r["status"] for r in csv.DictReader(io.StringIO(text))
            if r["pxname"] == "sasp" and r["svname"] not in ("FRONTEND", "BACKEND")}


def wait_state(stats_port, server, want, limit=30):
    t0 = time.time()
    while time.time() - t0 < limit:
        if lb_states(stats_port).get(server, "").startswith(want):
            return time.time()
        time.sleep(0.05)
    raise SystemExit("balancer_test: %s not %s after %d s: %s" % (server, want, limit, lb_states(stats_port)))


# --- the clients ---

KINDS = ["completion", "chat", "sse", "ndjson"]


def lines(resp):
    """The non-empty lines of a streamed body as they arrive. read1, not readline: http.client's
    readline ends quietly at a chunked body cut short, read1 raises IncompleteRead as a client should."""
    buf = b""
    while True:
        chunk = resp.read1(65536)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                yield line.strip()


def request(lb_port, kind, rng, headers=None, live=None):
    """One request; a dict that says what happened. A stream is in live (when given) while it runs."""
    r = {"kind": kind, "start": time.time(), "replica": None, "ok": False, "error": None,
         "status": None, "events": 0, "first": None, "last": None}
    body = {"completion": {"prompt": "def f(x):", "max_tokens": rng.randint(8, 40), "temperature": 0},
            "chat": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": rng.randint(8, 40)},
            "sse": {"prompt": "class A:", "max_tokens": 60, "stream": True, "ignore_eos": True},
            "ndjson": {"prompt": "import os", "options": {"num_predict": 60}, "ignore_eos": True}}[kind]
    path = {"completion": "/v1/completions", "chat": "/v1/chat/completions", "sse": "/v1/completions",
            "ndjson": "/api/generate"}[kind]
    r["body"] = body
    c = http.client.HTTPConnection(HOST, lb_port, timeout=60)
    try:
        c.request("POST", path, json.dumps(body), dict({"Content-Type": "application/json"}, **(headers or {})))
        resp = c.getresponse()
        r["status"], r["replica"] = resp.status, resp.getheader("X-Sasp-Replica")
        r["got_headers"] = time.time()
        if live is not None:
            live[id(r)] = r
        if kind in ("completion", "chat"):
            data = json.loads(resp.read())
            r["ok"] = resp.status == 200 and data["usage"]["completion_tokens"] > 0
            r["tokens"] = data["usage"]["completion_tokens"]
        else:
            done = False
            for line in lines(resp):
                if kind == "sse":
                    payload = line[len(b"data: "):]
                    if payload == b"[DONE]":
                        done = True
                        continue
                    ev = json.loads(payload)
                    text = ev["choices"][0]["text"] if ev.get("choices") else ""
                else:
                    ev = json.loads(line)
                    done = done or ev.get("done") is True
                    text = ev.get("response", "")
                if text:
                    r["events"] += 1
                    r["first"] = r["first"] or time.time()
                    r["last"] = time.time()
            r["ok"] = resp.status == 200 and done
            if not done:
                r["error"] = "the stream ended without its last event, and no transfer error"
    except (http.client.HTTPException, OSError, ValueError) as e:
        r["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        c.close()
        if live is not None:
            live.pop(id(r), None)
    r["end"] = time.time()
    return r


class Load:
    def __init__(self, lb_port, workers):
        self.lb_port, self.results, self.lock = lb_port, [], threading.Lock()
        self.live = {}  # the requests that have their answer's headers and are still running
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.worker, args=(i,)) for i in range(workers)]

    def worker(self, i):
        rng = random.Random(i)
        while not self.stop.is_set():
            kind = KINDS[rng.randrange(len(KINDS))]
            r = request(self.lb_port, kind, rng, live=self.live)
            with self.lock:
                self.results.append(r)

    def start(self):
        for t in self.threads:
            t.start()

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join()


def streaming_on(load, replica):
    """Streams that have sent tokens from a replica and are still running."""
    return sum(1 for r in list(load.live.values()) if r["replica"] == replica and r["events"] > 0)


def check_sticky(lb_port):
    rng = random.Random(7)
    for headers, body_user in (({"X-Session-Id": "session-a"}, None), ({}, "alice")):
        seen = set()
        for _ in range(8):
            body = {"prompt": "x", "max_tokens": 2}
            if body_user:
                body["user"] = body_user
            c = http.client.HTTPConnection(HOST, lb_port, timeout=30)
            c.request("POST", "/v1/completions", json.dumps(body), dict({"Content-Type": "application/json"}, **headers))
            resp = c.getresponse()
            resp.read()
            assert resp.status == 200
            seen.add(resp.getheader("X-Sasp-Replica"))
            c.close()
        assert len(seen) == 1, "a session went to %s" % seen
    spread = set()
    for s in range(12):
        r = request(lb_port, "completion", rng, {"X-Session-Id": "s%d" % s})
        assert r["ok"], r
        spread.add(r["replica"])
    assert len(spread) >= 2, "12 sessions all on %s" % spread
    print("balancer_test: sticky: X-Session-Id and `user` each kept 8 requests on one replica; "
          "12 sessions spread over %d replicas" % len(spread))


def retried_in_log(path):
    """Requests HAProxy's log shows as retried: after the termination state, the counts
    actconn/feconn/beconn/srv_conn/retries, retries with a + when redispatched to another server."""
    n = 0
    with open(path, errors="replace") as f:
        for line in f:
            m = re.search(r" [-A-Za-z]{4} \d+/\d+/\d+/\d+/(\+?)(\d+) ", line)
            if m and (m.group(1) or int(m.group(2)) > 0):
                n += 1
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("server")
    ap.add_argument("model")
    ap.add_argument("config")
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--workers", type=int, default=8)
    a = ap.parse_args()
    logdir = tempfile.mkdtemp(prefix="sasp-lb-")
    ports = [free_port() for _ in range(5)]
    replicas = [Replica("r%d" % (i + 1), a.server, a.model, ports[i], logdir) for i in range(3)]
    lb_port, stats_port = ports[3], ports[4]
    env = dict(os.environ, SASP_LB_BIND="%s:%d" % (HOST, lb_port), SASP_LB_STATS="%s:%d" % (HOST, stats_port))
    for i, r in enumerate(replicas):
        env["SASP_REPLICA%d" % (i + 1)] = "%s:%d" % (HOST, r.port)
    lb_log_path = os.path.join(logdir, "haproxy.log")
    lb_log = open(lb_log_path, "w")
    lb = None
    try:
        for r in replicas:
            r.start()
        lb = subprocess.Popen(["haproxy", "-db", "-f", a.config], env=env, stdout=lb_log, stderr=lb_log)
        wait_port(lb_port, lb, "haproxy")
        for r in replicas:
            wait_state(stats_port, r.name, "UP")
        print("balancer_test: haproxy on %d, replicas on %s: all UP" % (lb_port, [r.port for r in replicas]))

        load = Load(lb_port, a.workers)
        t0 = time.time()
        load.start()
        time.sleep(a.duration * 0.3)
        victim = replicas[1]
        while streaming_on(load, victim.name) < 2 and time.time() - t0 < a.duration * 0.6:
            time.sleep(0.005)
        in_flight = streaming_on(load, victim.name)
        t_kill = time.time()
        victim.kill()
        t_down = wait_state(stats_port, victim.name, "DOWN")
        time.sleep(4)
        t_restart = time.time()
        victim.start()
        t_up = wait_state(stats_port, victim.name, "UP")
        time.sleep(max(0.0, a.duration - (time.time() - t0)))
        load.join()
        elapsed = time.time() - t0

        res = load.results
        plain = [r for r in res if r["kind"] in ("completion", "chat")]
        streams = [r for r in res if r["kind"] in ("sse", "ndjson")]
        failed_plain = [r for r in plain if not r["ok"]]
        cut = [r for r in streams if not r["ok"]]
        assert not failed_plain, "non-streamed requests failed: %s" % failed_plain[:3]
        assert cut, "the kill cut no stream (r2 had %d streams in flight)" % in_flight
        for r in cut:
            assert r["replica"] == victim.name and r["start"] < t_kill < r["end"] + 0.01, \
                "a stream failed that was not on r2 when it was killed: %s" % r
            assert r["error"] and "without its last event" not in r["error"], "a cut stream without an error: %s" % r
        for r in streams:
            if r["ok"]:
                assert r["events"] > 10 and r["last"] - r["first"] > 0.3, "a stream came in one piece: %s" % r
        after = [r for r in res if r["replica"] == victim.name and r["start"] > t_up]
        assert after, "r2 took no request after its restart"
        assert all(r["ok"] for r in after), "a request on the restarted r2 failed"
        retried = retried_in_log(lb_log_path)
        counts = {k: sum(1 for r in res if r["kind"] == k) for k in KINDS}
        tokens = sum(r.get("tokens", 0) for r in plain) + sum(r["events"] for r in streams)
        print("balancer_test: %d requests in %.1f s from %d clients (%s), %d tokens (%.0f/s)"
              % (len(res), elapsed, a.workers, ", ".join("%s %d" % kv for kv in counts.items()), tokens,
                 tokens / elapsed))
        print("balancer_test: SIGKILL of r2 with %d streams in flight: %d of %d non-streamed requests failed "
              "(%d requests retried on another replica, HAProxy's log); %d of %d streams cut, all on r2, "
              "each with an error at the client (%s); r2 marked DOWN %.2f s after the kill, restarted "
              "%.1f s later, UP %.2f s after its restart, then served %d requests"
              % (in_flight, len(failed_plain), len(plain), retried, len(cut), len(streams),
                 sorted(set(r["error"].split(":")[0] for r in cut)), t_down - t_kill, t_restart - t_kill,
                 t_up - t_restart, len(after)))
        check_sticky(lb_port)
    finally:
        if lb and lb.poll() is None:
            lb.terminate()
            lb.wait()
        for r in replicas:
            r.stop()
        lb_log.close()
    if os.environ.get("SASP_KEEP_LOGS"):
        print("balancer_test: logs in", logdir)
    else:
        subprocess.run(["rm", "-rf", logdir])


if __name__ == "__main__":
    main()
