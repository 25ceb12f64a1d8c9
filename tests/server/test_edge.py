#!/usr/bin/env python3
"""test_edge.py: llama.cpp's slot actions and /apply-template, the per-client limits behind a trusted
proxy (--trusted-proxy, X-Forwarded-For), and HTTPS (--ssl-key-file / --ssl-cert-file), over HTTP as
their clients call them (Python standard library, curl and openssl).

  slots:  POST /slots/{id}?action=save|restore|erase with --slot-save-path: a saved slot restored into
          another slot after both were erased serves the same greedy completion from its cache
          (tokens_cached); files of another model, truncated, corrupt or not slot files are refused
          with 400; names with "/" or ".." or empty are refused; a save of a busy slot waits for its
          sequence to end; without --slot-save-path save and restore answer 501 as llama.cpp's does,
          erase works.
  proxy:  with --trusted-proxy 127.0.0.1 and one request in flight per client, requests from
          127.0.0.1 with distinct X-Forwarded-For addresses each get theirs, a second with the same one
          gets 429, and X-Forwarded-For from 127.0.0.2 (not trusted) is ignored.
  tls:    a certificate made here with openssl; /health and a completion over HTTPS with curl --cacert
          and Python's ssl; plain HTTP on that port gets nothing; a key that is not the certificate's,
          a missing file and a file that is not PEM stop the start with a message naming the file.

Uses the Server class and helpers of test_server.py (the tiny test model on a free port). Run by
tests/server/run.sh under `make check`; by hand:
SASP_BUILDDIR=. SASP_SRCDIR=. python3 tests/server/test_edge.py [name-substring ...]
"""
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import test_server as ts
from test_server import Server, check_error

SLOT_DIR = tempfile.mkdtemp(prefix="sasp-slots-")
PROMPT = "The quick brown fox jumps over the lazy dog, and then it runs back home again"
GREEDY = {"prompt": PROMPT, "n_predict": 8, "temperature": 0}


def slots(s, model=None):
    return {x["id"]: x for x in s.get_json("/slots" + ("?model=" + model if model else ""))}


def wait_cached(s, slot, n):
    """/slots is a snapshot taken after each engine step, a moment after the answers: poll for it."""
    deadline = time.time() + 10
    while slots(s)[slot]["n_cached"] != n and time.time() < deadline:
        time.sleep(0.01)
    return slots(s)[slot]["n_cached"] == n


def action(s, slot, what, filename=None, model=None):
    q = "/slots/%s?action=%s%s" % (slot, what, "&model=" + model if model else "")
    return s.post(q, {"filename": filename} if filename is not None else {})


def t_slots_save_restore(s):
    status, first = s.post("/completion", GREEDY)
    assert status == 200, first
    src = first["id_slot"]
    other = 1 - src
    held = first["tokens_evaluated"] + first["tokens_predicted"] - 1  # the last token is never fed
    assert wait_cached(s, src, held), (slots(s)[src], first)
    status, saved = action(s, src, "save", "fox.bin")
    assert status == 200, saved
    size = os.path.getsize(os.path.join(SLOT_DIR, "fox.bin"))
    assert saved["id_slot"] == src and saved["filename"] == "fox.bin" and saved["n_saved"] == held, saved
    assert saved["n_written"] == size and saved["timings"]["save_ms"] >= 0, (saved, size)
    for i in (0, 1):
        status, erased = action(s, i, "erase")
        assert status == 200 and erased["id_slot"] == i, erased
        assert erased["n_erased"] == (held if i == src else erased["n_erased"]), erased
    assert wait_cached(s, 0, 0) and wait_cached(s, 1, 0), slots(s)
    status, restored = action(s, other, "restore", "fox.bin")
    assert status == 200, restored
    assert restored == {"id_slot": other, "filename": "fox.bin", "n_restored": held, "n_read": size,
                        "timings": restored["timings"]}, restored
    assert wait_cached(s, other, held), slots(s)
    status, again = s.post("/completion", GREEDY)
    assert status == 200, again
    assert again["id_slot"] == other, again  # the slot that holds the prefix
    assert again["tokens_cached"] == first["tokens_evaluated"] - 1, (again["tokens_cached"], first)
    assert again["content"] == first["content"], (again["content"], first["content"])
    # the cache restored is the one computed: the same text as a request that reuses nothing
    status, fresh = s.post("/completion", dict(GREEDY, cache_prompt=False))
    assert status == 200 and fresh["content"] == first["content"], fresh


def t_slots_refused_files(s):
    fullest = max(slots(s).values(), key=lambda x: x["n_cached"])["id"]
    status, saved = action(s, fullest, "save", "base.bin")
    assert status == 200 and saved["n_saved"] > 0, saved
    base = open(os.path.join(SLOT_DIR, "base.bin"), "rb").read()
    bad = {
        "truncated.bin": (base[:-7], "truncated"),
        "corrupt.bin": (base[:-5] + bytes([base[-5] ^ 0x40]) + base[-4:], "checksum"),
        "other-model.bin": (base[:40] + bytes([base[40] ^ 1]) + base[41:], "another model"),
        "garbage.bin": (b"not a slot file at all" * 10, "not a sasp slot file"),
        "empty.bin": (b"", "not a sasp slot file"),
    }
    for name, (data, why) in bad.items():
        with open(os.path.join(SLOT_DIR, name), "wb") as f:
            f.write(data)
        status, body = action(s, 1, "restore", name)
        check_error(status, body, 400, contains=["Unable to restore slot", why])
    status, body = action(s, 1, "restore", "never-saved.bin")
    check_error(status, body, 400, contains=["no such file"])
    assert SLOT_DIR not in json.dumps(body), body  # the server's paths stay its own
    # a file saved from one model is refused by another (the second -m)
    status, body = action(s, 0, "restore", "base.bin", model="tiny-fim")
    check_error(status, body, 400, contains=["another model"])


def t_slots_bad_requests(s):
    for name in ["", "../x.bin", "a/b.bin", "..", "x..y", "/etc/passwd", "a\\b", "bad\nname"]:
        status, body = action(s, 0, "save", name)
        check_error(status, body, 400, param="filename", contains=["Invalid filename"])
        status, body = action(s, 0, "restore", name)
        check_error(status, body, 400, param="filename", contains=["Invalid filename"])
    assert not os.path.exists(os.path.join(os.path.dirname(SLOT_DIR), "x.bin"))  # nothing beside the folder
    status, body = s.post("/slots/0?action=save", {})
    check_error(status, body, 400, param="filename")
    status, body = s.post("/slots/0?action=save", {"filename": 7})
    check_error(status, body, 400, param="filename")
    for slot in ["2", "99", "x", "-1", "0x1"]:
        status, body = action(s, slot, "erase")
        check_error(status, body, 400, contains=["Invalid slot ID"])
    status, body = action(s, 0, "nap")
    check_error(status, body, 400, contains=["Invalid action"])
    status, body = s.post("/slots/0?action=erase&model=nope", {})
    assert status == 404, (status, body)
    status, _, _ = s.request("GET", "/slots/0?action=erase")
    assert status == 405, status


def t_slots_busy_slot_waits(s):
    """A save of a slot whose sequence runs waits for it to end (llama.cpp defers it), then saves all."""
    out = {}

    def generate():
        out["r"] = s.post("/completion", {"prompt": "busy slot", "n_predict": 100, "temperature": 0,
                                          "ignore_eos": True})
    t = threading.Thread(target=generate)
    t.start()
    deadline = time.time() + 30
    busy = None
    while busy is None and time.time() < deadline:
        busy = next((i for i, x in slots(s).items() if x["is_processing"]), None)
    assert busy is not None, "no slot became busy"
    status, saved = action(s, busy, "save", "busy.bin")
    t.join(60)
    assert status == 200, saved
    status, r = out["r"]
    assert status == 200 and r["tokens_predicted"] == 100, r
    # all of it: saved after the sequence ended, not in the middle (its last token is never fed)
    assert saved["n_saved"] == r["tokens_evaluated"] + 100 - 1, (saved, r)


def t_slots_without_path(s):
    status, body = action(s, 0, "save", "x.bin")
    check_error(status, body, 501, contains=["This server does not support slots action. Start it with "
                                             "`--slot-save-path`"])
    assert body["error"]["type"] == "not_supported_error", body
    status, body = action(s, 0, "restore", "x.bin")
    assert status == 501, body
    s.post("/completion", GREEDY)
    status, body = action(s, 0, "erase")
    assert status == 200 and set(body) == {"id_slot", "n_erased"}, body


def t_apply_template(s):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}]
    status, body = s.post("/apply-template", {"messages": msgs})
    assert status == 200, body
    assert body == {"prompt": "System: Be brief.\nUser: Hi\nAssistant: Hello.\nUser: Bye\nAssistant:"}, body
    # the same prompt /v1/chat/completions reads: as many tokens
    status, toks = s.post("/tokenize", {"content": body["prompt"]})
    status, chat = s.post("/v1/chat/completions", {"messages": msgs, "max_tokens": 1})
    assert status == 200 and chat["usage"]["prompt_tokens"] == len(toks["tokens"]), (chat["usage"], toks)
    status, body = s.post("/apply-template", {})
    check_error(status, body, 400, param="messages")
    status, body = s.post("/apply-template", {"messages": [{"role": "wizard", "content": "x"}]})
    check_error(status, body, 400, param="messages")


def hold_request(s, xff=None, source=None):
    """A streamed completion that runs (step delay) until closed; (connection, status)."""
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30, source_address=(source, 0) if source else None)
    h = {"Content-Type": "application/json"}
    if xff:
        h["X-Forwarded-For"] = xff
    c.request("POST", "/completion", body=json.dumps({"prompt": "hold", "n_predict": 200, "stream": True,
                                                      "ignore_eos": True}), headers=h)
    r = c.getresponse()
    if r.status != 200:
        r.read()
    return c, r.status


def t_trusted_proxy(s):
    held = []
    try:
        # through the proxy (127.0.0.1, trusted): two clients, one request in flight each
        for xff in ["10.0.0.1", "203.0.113.9, 10.0.0.2", "10.0.0.3, 127.0.0.1"]:
            c, status = hold_request(s, xff)
            held.append(c)
            assert status == 200, (xff, status)
        for xff in ["10.0.0.1", "198.51.100.7,10.0.0.2", "10.0.0.3"]:  # the same right-most clients
            c, status = hold_request(s, xff)
            c.close()
            assert status == 429, (xff, status)
        # two X-Forwarded-For headers (a client's own, then the proxy's): the proxy's, right-most, counts
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        c.putrequest("POST", "/completion")
        for v in ["10.9.9.9", "10.0.0.1"]:
            c.putheader("X-Forwarded-For", v)
        body = json.dumps({"prompt": "x", "n_predict": 1}).encode()
        c.putheader("Content-Type", "application/json")
        c.putheader("Content-Length", str(len(body)))
        c.endheaders(body)
        r = c.getresponse()
        r.read()
        c.close()
        assert r.status == 429, r.status
        # not from the proxy: the header is the client's own word, and ignored
        c, status = hold_request(s, "10.1.0.1", source="127.0.0.2")
        held.append(c)
        assert status == 200, status
        c, status = hold_request(s, "10.1.0.2", source="127.0.0.2")
        c.close()
        assert status == 429, status
    finally:
        for c in held:
            c.close()


def make_cert(d):
    def req(name, cn, san):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", name + "-key.pem",
                        "-out", name + "-cert.pem", "-days", "2", "-subj", "/CN=" + cn]
                       + (["-addext", "subjectAltName=" + san] if san else []),
                       cwd=d, check=True, capture_output=True)
    req("server", "localhost", "DNS:localhost,IP:127.0.0.1")
    req("other", "other", None)


NODE_OPENAI = """
import OpenAI from 'openai';
const openai = new OpenAI({ baseURL: process.env.SASP_URL + '/v1', apiKey: 'k', maxRetries: 0 });
const r = await openai.chat.completions.create({ model: 'tiny-model', max_tokens: 3,
                                                 messages: [{ role: 'user', content: 'hi' }] });
let chunks = 0;
for await (const c of await openai.completions.create({ model: 'tiny-model', prompt: 'x', max_tokens: 3,
                                                        stream: true })) chunks++;
console.log(JSON.stringify({ usage: r.usage, chunks }));
"""


def openai_over_tls(url, cert):
    """The openai npm client (tests/clients) over HTTPS, trusting the test's CA (NODE_EXTRA_CA_CERTS)."""
    clients = os.path.join(ts.SRC, "tests", "clients")
    if not shutil.which("node") or not os.path.isdir(os.path.join(clients, "node_modules", "openai")):
        print("SKIP openai_over_tls: node or tests/clients/node_modules (npm ci) missing")
        return
    env = dict(os.environ, SASP_URL=url, NODE_EXTRA_CA_CERTS=cert)
    out = subprocess.run(["node", "--input-type=module", "-e", NODE_OPENAI], cwd=clients, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["usage"]["completion_tokens"] == 3 and got["chunks"] >= 1, got


def t_tls(_):
    if not shutil.which("openssl") or not shutil.which("curl"):
        print("SKIP t_tls: openssl or curl not installed (scripts/install-deps.sh --test)")
        return
    d = tempfile.mkdtemp(prefix="sasp-tls-")
    try:
        make_cert(d)
        key, cert = os.path.join(d, "server-key.pem"), os.path.join(d, "server-cert.pem")
        s = Server("--ssl-key-file", key, "--ssl-cert-file", cert, name="tls")
        try:
            url = "https://localhost:%d" % s.port
            out = subprocess.run(["curl", "-sS", "--cacert", cert, url + "/health"], capture_output=True, text=True)
            assert out.returncode == 0 and json.loads(out.stdout) == {"status": "ok"}, out
            out = subprocess.run(["curl", "-sS", "--cacert", cert, url + "/v1/completions", "-H",
                                  "Content-Type: application/json", "-d", '{"prompt": "hi", "max_tokens": 3}'],
                                 capture_output=True, text=True)
            assert out.returncode == 0 and json.loads(out.stdout)["usage"]["completion_tokens"] == 3, out
            # without the certificate, curl refuses the server (it is not trusted)
            out = subprocess.run(["curl", "-sS", url + "/health"], capture_output=True, text=True)
            assert out.returncode == 60, out  # CURLE_PEER_FAILED_VERIFICATION
            ctx = ssl.create_default_context(cafile=cert)
            c = http.client.HTTPSConnection("127.0.0.1", s.port, context=ctx, timeout=30)
            c.request("POST", "/v1/chat/completions", body=json.dumps({"messages": [{"role": "user", "content": "x"}],
                                                                      "max_tokens": 2, "stream": True}),
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            text = r.read().decode()
            assert r.status == 200 and text.rstrip().endswith("data: [DONE]"), (r.status, text)
            c.close()
            out = subprocess.run(["curl", "-sS", "http://127.0.0.1:%d/health" % s.port], capture_output=True, text=True)
            assert out.returncode != 0, out  # plain HTTP gets no answer
            openai_over_tls(url, cert)
        finally:
            assert s.stop() == 0
        for args, want in [((os.path.join(d, "other-key.pem"), cert), "cannot serve TLS"),
                           ((os.path.join(d, "missing.pem"), cert), "missing.pem: No such file"),
                           ((key, os.path.join(ts.MODEL, "config.json")), "not a PEM file"),
                           ((key,), "go together")]:
            flags = ["--ssl-key-file", args[0]] + (["--ssl-cert-file", args[1]] if len(args) > 1 else [])
            p = subprocess.run([ts.SERVER, "-m", ts.MODEL, "--port", "0", "-t", "1", *flags], capture_output=True,
                               text=True, timeout=60)
            assert p.returncode != 0 and want in p.stderr, (args, p.returncode, p.stderr)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    only = sys.argv[1:]
    fim = os.path.join(ts.SRC, "tests", "fixtures", "tiny-fim")
    plan = [
        (("-m", ts.MODEL, "-m", fim, "--parallel", "2", "--slot-save-path", SLOT_DIR, "--step-delay", "2"), "slots",
         [t_slots_save_restore, t_slots_refused_files, t_slots_bad_requests, t_slots_busy_slot_waits,
          t_apply_template]),
        (("--parallel", "2"), "slots-off", [t_slots_without_path]),
        (("--parallel", "8", "--max-inflight-per-client", "1", "--trusted-proxy", "127.0.0.1",
          "--trusted-proxy", "::1", "--step-delay", "20"), "proxy", [t_trusted_proxy]),
        (None, "tls-none", [t_tls]),
    ]
    failures = ts.run_plan(plan, only)
    shutil.rmtree(SLOT_DIR, ignore_errors=True)
    return ts.report(failures)


if __name__ == "__main__":
    sys.exit(main())
