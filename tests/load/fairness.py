#!/usr/bin/env python3
"""fairness.py: one client's many long generations do not hold every slot while another client's short
request waits behind all of them (issue 17). Python standard library only; run by tests/load/fairness.sh
under `make check`.

The daemon runs with --parallel 4 --step-delay 5 (tests/fixtures/tiny-model). Client A (127.0.0.1)
opens 32 streams at once, each of 24..72 tokens (ignore_eos); client B (127.0.0.2) then sends short
non-streamed requests (max_tokens 2) one after the other until A's streams are done. B's wait (request
to answer) is compared with an idle server's:

  fair:    B from 127.0.0.2, another client: a free slot goes to the client holding the fewest, so B
           waits for the next slot to free, not for A's queue. Bound: median wait <= the idle median
           plus L, the mean time one of A's generations holds its slot (both from this run).
  control: the same with B sending from 127.0.0.1 (A's own address: one client, first come first
           served): B's first request waits behind A's queue. The longest wait of the control must be
           over twice the fair run's longest, or the test shows nothing.

Prints the figures as one JSON line (--json FILE writes them too). Ratios only, no absolute time.
"""
import argparse
import http.client
import json
import random
import re
import signal
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"


def post(port, body, source, stream=False):
    c = http.client.HTTPConnection(HOST, port, timeout=120, source_address=(source, 0))
    try:
        c.request("POST", "/v1/completions", body=json.dumps(dict(body, stream=stream)),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        if not stream:
            data = r.read()
            return r.status, data, None
        first = None
        while True:
            line = r.readline()
            if not line:
                break
            if line.startswith(b"data: ") and first is None:
                first = time.perf_counter()
        return r.status, b"", first
    finally:
        c.close()


def short_wait(port, source):
    t = time.perf_counter()
    st, data, _ = post(port, {"prompt": "b", "max_tokens": 2, "ignore_eos": True}, source)
    assert st == 200, (st, data)
    return time.perf_counter() - t


def queue_depth(port):
    c = http.client.HTTPConnection(HOST, port, timeout=30)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    m = re.search(r"^sasp_queue_depth (\d+)", text, re.M)
    return int(m.group(1)) if m else 0


def run_load(port, b_source, seed):
    """A's 32 streams, B's sequential short requests meanwhile: (B's waits, A's slot times)."""
    rng = random.Random(seed)
    holds, errors = [], []

    def a_stream(i, n):
        st, _, first = post(port, {"prompt": "a%d" % i, "max_tokens": n, "ignore_eos": True}, "127.0.0.1",
                            stream=True)
        if st != 200:
            errors.append(st)
        elif first is not None:
            holds.append(time.perf_counter() - first)

    threads = [threading.Thread(target=a_stream, args=(i, rng.randint(24, 72))) for i in range(32)]
    for t in threads:
        t.start()
    deadline = time.time() + 30
    while queue_depth(port) < 20 and time.time() < deadline:
        time.sleep(0.01)
    waits = []
    while any(t.is_alive() for t in threads) and len(waits) < 40:
        waits.append(short_wait(port, b_source))
    for t in threads:
        t.join()
    assert not errors, errors
    return waits, holds


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", required=True)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--server-log", default="/tmp/sasp-fairness-server.log")
    ap.add_argument("--json")
    args = ap.parse_args()
    log = open(args.server_log, "wb")
    p = subprocess.Popen([args.server, "-m", args.model, "--host", HOST, "--port", "0", "-t", "1",
                          "--parallel", "4", "--step-delay", "5"], stdout=subprocess.PIPE, stderr=log)
    port = None
    for line in iter(p.stdout.readline, b""):
        m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)/", line)
        if m:
            port = int(m.group(1))
            break
    if port is None:
        sys.exit("fairness.py: the server did not start (log: %s)" % args.server_log)
    threading.Thread(target=p.stdout.read, daemon=True).start()
    try:
        for _ in range(3):
            short_wait(port, "127.0.0.2")  # warm up
        idle = [short_wait(port, "127.0.0.2") for _ in range(10)]
        fair_waits, holds = run_load(port, "127.0.0.2", 1)
        ctrl_waits, _ = run_load(port, "127.0.0.1", 1)
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(30)
    L = sum(holds) / len(holds)
    r = {"idle_median_ms": median(idle) * 1e3, "fair_median_ms": median(fair_waits) * 1e3,
         "fair_max_ms": max(fair_waits) * 1e3, "fair_requests": len(fair_waits),
         "control_median_ms": median(ctrl_waits) * 1e3, "control_max_ms": max(ctrl_waits) * 1e3,
         "control_requests": len(ctrl_waits),
         "long_hold_mean_ms": L * 1e3, "server_exit_status": rc}
    r["bound_ms"] = r["idle_median_ms"] + r["long_hold_mean_ms"]
    print(json.dumps(r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)
    errors = []
    if r["fair_median_ms"] > r["bound_ms"]:
        errors.append("B's median wait %.0f ms is over the bound %.0f ms (idle median + one long generation)" %
                      (r["fair_median_ms"], r["bound_ms"]))
    if r["control_max_ms"] < 2 * r["fair_max_ms"]:
        errors.append("the control (one client) waited at most %.0f ms, not over twice the fair run's %.0f ms" %
                      (r["control_max_ms"], r["fair_max_ms"]))
    if rc != 0:
        errors.append("server exit status %s" % rc)
    for e in errors:
        print("fairness.py: FAIL: " + e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
