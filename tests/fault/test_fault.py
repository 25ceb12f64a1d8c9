#!/usr/bin/env python3
"""test_fault.py: sasp-server under clients that misbehave and a world that changes under it (Python
standard library only; run by tests/fault/run.sh under `make check`).

  slowloris      headers trickled a byte at a time hold no slot and block nobody
  half_close     clients that shut down their sending side (after the request, or in the middle of
                 it) get a whole answer or a clean close, and hold nothing
  never_reads    a client that never reads its stream: what waits for it is bounded (its generation
                 ends at max_tokens and frees the slot), it is dropped after --timeout seconds
                 without progress, and the others are served meanwhile
  sigterm_load   SIGTERM with many streams open: exit status 0, every stream ends on a whole line
                 ([DONE] / done:true), no half-written JSON
  model_deleted  the model directory truncated and deleted after start: the server keeps serving the
                 same answers (the loader copied the tensors into memory)

Reuses the Server helper of tests/server/test_server.py (a daemon on a free loopback port with
tests/fixtures/tiny-model). No check asserts a duration: waits poll for an effect with a generous limit.
By hand: SASP_BUILDDIR=. SASP_SRCDIR=. python3 tests/fault/test_fault.py [name-substring ...]
"""
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
import test_server as ts  # noqa: E402  (Server, wait_for, MODEL, LOG_DIR)
from test_server import Server, wait_for  # noqa: E402


def raw_connect(s, rcvbuf=None):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", s.port))
    return sock


def http_request(path, obj):
    body = json.dumps(obj).encode()
    return (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % (path.encode(), len(body))) + body


def read_all(sock, limit=60.0):
    """Everything until the server closes (or resets) the connection."""
    sock.settimeout(limit)
    out = b""
    try:
        while True:
            b = sock.recv(65536)
            if not b:
                break
            out += b
    except (ConnectionResetError, BrokenPipeError):
        pass
    return out


def dechunk(body):
    """The payload of a chunked body, and whether its last chunk (0) arrived."""
    out, complete = b"", False
    while body:
        line, sep, rest = body.partition(b"\r\n")
        if not sep:
            break
        size = int(line.split(b";")[0], 16)
        if size == 0:
            complete = True
            break
        if len(rest) < size + 2:
            out += rest[:size]
            break
        out += rest[:size]
        body = rest[size + 2:]
    return out, complete


def split_response(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith(b"HTTP/1.") else None
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(b":")
        headers[k.strip().lower().decode()] = v.strip().decode()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body, complete = dechunk(body)
    else:
        complete = "content-length" not in headers or len(body) == int(headers["content-length"])
    return status, headers, body, complete


def check_stream_payload(payload, ndjson):
    """A stream's payload: whole lines of JSON, ending with the end marker. Returns the objects."""
    objs = []
    if ndjson:
        assert payload.endswith(b"\n"), ("NDJSON stream ends inside a line", payload[-200:])
        for line in payload.split(b"\n")[:-1]:
            objs.append(json.loads(line))
        assert objs and (objs[-1].get("done") is True or "error" in objs[-1]), objs[-1:]
    else:
        assert payload.endswith(b"\n\n"), ("SSE stream ends inside an event", payload[-200:])
        events = payload.split(b"\n\n")[:-1]
        assert events and events[-1] == b"data: [DONE]", events[-2:]
        for e in events[:-1]:
            assert e.startswith(b"data: "), e
            objs.append(json.loads(e[6:]))
    return objs


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def sanitized(pid):
    """Whether the server runs with AddressSanitizer (./configure --enable-sanitizers) or under valgrind
    (scripts/valgrind-server.sh): both keep freed memory aside, so its RSS says nothing."""
    with open("/proc/%d/maps" % pid) as f:
        maps = f.read()
    return "libasan" in maps or "vgpreload" in maps


# --- the checks ---


def t_slowloris(s):
    """--parallel 1: three connections trickle their headers a byte at a time; meanwhile requests on
    other connections are served and no slot is taken; the trickled requests get their answers."""
    req = http_request("/v1/completions", {"prompt": "x", "max_tokens": 2})
    socks = [raw_connect(s) for _ in range(3)]
    stop = threading.Event()
    sent = [0]

    def trickle():
        for i in range(len(req) - 1):  # all but the last byte
            if stop.is_set():
                return
            for k in socks:
                k.sendall(req[i:i + 1])
            sent[0] = i + 1
            time.sleep(0.01)

    th = threading.Thread(target=trickle, daemon=True)
    th.start()
    try:
        served = 0
        while th.is_alive():
            st, r = s.post("/v1/completions", {"prompt": "y", "max_tokens": 2, "ignore_eos": True})
            assert st == 200 and r["usage"]["completion_tokens"] == 2, (st, r)
            m = s.metrics()
            assert m["sasp_queue_depth"] == 0, m
            served += 1
        assert served >= 3 and sent[0] == len(req) - 1, (served, sent[0])
    finally:
        stop.set()
        th.join()
    for k in socks:
        k.sendall(req[-1:])
    for k in socks:
        status, _, body, complete = split_response(read_all(k))
        k.close()
        assert status == 200 and complete, (status, body[:200])
        assert json.loads(body)["usage"]["completion_tokens"] >= 1


def t_half_close(s):
    """Half-closed sockets: a request followed by shutdown(SHUT_WR) gets its whole answer or a clean
    close; a request cut in the middle of its headers or body by SHUT_WR gets nothing and holds
    nothing. Afterwards no slot is busy and the server answers as before."""
    results = []
    for stream in (False, True):
        k = raw_connect(s)
        k.sendall(http_request("/v1/completions", {"prompt": "x", "max_tokens": 5, "ignore_eos": True,
                                                   "stream": stream}))
        k.shutdown(socket.SHUT_WR)
        raw = read_all(k)
        k.close()
        # The server cannot tell a half-close (FIN) from a client that left, so it may treat it as gone
        # (cancel, close): then the answer is cut where the client sees it (no last chunk), never
        # mid-way through a chunk that claims to be whole. An answer that is marked whole must be whole.
        status, headers, body, complete = split_response(raw) if raw else (None, {}, b"", False)
        if complete:
            assert status == 200, (status, raw[:300])
            if stream:
                check_stream_payload(body, ndjson=False)
            else:
                assert json.loads(body)["usage"]["completion_tokens"] == 5
        results.append("whole" if complete else "cut" if raw else "closed")
    for cut in (30, 120):  # inside the headers; inside the body
        req = http_request("/v1/completions", {"prompt": "x" * 200, "max_tokens": 5})
        k = raw_connect(s)
        k.sendall(req[:cut])
        k.shutdown(socket.SHUT_WR)
        raw = read_all(k)
        k.close()
        status = split_response(raw)[0] if raw else None
        assert status in (None, 400), (cut, raw[:200])
    # a client that stops reading (SHUT_RD) in the middle of a stream, then goes
    k = raw_connect(s)
    k.sendall(http_request("/v1/completions", {"prompt": "x", "max_tokens": 100, "ignore_eos": True,
                                               "stream": True}))
    k.recv(10)
    k.shutdown(socket.SHUT_RD)
    time.sleep(0.2)
    k.close()
    wait_for(lambda: s.metrics()["sasp_slots_active"] == 0, "every slot to be free again")
    st, r = s.post("/v1/completions", {"prompt": "x", "max_tokens": 3, "ignore_eos": True})
    assert st == 200 and r["usage"]["completion_tokens"] == 3
    print("   half_close: answered after SHUT_WR (non-stream, stream): %s" % results)


def t_never_reads(s):
    """--parallel 4 --timeout 2: a client with a tiny receive buffer asks for 4 x 16 streamed choices of
    200 tokens with 20 alternatives each (about 8 MB of events, more than the socket buffers hold) and
    never reads. What waits for it is bounded (its sequences end at max_tokens and free their slots;
    the events are bounded by n x max_tokens), it is dropped after the timeout without the end of its
    stream, and other clients are served all along."""
    pid = s.proc.pid
    st, _ = s.post("/v1/completions", {"prompt": "x", "max_tokens": 4})  # warm up
    rss0 = rss_kb(pid)
    k = raw_connect(s, rcvbuf=2048)
    k.sendall(http_request("/v1/completions", {"prompt": ["x", "y", "z", "w"], "max_tokens": 200, "n": 16,
                                               "ignore_eos": True, "stream": True, "logprobs": 20}))
    wait_for(lambda: s.metrics()["sasp_slots_active"] > 0, "the stuck client's sequences to start")
    for i in range(5):  # served meanwhile (behind the stuck client's queued sequences, but served)
        st, r = s.post("/v1/completions", {"prompt": "z", "max_tokens": 2, "ignore_eos": True})
        assert st == 200 and r["usage"]["completion_tokens"] == 2, (st, r)
    # every slot and queue place comes back although the client has read nothing
    wait_for(lambda: (lambda m: m["sasp_slots_active"] == 0 and m["sasp_queue_depth"] == 0)(s.metrics()),
             "the unread stream's slots to be freed", limit=120)
    rss1 = rss_kb(pid)
    if not sanitized(pid):
        assert rss1 - rss0 < 64 * 1024, ("memory grew by %d kB for one unread stream" % (rss1 - rss0))
    # dropped after --timeout: the connection closes before the stream's end was sent
    time.sleep(4)  # still not reading, past the timeout
    raw, gone = b"", False
    k.settimeout(60)
    try:
        while True:
            b = k.recv(65536)
            if not b:
                gone = True
                break
            raw += b
    except (ConnectionResetError, BrokenPipeError):
        gone = True
    k.close()
    assert gone, "the stuck client was never dropped"
    assert b"data: [DONE]" not in raw, "the stuck client got its whole stream: it was not dropped"
    st, r = s.post("/v1/completions", {"prompt": "x", "max_tokens": 3, "ignore_eos": True})
    assert st == 200 and r["usage"]["completion_tokens"] == 3
    print("   never_reads: RSS %d kB -> %d kB with an unread stream; dropped after %d of ~8 MB" % (rss0, rss1, len(raw)))


def t_sigterm_load(s):
    """--parallel 4 --step-delay 20: 16 clients (SSE, NDJSON, chat, non-streamed) at once; SIGTERM once
    every stream has begun; each gets a whole answer ending on its marker, the server exits 0."""
    kinds = [("/v1/completions", {"prompt": "a", "stream": True}, "sse"),
             ("/api/generate", {"prompt": "b", "stream": True}, "ndjson"),
             ("/v1/chat/completions", {"messages": [{"role": "user", "content": "c"}], "stream": True}, "sse"),
             ("/v1/completions", {"prompt": "d", "stream": False}, "json")]
    socks = []
    for i in range(16):
        path, body, kind = kinds[i % 4]
        body = dict(body, max_tokens=200, ignore_eos=True)
        if path == "/api/generate":
            body = {"prompt": body["prompt"], "stream": True, "options": {"num_predict": 200, "ignore_eos": True}}
        k = raw_connect(s)
        k.sendall(http_request(path, body))
        socks.append((k, kind))
    # wait until every slot decodes and the streams have started
    wait_for(lambda: s.metrics()["sasp_slots_active"] == 4, "all slots busy")
    # and every other request accepted and queued: a connection still in the listen backlog when the
    # server stops listening is closed unanswered, which says nothing about the streams under test
    wait_for(lambda: s.metrics()["sasp_queue_depth"] == len(socks) - 4, "the other requests queued")
    # the streams among the first four (in the slots) have begun: their first bytes arrive
    first = [socks[i][0].recv(1) if socks[i][1] != "json" else b"" for i in range(4)]
    assert all(first[i] for i in range(4) if socks[i][1] != "json")
    s.proc.send_signal(signal.SIGTERM)
    outcomes = {}
    for (k, kind), f in zip(socks, first + [b""] * (len(socks) - 4)):
        raw = f + read_all(k)
        k.close()
        status, headers, body, complete = split_response(raw)
        assert complete, ("cut response", kind, raw[-300:])
        if status != 200:  # refused because the server is stopping: a clear error
            assert status == 503 and "error" in json.loads(body), (status, body[:300])
            outcomes["503"] = outcomes.get("503", 0) + 1
            continue
        if kind == "json":
            json.loads(body)
        else:
            check_stream_payload(body, ndjson=(kind == "ndjson"))
        outcomes[kind] = outcomes.get(kind, 0) + 1
    s.proc.wait(60)
    assert s.proc.returncode == 0, "exit status %s" % s.proc.returncode
    print("   sigterm_load: %s" % outcomes)


def t_model_deleted():
    """A copy of the model directory is truncated and deleted after the server started: it keeps
    serving, and greedy answers stay what they were."""
    d = tempfile.mkdtemp(prefix="sasp-fault-model-")
    model = os.path.join(d, "tiny-model")
    shutil.copytree(ts.MODEL, model)
    s = Server("-m", model, "--parallel", "2", name="deleted")
    try:
        req = {"prompt": "Once upon a time", "max_tokens": 20, "temperature": 0, "ignore_eos": True}
        st, before = s.post("/v1/completions", req)
        assert st == 200
        for f in os.listdir(model):  # truncate everything, then delete it all
            with open(os.path.join(model, f), "r+b") as fh:
                fh.truncate(0)
        st, mid = s.post("/v1/completions", req)
        assert st == 200 and mid["choices"][0]["text"] == before["choices"][0]["text"], (mid, before)
        shutil.rmtree(d)
        for stream in (False, True):
            if stream:
                objs, done = ts.parse_sse(s.stream("/v1/completions", req))
                text = ts.sse_text(objs)[0]
                assert done
            else:
                st, after = s.post("/v1/completions", req)
                assert st == 200
                text = after["choices"][0]["text"]
            assert text == before["choices"][0]["text"], (text, before)
        assert s.get_json("/health")
        assert s.proc.poll() is None
    finally:
        rc = s.stop()
        shutil.rmtree(d, ignore_errors=True)
    assert rc == 0, "exit status %s" % rc


def main():
    only = sys.argv[1:]
    plan = [
        (("--parallel", "1"), "slowloris", t_slowloris),
        (("--parallel", "2"), "halfclose", t_half_close),
        (("--parallel", "4", "--timeout", "2"), "neverreads", t_never_reads),
        (("--parallel", "4", "--step-delay", "20"), "sigterm-load", t_sigterm_load),
        (None, "deleted", t_model_deleted),
    ]
    failures = 0
    for args, name, check in plan:
        if only and not any(o in check.__name__ for o in only):
            continue
        s = None
        t0 = time.time()
        try:
            if args is None:
                check()
            else:
                s = Server(*args, name=name)
                check(s)
                if check is not t_sigterm_load:
                    assert s.proc.poll() is None, "the server exited during the check"
            print("PASS %s (%.1fs)" % (check.__name__, time.time() - t0))
        except Exception:
            failures += 1
            print("FAIL %s" % check.__name__)
            traceback.print_exc(file=sys.stdout)
        finally:
            if s is not None:
                rc = s.stop()
                if rc not in (0, None):
                    failures += 1
                    print("FAIL: server '%s' exited with %s" % (name, rc))
            log = os.path.join(ts.LOG_DIR, name + ".log")
            if failures and os.path.exists(log):
                print("---- server log (%s) ----" % name)
                sys.stdout.write(open(log, errors="replace").read()[-3000:])
    print("%s: %d failure(s)" % ("FAIL" if failures else "PASS", failures))
    if not failures:
        shutil.rmtree(ts.LOG_DIR, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
