#!/usr/bin/env python3
"""test_guard.py: no web page and no client can drive or lock out sasp-server (issue 17). Python
standard library, curl, and headless Chromium (Debian's `chromium`; its part is skipped, saying so,
when it is missing). Run by tests/fault/guard.sh under `make check`.

  host         a Host that does not name the server is 403 (DNS rebinding); loopback names, the address
               and --allow-host names pass
  origin_curl  the issue's request (Host and Origin attacker.example, text/plain) and a disallowed
               Origin alone are 403 and start no generation (/metrics); no Origin passes whatever the
               content type; an allowed origin gets itself echoed, and the CORS preflight
  allow_origin --allow-origin '*' answers '*'; 'scheme://host:*' takes any port of that host only
  api_key      with --api-key, an allowed origin still needs the key everywhere but /health
  browser      headless Chromium: a page on another origin (http://127.0.0.2:P) is refused and starts
               nothing; the same page served by sasp-server, and one on http://localhost:P, work
  header_timeout  a connection that sends nothing, and one that trickles its headers, are closed after
               --header-timeout; the counter says so
  per_ip       connections beyond --max-conn-per-ip from one address are closed at once, and counted
  inflight     beyond --max-inflight-per-client a client gets 429 with Retry-After; another is served
  cancel_log   a stream the client leaves logs the tokens it had sent, and libmicrohttpd's "Failed to
               send" is not printed

By hand: SASP_BUILDDIR=. SASP_SRCDIR=. python3 tests/fault/test_guard.py [name-substring ...]
"""
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
from test_server import Server, wait_for  # noqa: E402
from test_fault import read_all  # noqa: E402  (beside this file)

BODY = json.dumps({"prompt": "hello", "max_tokens": 3, "ignore_eos": True})


def curl(port, path="/v1/completions", headers=(), data=BODY, method=None):
    """(status, headers dict lower-case, body) of one curl request."""
    cmd = ["curl", "-s", "-i", "--max-time", "30", "http://127.0.0.1:%d%s" % (port, path)]
    for h in headers:
        cmd += ["-H", h]
    if data is not None:
        cmd += ["--data-binary", data]
    if method:
        cmd += ["-X", method]
    out = subprocess.run(cmd, capture_output=True, check=True).stdout.decode()
    head, _, body = out.partition("\r\n\r\n")
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    h = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        h[k.strip().lower()] = v.strip()
    return status, h, body


def generated(s):
    m = s.metrics()
    return m["sasp_generated_tokens_total"], m["sasp_prompt_tokens_total"]


def t_host(s):
    st, _, body = curl(s.port, "/health", ["Host: attacker.example"], data=None)
    assert st == 403 and json.loads(body)["error"]["code"] == "host_not_allowed", (st, body)
    for host in ("localhost:%d" % s.port, "127.0.0.1:%d" % s.port, "127.0.0.1", "app.localhost",
                 "[::1]:%d" % s.port, "127.1.2.3:9"):
        st, _, body = curl(s.port, "/health", ["Host: " + host], data=None)
        assert st == 200, (host, st, body)
    st, _, body = curl(s.port, "/health", ["Host: rebind.example:%d" % s.port], data=None)
    assert st == 403
    assert s.metrics()['sasp_requests_refused_total{reason="host"}'] >= 2
    a = Server("--allow-host", "sasp.lan", "--allow-host", "*.box.test", name="allow-host")
    try:
        for host, want in (("sasp.lan", 200), ("SASP.lan:80", 200), ("x.box.test", 200), ("box.test", 403),
                           ("sasp.lan.evil", 403)):
            st, _, _ = curl(a.port, "/health", ["Host: " + host], data=None)
            assert st == want, (host, st)
    finally:
        assert a.stop() == 0


def t_origin_curl(s):
    before = generated(s)
    st, h, body = curl(s.port, headers=["Host: attacker.example", "Origin: http://attacker.example",
                                        "Content-Type: text/plain"])
    assert st == 403 and "access-control-allow-origin" not in h, (st, h)
    st, h, body = curl(s.port, headers=["Origin: http://attacker.example", "Content-Type: text/plain"])
    assert st == 403 and json.loads(body)["error"]["code"] == "origin_not_allowed", (st, body)
    assert "access-control-allow-origin" not in h
    st, h, body = curl(s.port, headers=["Origin: null", "Content-Type: text/plain"])
    assert st == 403
    st, h, body = curl(s.port, method="OPTIONS", data=None, headers=[
        "Origin: http://attacker.example", "Access-Control-Request-Method: POST"])
    assert st == 403 and "access-control-allow-origin" not in h
    assert generated(s) == before, (generated(s), before)  # nothing ran
    assert s.metrics()['sasp_requests_refused_total{reason="origin"}'] >= 3
    # no Origin (curl, SDKs): served, whatever the content type
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/json"):
        st, h, body = curl(s.port, headers=["Content-Type: " + ctype])
        assert st == 200 and json.loads(body)["choices"], (ctype, st, body)
    # loopback origins: echoed, never '*'
    for origin in ("http://localhost:5173", "http://127.0.0.1:3000", "http://[::1]:8000", "http://localhost"):
        st, h, body = curl(s.port, headers=["Origin: " + origin, "Content-Type: text/plain"])
        assert st == 200 and h["access-control-allow-origin"] == origin and "Origin" in h["vary"], (origin, h)
    st, h, body = curl(s.port, method="OPTIONS", data=None, headers=[
        "Origin: http://localhost:5173", "Access-Control-Request-Method: POST",
        "Access-Control-Request-Headers: authorization, content-type"])
    assert st == 204 and h["access-control-allow-origin"] == "http://localhost:5173", (st, h)
    assert "POST" in h["access-control-allow-methods"] and "authorization" in h["access-control-allow-headers"]
    for origin in ("http://localhost.attacker.example", "http://127.0.0.1.nip.io:3000", "https://localhost:1:2"):
        st, _, _ = curl(s.port, headers=["Origin: " + origin])
        assert st == 403, origin
    # the server's own page on a name it serves: Origin equal to the Host
    a = Server("--allow-host", "sasp.lan", name="own-page")
    try:
        st, h, _ = curl(a.port, headers=["Host: sasp.lan:%d" % a.port, "Origin: http://sasp.lan:%d" % a.port])
        assert st == 200 and h["access-control-allow-origin"] == "http://sasp.lan:%d" % a.port
        st, h, _ = curl(a.port, headers=["Host: sasp.lan:%d" % a.port, "Origin: http://other.lan:%d" % a.port])
        assert st == 403
    finally:
        assert a.stop() == 0


def t_allow_origin(s):
    a = Server("--allow-origin", "*", name="origin-star")
    try:
        st, h, _ = curl(a.port, headers=["Origin: http://anything.example", "Content-Type: text/plain"])
        assert st == 200 and h["access-control-allow-origin"] == "*", h
    finally:
        assert a.stop() == 0
    a = Server("--allow-origin", "http://app.example:*", "--allow-origin", "https://tool.example", name="origin-list")
    try:
        for origin, want in (("http://app.example:3000", 200), ("http://app.example", 200),
                             ("https://tool.example", 200), ("http://tool.example", 403),
                             ("http://app.example.evil:3000", 403), ("http://localhost:1", 200)):
            st, h, _ = curl(a.port, headers=["Origin: " + origin])
            assert st == want, (origin, st)
            if want == 200:
                assert h["access-control-allow-origin"] == origin
    finally:
        assert a.stop() == 0


def t_api_key(s):
    a = Server("--api-key", "k-17", name="guard-key")
    try:
        o = "Origin: http://localhost:5173"
        st, _, _ = curl(a.port, headers=[o])
        assert st == 401
        st, _, _ = curl(a.port, "/metrics", [o], data=None)
        assert st == 401
        st, _, _ = curl(a.port, "/health", [o], data=None)
        assert st == 200
        st, h, _ = curl(a.port, headers=[o, "Authorization: Bearer k-17"])
        assert st == 200 and h["access-control-allow-origin"] == "http://localhost:5173"
        st, _, _ = curl(a.port, headers=["Origin: http://attacker.example", "Authorization: Bearer k-17"])
        assert st == 403  # the key does not open the door to another origin's page
    finally:
        assert a.stop() == 0
    # several keys, each with its own --max-inflight-per-key
    a = Server("--api-key", "k-one", "--api-key", "k-two", "--max-inflight-per-key", "1", "--step-delay", "20",
               name="guard-keys")
    try:
        c = a.conn()
        c.request("POST", "/v1/completions", body=json.dumps({"prompt": "x", "max_tokens": 100, "stream": True,
                                                              "ignore_eos": True}),
                  headers={"Content-Type": "application/json", "Authorization": "Bearer k-one"})
        r = c.getresponse()
        assert r.status == 200
        r.readline()
        st, h, body = curl(a.port, headers=["Authorization: Bearer k-one"])
        assert st == 429 and h["retry-after"] == "1" and "max-inflight-per-key" in body, (st, body)
        st, _, _ = curl(a.port, headers=["Authorization: Bearer k-two"])
        assert st == 200
        st, _, _ = curl(a.port, headers=["Authorization: Bearer k-three"])
        assert st == 401
        c.close()
        st, _, text = curl(a.port, "/metrics", ["Authorization: Bearer k-two"], data=None)
        assert st == 200 and 'sasp_requests_refused_total{reason="inflight_per_key"} 1\n' in text
    finally:
        assert a.stop() == 0


PAGE = """<!doctype html><html><body><div id="out">pending</div><script>
fetch("%s/v1/completions", {method: "POST", headers: {"Content-Type": "text/plain"},
      body: JSON.stringify({prompt: "page", max_tokens: 2, ignore_eos: true})})
  .then(r => r.json().then(j => { document.getElementById("out").textContent =
      "status " + r.status + " choices " + (j.choices ? j.choices.length : 0); }))
  .catch(e => { document.getElementById("out").textContent = "refused " + e; });
</script></body></html>"""


def serve_dir(directory, addr):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=directory, **k)

        def log_message(self, *a):
            pass
    httpd = http.server.ThreadingHTTPServer((addr, 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def chromium_dom(url, profile):
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + profile,
                          "--virtual-time-budget=10000", "--dump-dom", url], capture_output=True, timeout=120)
    m = re.search(rb'<div id="out">([^<]*)</div>', out.stdout)
    return m.group(1).decode() if m else "no DOM: %r" % out.stderr[-300:]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def t_browser(s):
    if not CHROMIUM:
        print("   (skipped: no chromium; scripts/install-deps.sh --test installs it)")
        return
    tmp = tempfile.mkdtemp(prefix="sasp-guard-www-")
    www, other = os.path.join(tmp, "www"), os.path.join(tmp, "other")
    os.makedirs(www)
    os.makedirs(other)
    with open(os.path.join(www, "page.html"), "w") as f:
        f.write(PAGE % "")  # same origin
    a = Server("--www", www, name="browser")
    try:
        with open(os.path.join(other, "page.html"), "w") as f:
            f.write(PAGE % ("http://127.0.0.1:%d" % a.port))
        foreign, local = serve_dir(other, "127.0.0.2"), serve_dir(other, "127.0.0.1")
        before = generated(a)
        got = chromium_dom("http://127.0.0.2:%d/page.html" % foreign.server_address[1], os.path.join(tmp, "p1"))
        assert got.startswith("refused"), got
        assert generated(a) == before, "a refused page started a generation"
        got = chromium_dom("http://127.0.0.1:%d/page.html" % a.port, os.path.join(tmp, "p2"))
        assert got == "status 200 choices 1", got
        got = chromium_dom("http://localhost:%d/page.html" % local.server_address[1], os.path.join(tmp, "p3"))
        assert got == "status 200 choices 1", got
        assert a.metrics()['sasp_requests_refused_total{reason="origin"}'] >= 1
        foreign.shutdown()
        local.shutdown()
    finally:
        assert a.stop() == 0
        shutil.rmtree(tmp, ignore_errors=True)


def closed_within(sock, limit):
    """Whether the server closes sock (EOF or reset) within limit seconds."""
    sock.settimeout(limit)
    try:
        while True:
            if sock.recv(4096) == b"":
                return True
    except socket.timeout:
        return False
    except OSError:
        return True


def t_header_timeout(s):
    a = Server("--header-timeout", "1", name="header-timeout")
    try:
        idle = socket.create_connection(("127.0.0.1", a.port))
        slow = socket.create_connection(("127.0.0.1", a.port))
        stop = []

        def trickle():
            for b in b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa":
                if stop:
                    return
                try:
                    slow.send(bytes([b]))
                except OSError:
                    return
                time.sleep(0.1)
        threading.Thread(target=trickle, daemon=True).start()
        assert closed_within(idle, 10), "an idle connection outlived --header-timeout"
        assert closed_within(slow, 10), "a trickling connection outlived --header-timeout"
        stop.append(1)
        assert a.metrics()["sasp_connections_header_timeout_total"] >= 2
        # a request sent in time, then kept alive, is served
        st, _, _ = a.request("GET", "/health")
        assert st == 200
    finally:
        assert a.stop() == 0


def metrics_from_other_address(port):
    """/metrics read from 127.0.0.2, an address no per-address limit of the test touches."""
    other = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0))
    other.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    text = read_all(other)
    other.close()
    assert b" 200 " in text.split(b"\r\n")[0], text[:100]
    return text


def open_connections(port):
    m = re.search(rb"\nsasp_connections_open (\d+)", metrics_from_other_address(port))
    return int(m.group(1)) if m else 0


def t_per_ip(s):
    a = Server("--max-conn-per-ip", "3", name="per-ip")
    try:
        socks = [socket.create_connection(("127.0.0.1", a.port)) for _ in range(3)]
        # The server's threads accept from one listening socket, in no fixed order: wait until it
        # holds the three (and the metrics connection itself), so that the fourth is the one refused.
        wait_for(lambda: open_connections(a.port) >= 4, "the server to hold the three connections", 10)
        extra = socket.create_connection(("127.0.0.1", a.port))
        assert closed_within(extra, 5), "a fourth connection from one address was kept"
        text = metrics_from_other_address(a.port)
        m = re.search(rb'sasp_connections_refused_total\{limit="per_ip"\} (\d+)', text)
        assert m and int(m.group(1)) >= 1, text[-2000:]
        socks[0].sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert b" 200 " in socks[0].recv(4096)
        for x in socks + [extra]:
            x.close()
    finally:
        assert a.stop() == 0


def t_inflight(s):
    a = Server("--max-inflight-per-client", "1", "--step-delay", "20", name="inflight")
    try:
        c = a.conn()
        c.request("POST", "/v1/completions", body=json.dumps({"prompt": "x", "max_tokens": 100, "ignore_eos": True,
                                                              "stream": True}),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 200
        r.readline()
        st, h, body = a.request("POST", "/v1/completions", {"prompt": "y", "max_tokens": 2})
        assert st == 429 and h["retry-after"] == "1", (st, h, body)
        assert "max-inflight-per-client" in json.loads(body)["error"]["message"]
        import http.client
        o = http.client.HTTPConnection("127.0.0.1", a.port, timeout=60, source_address=("127.0.0.2", 0))
        o.request("POST", "/v1/completions", body=json.dumps({"prompt": "z", "max_tokens": 2}),
                  headers={"Content-Type": "application/json"})
        assert o.getresponse().status == 200  # another client is served meanwhile
        o.close()
        c.close()
        assert a.metrics()['sasp_requests_refused_total{reason="inflight_per_client"}'] == 1
        wait_for(lambda: a.request("POST", "/v1/completions", {"prompt": "y", "max_tokens": 2})[0] == 200,
                 "the client's place back once its stream is gone")
    finally:
        assert a.stop() == 0


def t_cancel_log(s):
    a = Server("--step-delay", "20", name="cancel-log")
    try:
        c = a.conn()
        c.request("POST", "/v1/completions", body=json.dumps({"prompt": "cancel me", "max_tokens": 200,
                                                              "ignore_eos": True, "stream": True}),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        events = 0
        while events < 6:
            if r.readline().startswith(b"data: "):
                events += 1
        c.close()
        wait_for(lambda: a.metrics()["sasp_requests_cancelled_total"] >= 1, "the stream cancelled")
    finally:
        assert a.stop() == 0
    log = open(a.log_path).read()
    m = re.search(r"POST /v1/completions \d+ tokens=(\d+)\+(\d+)", log)
    assert m and int(m.group(1)) >= 1 and int(m.group(2)) >= 6, log
    assert "Failed to send" not in log and "libmicrohttpd" not in log, log


TESTS = [t_host, t_origin_curl, t_allow_origin, t_api_key, t_browser, t_header_timeout, t_per_ip, t_inflight,
         t_cancel_log]


def main():
    if not shutil.which("curl"):
        print("test_guard.py: curl not found; skipped")
        return 77
    want = sys.argv[1:]
    s = Server(name="guard")
    failed = 0
    try:
        for t in TESTS:
            name = t.__name__[2:]
            if want and not any(w in name for w in want):
                continue
            t0 = time.time()
            try:
                t(s)
                print("ok   %s (%.1fs)" % (name, time.time() - t0))
            except Exception:
                failed += 1
                print("FAIL %s" % name)
                traceback.print_exc()
    finally:
        rc = s.stop()
    if rc != 0:
        print("FAIL the server's exit status was %s" % rc)
        failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
