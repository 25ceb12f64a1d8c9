#!/usr/bin/python3
"""sasp-server against llama.cpp's llama-server: aggregate tokens/s and time to first token with
1, 4, 8 and 16 concurrent streaming clients, on models of shape A.

    bench/peers/servers.py --sasp-server BUILD/sasp-server --sasp-model models/sasp-small \\
        --llama-server PEERS/llama.cpp/build/bin/llama-server --gguf PEERS/models/llama_A_f32.gguf \\
        [-t 2] [--clients 1,4,8,16] [--tokens 128] [--prompt-tokens 32] [--rounds 3]

Each server is started with --parallel (llama-server: -np, and 512 tokens of context per slot) equal
to the largest client count. For every client count n, n threads each stream one completion from
/v1/completions: the same prompt of token ids (no tokenizer difference), greedy, ignore_eos,
--tokens tokens. The two servers alternate, one (round, client count) at a time, and the median over
the rounds is reported:
  tokens/s   all generated tokens / wall time from the first request to the last end of stream
  TTFT       the median over the clients of the time from sending a request to its first token
Build llama-server with SERVER=1 bench/peers/build-peers.sh. Standard library only.
"""
import argparse
import http.client
import json
import socket
import statistics
import subprocess
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, port):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        if p.poll() is not None:
            raise SystemExit("%s exited %d" % (cmd[0], p.returncode))
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return p
        except OSError:
            pass
        time.sleep(0.5)
    p.kill()
    raise SystemExit("%s did not come up" % cmd[0])


def stream_one(port, prompt, tokens, out):
    t0 = time.time()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = {"prompt": prompt, "max_tokens": tokens, "temperature": 0, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(r.read()[:300])
    first, chunks, usage = None, 0, 0
    for line in r:
        if line.startswith(b"data: [DONE]"):
            break
        if line.startswith(b"data: {"):
            obj = json.loads(line[6:])
            if obj.get("choices"):
                chunks += 1
                first = first or time.time()
            usage = (obj.get("usage") or {}).get("completion_tokens", usage)
    c.close()
    out.append((first - t0, max(usage, chunks), time.time()))


def measure(port, n, prompt, tokens):
    out, t0 = [], time.time()
    threads = [threading.Thread(target=stream_one, args=(port, prompt, tokens, out)) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(out) != n:
        raise RuntimeError("%d of %d streams failed" % (n - len(out), n))
    return sum(o[1] for o in out) / (max(o[2] for o in out) - t0), statistics.median(o[0] for o in out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sasp-server", required=True)
    ap.add_argument("--sasp-model", required=True)
    ap.add_argument("--llama-server", required=True)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--clients", default="1,4,8,16")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    clients = [int(x) for x in a.clients.split(",")]
    par, t = max(clients), str(a.threads)
    prompt = [300 + i for i in range(a.prompt_tokens)]
    ports = {"sasp-server": free_port(), "llama-server": free_port()}
    cmds = {"sasp-server": [a.sasp_server, "-m", a.sasp_model, "--host", "127.0.0.1", "--port",
                            str(ports["sasp-server"]), "-t", t, "--parallel", str(par), "--max-queue", "256"],
            "llama-server": [a.llama_server, "-m", a.gguf, "--host", "127.0.0.1", "--port",
                             str(ports["llama-server"]), "-t", t, "-tb", t, "-np", str(par), "-c", str(512 * par)]}
    procs = {k: start(cmd, ports[k]) for k, cmd in cmds.items()}
    res = {(k, n): [] for k in cmds for n in clients}
    try:
        for k in cmds:  # one warm-up stream each
            measure(ports[k], 1, prompt, 8)
        for r in range(a.rounds):
            for n in clients:
                for k in cmds:
                    res[(k, n)].append(measure(ports[k], n, prompt, a.tokens))
                    print("round %d, %d clients, %s: %.0f tok/s, TTFT %.0f ms" %
                          (r, n, k, res[(k, n)][-1][0], 1000 * res[(k, n)][-1][1]), flush=True)
    finally:
        for p in procs.values():
            p.terminate()
            p.wait()
    print("\n| clients | sasp-server tok/s | llama-server tok/s | ratio | sasp TTFT ms | llama TTFT ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in clients:
        s = [statistics.median(v[i] for v in res[("sasp-server", n)]) for i in (0, 1)]
        l = [statistics.median(v[i] for v in res[("llama-server", n)]) for i in (0, 1)]
        print("| %d | %.0f | %.0f | %.2fx | %.0f | %.0f |" % (n, s[0], l[0], s[0] / l[0], 1000 * s[1], 1000 * l[1]))
    print("\nmedians of %d rounds; %d-token prompt, %d tokens per stream, %s threads each" %
          (a.rounds, a.prompt_tokens, a.tokens, t))


if __name__ == "__main__":
    main()
