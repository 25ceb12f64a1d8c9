#!/usr/bin/env python3
"""loadgen.py: a load generator for sasp-server (Python standard library: asyncio and plain sockets).

N requests from C concurrent connections to a daemon on loopback: a random mix of /v1/completions,
/v1/chat/completions and /api/generate, streamed and not, with random sampling parameters; a share of
the streaming clients hang up in the middle of their stream, and a small share send bad requests on
purpose (they must get a 4xx with an error body). Every answer is checked: a stream must end with
`data: [DONE]` (SSE) or `"done": true` (NDJSON) or carry a clear error, and every line must be whole JSON.

Reports requests/s, errors by kind, p50/p99 of time to first token (streams: the first event that
carries a token; non-streamed answers are left out) and of total latency (all answers), and the
daemon's RSS (from /proc) after warm-up and at the end. Exits 1 when a target is missed: any 5xx, any
truncated or malformed answer, any unexpected status, or RSS growth of 5% or more after warm-up.

  python3 tests/load/loadgen.py --server ./sasp-server -m tests/fixtures/tiny-model -n 10000 -c 64
  python3 tests/load/loadgen.py --port 8080 --pid $(pidof sasp-server) -n 2000 -c 16   # a running daemon

Only 127.0.0.1 is ever contacted; the run is bounded by -n and --time-limit.
"""
import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

HOST = "127.0.0.1"


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


class Stats:
    def __init__(self):
        self.kinds = {}
        self.ttft = []
        self.total = []
        self.done = 0
        self.tokens = 0
        self.rss_series = []  # RSS (kB) after each tenth of the requests

    def count(self, kind):
        self.kinds[kind] = self.kinds.get(kind, 0) + 1


def make_request(rng, bad_share, disconnect_share, max_tokens):
    """(path, body bytes, stream, hang_up_after_events or None, expect_error)"""
    ep = rng.choice(["completions", "chat", "generate"])
    stream = rng.random() < 0.6
    mt = rng.randint(1, max_tokens)
    sampling = {}
    if rng.random() < 0.5:
        sampling = {"temperature": round(rng.uniform(0, 1.5), 2), "top_p": round(rng.uniform(0.1, 1.0), 2),
                    "top_k": rng.randint(0, 50), "seed": rng.randint(0, 2 ** 31)}
    if rng.random() < 0.2:
        sampling["stop"] = rng.choice(["\n", "the", ["a", "b"]])
    prompt = " ".join(rng.choice(["once", "upon", "a", "time", "the", "cat", "sat", "\u00e9t\u00e9", "42"])
                      for _ in range(rng.randint(0, 12)))
    if ep == "completions":
        path = "/v1/completions"
        body = dict(sampling, prompt=prompt, max_tokens=mt, stream=stream)
        if rng.random() < 0.1:
            body["logprobs"] = rng.randint(0, 5)
    elif ep == "chat":
        path = "/v1/chat/completions"
        body = dict(sampling, messages=[{"role": "user", "content": prompt or "hi"}], max_tokens=mt, stream=stream)
    else:
        path = "/api/generate"
        opts = {k: v for k, v in sampling.items()}
        opts["num_predict"] = mt
        body = {"prompt": prompt or "hi", "stream": stream, "options": opts}
    expect_error = rng.random() < bad_share
    if expect_error:  # a clear mistake: the answer must be a 4xx with an error body
        if ep == "generate":
            body["options"]["temperature"] = -1
        else:
            body["temperature"] = -1
    hang_up = rng.randint(1, 3) if (stream and not expect_error and rng.random() < disconnect_share) else None
    if stream and "stream_options" not in body and ep != "generate" and rng.random() < 0.3:
        body["stream_options"] = {"include_usage": True}
    return path, json.dumps(body).encode(), stream, hang_up, expect_error, ep


async def read_head(reader):
    line = await reader.readline()
    if not line:
        raise ConnectionError("closed before the status line")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", line)
    if not m:
        raise ValueError("bad status line %r" % line[:80])
    status = int(m.group(1))
    headers = {}
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed inside the headers")
        if line in (b"\r\n", b"\n"):
            break
        k, _, v = line.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers


async def body_chunks(reader, headers):
    """Yields the body's pieces as they arrive; raises ConnectionError when it is cut."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("chunked body cut (no last chunk)")
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readline()
                return
            data = await reader.readexactly(size)
            await reader.readexactly(2)
            yield data
    elif "content-length" in headers:
        n = int(headers["content-length"])
        yield await reader.readexactly(n)
    else:
        data = await reader.read()
        yield data


async def one(args, rng, st):
    path, body, stream, hang_up, expect_error, ep = make_request(rng, args.bad_share, args.disconnect_share,
                                                                 args.max_tokens)
    t0 = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(HOST, args.port)
    except OSError as e:
        st.count("connect_error")
        return
    try:
        writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n" % (path.encode(), HOST.encode(), len(body)) + body)
        await writer.drain()
        status, headers = await read_head(reader)
        if status >= 500:
            st.count("5xx_%d" % status)
            return
        if status == 429:
            st.count("429_busy")
            return
        if status >= 400:
            raw = b"".join([c async for c in body_chunks(reader, headers)])
            err = json.loads(raw)
            ok = "error" in err
            st.count(("expected_4xx" if expect_error else "unexpected_4xx_%d" % status) if ok else "4xx_without_error_body")
            return
        if expect_error:
            st.count("bad_request_accepted")
        ttft = None
        buf = b""
        events = 0
        ended = False
        ndjson = ep == "generate"
        async for piece in body_chunks(reader, headers):
            if not stream:
                buf += piece
                continue
            buf += piece
            sep = b"\n" if ndjson else b"\n\n"
            while sep in buf:
                ev, buf = buf.split(sep, 1)
                if not ev.strip():
                    continue
                if not ndjson:
                    if not ev.startswith(b"data: "):
                        raise ValueError("SSE line without data: %r" % ev[:60])
                    ev = ev[6:]
                    if ev == b"[DONE]":
                        ended = True
                        continue
                obj = json.loads(ev)
                if ttft is None and not (ep == "chat" and "role" in obj["choices"][0].get("delta", {})):
                    ttft = time.perf_counter() - t0  # the first event with a token (not chat's role chunk)
                if ndjson and (obj.get("done") is True or "error" in obj):
                    ended = True
                if "error" in obj:
                    st.count("stream_error_event")
                events += 1
                if hang_up and events >= hang_up and not ended:
                    st.count("hung_up_mid_stream")
                    writer.transport.abort()
                    return
        total = time.perf_counter() - t0
        if stream:
            if buf.strip():
                st.count("truncated_stream")
                return
            if not ended:
                st.count("stream_without_end")
                return
        else:
            obj = json.loads(buf)
            st.tokens += (obj.get("usage") or {}).get("completion_tokens", obj.get("eval_count", 0)) or 0
        st.count("ok_stream" if stream else "ok")
        if stream and ttft is not None:
            st.ttft.append(ttft)
        st.total.append(total)
    except (ConnectionError, asyncio.IncompleteReadError) as e:
        st.count("connection_cut")
        if args.verbose:
            print("cut:", path, e, file=sys.stderr)
    except (ValueError, json.JSONDecodeError) as e:
        st.count("malformed")
        if args.verbose:
            print("malformed:", path, e, file=sys.stderr)
    finally:
        st.done += 1
        if args.pid and st.done % max(1, args.requests // 10) == 0:
            st.rss_series.append(rss_kb(args.pid))
        writer.close()


async def run_phase(args, n, seed, deadline):
    st = Stats()
    rng = random.Random(seed)
    left = [n]

    async def worker():
        while left[0] > 0 and time.time() < deadline:
            left[0] -= 1
            await one(args, rng, st)

    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(args.concurrency)])
    return st, time.perf_counter() - t0


def start_server(args):
    cmd = [args.server, "-m", args.model, "--host", HOST, "--port", "0", "--parallel", str(args.parallel),
           "--max-queue", str(args.max_queue), "-t", str(args.threads)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(args.server_log, "wb"))
    deadline = time.time() + 60
    while time.time() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)/", line)
        if m:
            import threading
            threading.Thread(target=p.stdout.read, daemon=True).start()
            return p, int(m.group(1))
    p.kill()
    raise SystemExit("loadgen: the server did not start (log: %s)" % args.server_log)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--requests", type=int, default=10000)
    ap.add_argument("-c", "--concurrency", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=10000,
                    help="requests before the RSS baseline (malloc's per-thread arenas settle over the first "
                         "~10,000 at 64 connections); checked like the others")
    ap.add_argument("--max-tokens", type=int, default=8, help="max_tokens is drawn from 1..this")
    ap.add_argument("--disconnect-share", type=float, default=0.1)
    ap.add_argument("--bad-share", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--time-limit", type=float, default=900, help="seconds; the run stops there")
    ap.add_argument("--port", type=int, help="a running daemon on 127.0.0.1")
    ap.add_argument("--pid", type=int, help="its pid, for RSS")
    ap.add_argument("--server", help="start this sasp-server binary")
    ap.add_argument("-m", "--model", default="tests/fixtures/tiny-model")
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--max-queue", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--server-log", default="/tmp/loadgen-server.log")
    ap.add_argument("--rss-limit", type=float, default=5.0,
                    help="largest RSS growth after warm-up, percent (0: not checked)")
    ap.add_argument("--json", help="write the figures here too")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    proc = None
    if args.server:
        proc, args.port = start_server(args)
        args.pid = proc.pid
    if not args.port:
        ap.error("give --port (a running daemon) or --server")
    deadline = time.time() + args.time_limit
    try:
        warm, _ = asyncio.run(run_phase(args, args.warmup, args.seed + 1, deadline))
        rss0 = rss_kb(args.pid) if args.pid else None
        st, secs = asyncio.run(run_phase(args, args.requests, args.seed, deadline))
        rss1 = rss_kb(args.pid) if args.pid else None
    finally:
        rc = None
        if proc:
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
    bad_kinds = sorted({k for k in list(st.kinds) + list(warm.kinds) if k.startswith(
        ("5xx", "unexpected", "4xx_without", "truncated", "stream_without", "malformed", "connection_cut",
         "connect_error", "bad_request_accepted"))})
    growth = (rss1 - rss0) / rss0 * 100 if rss0 and rss1 else None
    fig = {
        "requests": st.done, "concurrency": args.concurrency, "seconds": round(secs, 2),
        "requests_per_s": round(st.done / secs, 1) if secs else None,
        "outcomes": dict(sorted(st.kinds.items())),
        "ttft_ms": {"p50": round(pct(st.ttft, 50) * 1e3, 2), "p99": round(pct(st.ttft, 99) * 1e3, 2)},
        "total_ms": {"p50": round(pct(st.total, 50) * 1e3, 2), "p99": round(pct(st.total, 99) * 1e3, 2)},
        "rss_kb_after_warmup": rss0, "rss_kb_end": rss1,
        "rss_growth_percent": round(growth, 2) if growth is not None else None,
        "rss_kb_each_tenth": st.rss_series,
        "warmup_outcomes": dict(sorted(warm.kinds.items())),
        "server_exit_status": rc,
    }
    print(json.dumps(fig, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(fig, f, indent=2)
    failed = bool(bad_kinds) or (args.rss_limit > 0 and growth is not None and growth >= args.rss_limit) or st.done < args.requests or \
        (rc not in (None, 0))
    print("loadgen: %s%s" % ("FAIL" if failed else "PASS",
                             (" (" + ", ".join(bad_kinds) + ")") if bad_kinds else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
