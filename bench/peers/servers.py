#!/usr/bin/python3
"""sasp-server against llama.cpp's llama-server: aggregate tokens/s and time to first token with
1, 4, 8 and 16 concurrent streaming clients, on models of shape A.

    bench/peers/servers.py --sasp-server BUILD/sasp-server --sasp-model models/sasp-small \\
        --llama-server PEERS/llama.cpp/build/bin/llama-server --gguf PEERS/models/llama_A_f32.gguf \\
        [-t 2] [--clients 1,4,8,16] [--tokens 128] [--prompt-tokens 32] [--rounds 3] [--sasp-weights TYPE]

Each server is started with --parallel (llama-server: -np, and 512 tokens of context per slot) equal
to the largest client count. For every client count n, n connections each stream one completion from
/v1/completions (one event loop reads them all): the same prompt of token ids (no tokenizer
difference), greedy, ignore_eos, --tokens tokens. The two servers alternate, one (round, client
count) at a time, a second apart (after a stream llama-server's threads spin on for a while, which
slowed a short run of sasp-server right after it by half), and the median over the rounds is
reported:
  tokens/s   all generated tokens / wall time from the first request to the last end of stream
  TTFT       the median over the clients of the time from sending a request to its first token
Build llama-server with SERVER=1 bench/peers/build-peers.sh. Standard library only.
"""
import argparse
import http.client
import json
import selectors
import socket
import statistics
import subprocess
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


class Stream:
    """One streamed completion read by the event loop in measure(): HTTP/1.1 with chunked transfer
    decoded by hand, server-sent events split on blank lines; only a chunk that may hold the usage (or
    has no choices) is parsed as JSON, so that the client's own cost per token stays small beside the
    servers' (with http.client's line reader, a thread a stream, one stream from either server was read
    at about 2,000 tokens/s on 2 vCPUs, half of what this loop reads)."""

    def __init__(self, port, body, t0):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        self.sock.setblocking(False)
        self.t0, self.first, self.end = t0, None, None
        self.raw, self.head, self.chunked, self.need = b"", None, False, None
        self.text, self.chunks, self.usage = b"", 0, 0

    def feed(self, data):
        self.raw += data
        if self.head is None:
            i = self.raw.find(b"\r\n\r\n")
            if i < 0:
                return
            self.head, self.raw = self.raw[:i].decode("latin-1"), self.raw[i + 4:]
            if not self.head.startswith("HTTP/1.1 200"):
                raise RuntimeError(self.head.split("\r\n")[0])
            self.chunked = "transfer-encoding: chunked" in self.head.lower()
        if not self.chunked:
            self.text, self.raw = self.text + self.raw, b""
        while self.chunked:
            if self.need is None:
                i = self.raw.find(b"\r\n")
                if i < 0:
                    break
                self.need, self.raw = int(self.raw[:i].split(b";")[0], 16), self.raw[i + 2:]
            if len(self.raw) < self.need + 2:
                break
            self.text += self.raw[:self.need]
            self.raw, self.need = self.raw[self.need + 2:], None
        events = self.text.split(b"\n\n")
        self.text = events.pop()
        for ev in events:
            if not ev.startswith(b"data: ") or ev.startswith(b"data: [DONE]"):
                continue
            if b'"usage"' in ev or b'"choices":[]' in ev or b'"choices": []' in ev:
                obj = json.loads(ev[6:])
                self.usage = max(self.usage, (obj.get("usage") or {}).get("completion_tokens", 0))
                if not obj.get("choices"):
                    continue
            self.chunks += 1
            self.first = self.first or time.time()


def measure(port, n, prompt, tokens):
    """n streams at once: (all their tokens / wall time to the last end, median time to first token)."""
    body = json.dumps({"prompt": prompt, "max_tokens": tokens, "temperature": 0, "ignore_eos": True,
                       "stream": True, "stream_options": {"include_usage": True}}).encode()
    sel, t0 = selectors.DefaultSelector(), time.time()
    streams = [Stream(port, body, t0) for _ in range(n)]
    for st in streams:
        sel.register(st.sock, selectors.EVENT_READ, st)
    left = n
    while left:
        ready = sel.select(timeout=600)
        if not ready:
            raise RuntimeError("%d of %d streams sent nothing for 600 s" % (left, n))
        for key, _ in ready:
            st = key.data
            data = st.sock.recv(1 << 16)
            if data:
                st.feed(data)
                continue
            st.end = time.time()
            sel.unregister(st.sock)
            st.sock.close()
            left -= 1
    if any(st.first is None for st in streams):
        raise RuntimeError("a stream sent no token")
    return (sum(max(st.usage, st.chunks) for st in streams) / (max(st.end for st in streams) - t0),
            statistics.median(st.first - st.t0 for st in streams))


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
    ap.add_argument("--sasp-weights", help="sasp-server's --weights (default: its own, auto)")
    a = ap.parse_args()
    clients = [int(x) for x in a.clients.split(",")]
    par, t = max(clients), str(a.threads)
    prompt = [300 + i for i in range(a.prompt_tokens)]
    ports = {"sasp-server": free_port(), "llama-server": free_port()}
    cmds = {"sasp-server": [a.sasp_server, "-m", a.sasp_model, "--host", "127.0.0.1", "--port",
                            str(ports["sasp-server"]), "-t", t, "--parallel", str(par), "--max-queue", "256"] +
                           (["--weights", a.sasp_weights] if a.sasp_weights else []),
            "llama-server": [a.llama_server, "-m", a.gguf, "--host", "127.0.0.1", "--port",
                             str(ports["llama-server"]), "-t", t, "-tb", t, "-np", str(par), "-c", str(512 * par)]}
    procs = {k: start(cmd, ports[k]) for k, cmd in cmds.items()}
    c = http.client.HTTPConnection("127.0.0.1", ports["sasp-server"], timeout=10)
    c.request("GET", "/props")
    sasp_weights = json.loads(c.getresponse().read()).get("weights", "?")
    res = {(k, n): [] for k in cmds for n in clients}
    try:
        for k in cmds:  # one warm-up stream each
            measure(ports[k], 1, prompt, 8)
        for r in range(a.rounds):
            for n in clients:
                for k in cmds:
                    time.sleep(1)  # llama-server's threads go on spinning for a while after a stream (~0.1 CPU-s)
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
    print("\nmedians of %d rounds; %d-token prompt, %d tokens per stream, %s threads each; sasp-server's "
          "weights %s, llama-server's %s" % (a.rounds, a.prompt_tokens, a.tokens, t, sasp_weights, a.gguf))


if __name__ == "__main__":
    main()
