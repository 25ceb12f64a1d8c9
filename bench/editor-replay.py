#!/usr/bin/env python3
"""editor-replay.py: sasp-server as an editor's completion backend, replayed. The lines of a Python
file are written again one by one, in place (the lines below stay, the line being written has nothing
after the cursor); at each pause (--pauses per line, at word boundaries) the editor sends an /infill
request with the code around the cursor, as llama.vscode builds it: input_prefix the (up to 256)
lines above the cursor, prompt the cursor's line up to the cursor, input_suffix the rest of that line
and the (up to 64) lines below, input_extra a chunk of another file (its ring buffer), n_predict 16,
samplers top_k, top_p and infill (top_k 40, top_p 0.99), cache_prompt, t_max_prompt_ms 500,
t_max_predict_ms 1000. Every completion is made 16 tokens long (ignore_eos), so that requests differ
only in what their prompts cost. The replay runs twice on fresh servers, with the prompt cache on and
off (cache_prompt false), one request at a time.

  bench/editor-replay.py -m MODEL_DIR [--file F] [--start LINE] [--lines N] [--pauses 3] [-t THREADS]

MODEL_DIR must have the FIM tokens: scripts/gen-fim-fixture.sh models/sasp-small /tmp/sasp-small-fim
adds them to the shipped model (zero rows: the same speed, not a trained infill model). Reported per
mode, over all requests: time to first token (the client's: request sent to the first streamed
chunk, which llama.cpp's streams send for every token; and the server's timings.prompt_ms, from taking
a slot to the first token), total latency (to the final object), median and p99; the share of
prompt tokens served from the cache (timings.cache_n over cache_n + prompt_n). Prints a Markdown
table and the figures as JSON. Standard library only.
"""
import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)


def start_server(binary, model, threads, parallel):
    p = subprocess.Popen([binary, "-m", model, "--port", "0", "-t", str(threads), "--parallel", str(parallel)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    while True:
        line = p.stdout.readline()
        if not line:
            raise SystemExit("sasp-server failed to start")
        m = re.search(rb"listening on http://[^:]+:(\d+)/", line)
        if m:
            threading.Thread(target=p.stdout.read, daemon=True).start()
            return p, int(m.group(1))


def pauses(line, n):
    """Where the typing stops on a line: after about every 1/n of its words, the last at its end."""
    cuts = [m.end() for m in re.finditer(r"\S+", line)]
    if not cuts:
        return [len(line)]
    picks = sorted({cuts[min(len(cuts) - 1, (k * len(cuts)) // n)] for k in range(1, n + 1)} | {cuts[-1]})
    return picks[-n:]


def requests(lines, start, count, n_pauses, extra):
    """The editor's requests, in order: (input_prefix, prompt, input_suffix) at each pause."""
    for i in range(start, min(start + count, len(lines))):
        line = lines[i].rstrip("\n")
        indent = len(line) - len(line.lstrip(" "))
        for col in pauses(line, n_pauses):
            col = max(col, indent)
            yield {"input_prefix": "".join(lines[max(0, i - 256):i]), "prompt": line[:col],
                   "input_suffix": "\n" + "".join(lines[i + 1:i + 65]), "input_extra": extra,
                   "n_indent": indent}


def dechunk(buf):
    """Whole chunks of an HTTP/1.1 chunked body at the start of buf: (their data, the rest, ended)."""
    out = b""
    while True:
        eol = buf.find(b"\r\n")
        if eol < 0:
            return out, buf, False
        size = int(buf[:eol].split(b";")[0], 16)
        if size == 0:
            return out, b"", True
        if len(buf) < eol + 2 + size + 2:
            return out, buf, False
        out += buf[eol + 2:eol + 2 + size]
        buf = buf[eol + 2 + size + 2:]


def send(port, body):
    """One streamed /infill over a plain socket (http.client's readline adds its own delays to a
    stream): (time to the first streamed token, total time, the final object)."""
    data = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.perf_counter()
    s.sendall(b"POST /infill HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(data) + data)
    raw, head, text, first, final, ended = b"", None, b"", None, None, False
    while not ended:
        d = s.recv(65536)
        if not d:
            break
        raw += d
        if head is None:
            if b"\r\n\r\n" not in raw:
                continue
            head, raw = raw.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 200"), head
        piece, raw, ended = dechunk(raw)
        text += piece
        while b"\n\n" in text:
            event, text = text.split(b"\n\n", 1)
            o = json.loads(event[len(b"data: "):])
            if first is None:
                first = time.perf_counter() - t0
            if o.get("stop"):
                final = o
                ended = True
    total = time.perf_counter() - t0
    s.close()
    return first, total, final


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def replay(args, cache, reqs):
    proc, port = start_server(args.server, args.model, args.threads, args.parallel)
    out = {"ttft": [], "server_ttft": [], "total": [], "cached": 0, "computed": 0, "predicted": []}
    try:
        for body in reqs:
            req = dict(body, n_predict=args.n_predict, ignore_eos=True, stream=True, top_k=40, top_p=0.99,
                       samplers=["top_k", "top_p", "infill"], cache_prompt=cache, t_max_prompt_ms=500,
                       t_max_predict_ms=1000, seed=1)
            first, total, final = send(port, req)
            t = final["timings"]
            out["ttft"].append(first * 1e3)
            out["server_ttft"].append(t["prompt_ms"])
            out["total"].append(total * 1e3)
            out["cached"] += t["cache_n"]
            out["computed"] += t["prompt_n"]
            out["predicted"].append(t["predicted_n"])
    finally:
        proc.terminate()
        proc.wait()
    return out


def summary(name, o):
    share = o["cached"] / max(1, o["cached"] + o["computed"])
    return {"mode": name, "requests": len(o["ttft"]), "ttft_median_ms": statistics.median(o["ttft"]),
            "ttft_p99_ms": pct(o["ttft"], 0.99), "server_prompt_ms_median": statistics.median(o["server_ttft"]),
            "total_median_ms": statistics.median(o["total"]), "total_p99_ms": pct(o["total"], 0.99),
            "prompt_tokens_from_cache": share, "prompt_tokens_per_request": (o["cached"] + o["computed"]) / len(o["ttft"]),
            "tokens_per_completion": statistics.median(o["predicted"])}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", required=True, help="a model directory with the FIM tokens")
    ap.add_argument("--server", default=os.path.join(os.environ.get("SASP_BUILDDIR", TOP), "sasp-server"))
    ap.add_argument("--file", default=os.path.join(TOP, "train", "bpe.py"), help="the Python file typed again")
    ap.add_argument("--start", type=int, default=100, help="the first line typed")
    ap.add_argument("--lines", type=int, default=40, help="lines typed")
    ap.add_argument("--pauses", type=int, default=3, help="requests per line")
    ap.add_argument("--n-predict", type=int, default=16)
    ap.add_argument("--extra", default=os.path.join(TOP, "train", "checkpoint_io.py"),
                    help="a file whose first 30 lines are the extra context")
    ap.add_argument("-t", "--threads", type=int, default=0)
    ap.add_argument("--parallel", type=int, default=4)
    args = ap.parse_args()
    lines = open(args.file).readlines()
    extra = [{"filename": os.path.basename(args.extra), "text": "".join(open(args.extra).readlines()[:30])}]
    reqs = list(requests(lines, args.start, args.lines, args.pauses, extra))
    on = summary("cache on", replay(args, True, reqs))
    off = summary("cache off", replay(args, False, reqs))
    print("| mode | requests | TTFT median (ms) | TTFT p99 | server prompt_ms median | total median (ms) | "
          "total p99 | prompt tokens from the cache | prompt tokens / request |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in (on, off):
        print("| %s | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.0f %% | %.0f |" % (
            s["mode"], s["requests"], s["ttft_median_ms"], s["ttft_p99_ms"], s["server_prompt_ms_median"],
            s["total_median_ms"], s["total_p99_ms"], 100 * s["prompt_tokens_from_cache"],
            s["prompt_tokens_per_request"]))
    ratio = off["ttft_median_ms"] / on["ttft_median_ms"]
    print("\nmedian time to first token, cache off / cache on: %.1fx (server prompt_ms: %.1fx)" % (
        ratio, off["server_prompt_ms_median"] / max(1e-9, on["server_prompt_ms_median"])))
    print(json.dumps({"on": on, "off": off, "ttft_ratio": ratio}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
