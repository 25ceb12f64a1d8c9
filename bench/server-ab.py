#!/usr/bin/env python3
"""server-ab.py: two sasp-server builds side by side, under the same load, alternated run by run.

  bench/server-ab.py OLD_BINARY NEW_BINARY [--clients 8] [--pairs 30] [--tokens 200] [--body JSON]
                     [-m MODEL_DIR] [-t THREADS] [--stream]

Both servers run at once (idle while the other is measured) on the model (--parallel = clients). Each
pair of runs sends `clients` concurrent non-streamed /v1/completions of `tokens` tokens (ignore_eos,
the server's default sampling, plus --body's fields, e.g. '{"logprobs": 3}') to one server, then the
same to the other, the order swapped every pair. Prints the median of new/old tokens/s over the pairs
with its quartiles, and of old/new process CPU time per token: on a shared, noisy machine a ratio of
runs taken seconds apart is steadier than either figure. With --stream the clients stream instead
(greedy, a 32-token prompt of token ids, read by the one event loop of bench/peers/servers.py, whose
client costs little beside the servers'); --body does not apply there. Standard library only.
"""
import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "bench", "peers"))
import servers as streams  # noqa: E402 (its server start-up and streaming client)
PROMPT = "def main():\n    x = compute("


def start(binary, port, model, threads, parallel):
    return streams.start([binary, "-m", model, "--port", str(port), "-t", str(threads), "--parallel", str(parallel)],
                         port)


def cpu_seconds(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def one_request(port, body, out, i):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    doc = json.loads(r.read())
    if r.status != 200:
        raise SystemExit(f"HTTP {r.status}: {doc}")
    out[i] = doc["usage"]["completion_tokens"]


def run_streams(port, pid, clients, tokens):
    c0 = cpu_seconds(pid)
    tps, _ = streams.measure(port, clients, list(range(300, 332)), tokens)
    return tps, (cpu_seconds(pid) - c0) * 1000 / (clients * tokens)


def run(port, pid, clients, body):
    if body.get("stream"):
        return run_streams(port, pid, clients, body["max_tokens"])
    out = [0] * clients
    th = [threading.Thread(target=one_request, args=(port, body, out, i)) for i in range(clients)]
    c0, t0 = cpu_seconds(pid), time.time()
    for t in th:
        t.start()
    for t in th:
        t.join()
    wall, cpu = time.time() - t0, cpu_seconds(pid) - c0
    return sum(out) / wall, cpu * 1000 / max(1, sum(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--body", default="{}")
    ap.add_argument("-m", "--model", default=os.path.join(TOP, "models", "sasp-small"))
    ap.add_argument("-t", "--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--stream", action="store_true", help="streaming clients (greedy, token-id prompt)")
    a = ap.parse_args()
    if a.stream and json.loads(a.body):
        ap.error("--body does not apply with --stream")
    body = {"prompt": PROMPT, "max_tokens": a.tokens, "ignore_eos": True}
    body.update(json.loads(a.body))
    if a.stream:
        body = {"stream": True, "max_tokens": a.tokens}
    procs = [start(a.old, 18701, a.model, a.threads, a.clients), start(a.new, 18702, a.model, a.threads, a.clients)]
    try:
        servers = [(18701, procs[0].pid), (18702, procs[1].pid)]
        for port, pid in servers:  # warm up
            run(port, pid, a.clients, dict(body, max_tokens=32))
        speed, cpu = [], []
        for k in range(a.pairs):
            order = servers if k % 2 == 0 else servers[::-1]
            got = {port: run(port, pid, a.clients, body) for port, pid in order}
            old, new = got[18701], got[18702]
            speed.append(new[0] / old[0])
            cpu.append(old[1] / new[1] if new[1] > 0 else float("nan"))
        qs, qc = statistics.quantiles(speed, n=4), statistics.quantiles(cpu, n=4)
        print(f"{a.clients} {'streaming ' if a.stream else ''}clients, {a.tokens} tokens, body {json.dumps(json.loads(a.body))}, {a.pairs} pairs: "
              f"new/old tokens/s {statistics.median(speed):.3f} [{qs[0]:.3f}, {qs[2]:.3f}]; "
              f"old/new CPU per token {statistics.median(cpu):.3f} [{qc[0]:.3f}, {qc[2]:.3f}]")
    finally:
        for p in procs:
            p.terminate()
            p.wait()


if __name__ == "__main__":
    main()
