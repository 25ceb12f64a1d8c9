#!/usr/bin/env python3
"""test_server.py: sasp-server driven over HTTP, as its clients drive it (Python standard library only).

Starts the daemon on a free loopback port (--port 0; the port is read from the URL it prints) with the
tiny test model tests/fixtures/tiny-model (scripts/gen-server-fixture.sh), runs every check, and stops
it (SIGTERM, then SIGKILL) even when a check fails. Run by tests/server/run.sh under `make check`;
by hand: SASP_BUILDDIR=. SASP_SRCDIR=. python3 tests/server/test_server.py [name-substring ...]

No check asserts a duration: waits for an effect (a freed slot, a counter) poll with a generous limit.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

SRC = os.environ.get("SASP_SRCDIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("SASP_BUILDDIR") or SRC
SERVER = os.environ.get("SASP_SERVER") or os.path.join(BUILD, "sasp-server")
MODEL = os.path.join(SRC, "tests", "fixtures", "tiny-model")
N_CTX = 256
LOG_DIR = tempfile.mkdtemp(prefix="sasp-server-test-")


class Server:
    """One sasp-server process on a free loopback port."""

    def __init__(self, *args, name="main"):
        self.log_path = os.path.join(LOG_DIR, name + ".log")
        self.log = open(self.log_path, "wb")
        model = [] if "-m" in args or "--models-dir" in args else ["-m", MODEL]
        self.proc = subprocess.Popen([SERVER, *model, "--host", "127.0.0.1", "--port", "0", "-t", "1", *args],
                                     stdout=subprocess.PIPE, stderr=self.log)
        self.port = None
        deadline = time.time() + 60
        out = b""
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            out += line
            m = re.search(rb"listening on https?://127\.0\.0\.1:(\d+)/", line)
            if m:
                self.port = int(m.group(1))
                break
        self.banner = out.decode(errors="replace")  # what it printed at start, up to the URL
        if self.port is None:
            self.stop()
            raise RuntimeError("sasp-server did not start: %r; log: %s" % (out, open(self.log_path, "rb").read()))
        # keep draining stdout so the server never blocks on it
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def conn(self, timeout=60):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None):
        """(status, headers dict with lower-case names, body bytes)"""
        c = self.conn()
        try:
            h = dict(headers or {})
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                h.setdefault("Content-Type", "application/json")
            elif isinstance(body, str):
                body = body.encode()
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def post(self, path, obj, headers=None):
        status, h, data = self.request("POST", path, obj, headers)
        return status, json.loads(data) if data else None

    def get_json(self, path):
        status, h, data = self.request("GET", path)
        assert status == 200, (path, status, data)
        return json.loads(data)

    def stream(self, path, obj, on_event=None):
        """POST with stream: true; returns the list of raw payloads (SSE data or NDJSON lines), bytes.
        on_event(i, payload) may return True to hang up there."""
        c = self.conn()
        body = json.dumps(dict(obj, stream=True)).encode()
        c.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 200, (r.status, r.read())
        events = []
        ndjson = path.startswith("/api/")
        ctype = r.getheader("Content-Type")
        assert ctype == ("application/x-ndjson" if ndjson else "text/event-stream"), ctype
        while True:
            line = r.readline()
            if not line:
                break
            line = line.rstrip(b"\r\n")
            if not line:
                continue
            if not ndjson:
                assert line.startswith(b"data: "), line
                line = line[6:]
            events.append(line)
            if on_event and on_event(len(events) - 1, line):
                c.sock.shutdown(socket.SHUT_RDWR)
                c.close()
                return events
            if line == b"[DONE]":
                break
        c.close()
        return events

    def metrics(self):
        status, h, data = self.request("GET", "/metrics")
        assert status == 200
        out = {}
        for line in data.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out


def parse_sse(events):
    """Decode SSE payloads: each must be strict UTF-8 JSON; returns (objects, saw_done)."""
    objs, done = [], False
    for e in events:
        if e == b"[DONE]":
            done = True
            continue
        assert not done, "data after [DONE]"
        objs.append(json.loads(e.decode("utf-8", errors="strict")))
    return objs, done


def sse_text(objs, index=0, chat=False):
    out = ""
    finish = None
    for o in objs:
        for ch in o["choices"]:
            if ch["index"] != index:
                continue
            if chat:
                out += ch["delta"].get("content") or ""
            else:
                out += ch["text"]
            if ch["finish_reason"]:
                assert finish is None, "two finish reasons"
                finish = ch["finish_reason"]
    return out, finish


def wait_for(pred, what, limit=30.0):
    t = time.time()
    while time.time() - t < limit:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def check_error(status, body, want_status, param=None, contains=None):
    assert status == want_status, (status, want_status, body)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    e = body["error"]
    assert set(e) == {"message", "type", "param", "code"}, e
    assert isinstance(e["message"], str) and e["message"], e
    assert isinstance(e["type"], str) and e["type"], e
    if param is not None:
        assert e["param"] == param, (e, param)
    if contains:
        for c in contains:
            assert c in e["message"], (c, e["message"])


def check_ollama_error(status, body, want_status, contains=None):
    """Ollama's error shape, on every /api/ path: {"error": "message"}."""
    assert status == want_status, (status, want_status, body)
    assert isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], str), body
    for c in contains or []:
        assert c in body["error"], (c, body["error"])


SAMPLED = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0}

# --- the checks (each gets the main server) ---


def t_health_models_props(s):
    assert s.get_json("/health") == {"status": "ok"}
    m = s.get_json("/v1/models")
    assert m["object"] == "list" and m["data"][0]["id"] == "tiny-model" and m["data"][0]["object"] == "model"
    p = s.get_json("/props")
    assert p["model"] == "tiny-model" and p["n_ctx"] == N_CTX and p["total_slots"] == 8
    assert p["simd"] in ("scalar", "avx2", "avx512", "neon"), p["simd"]
    assert len(p["slots"]) == 8 and all(sl["state"] == "idle" for sl in p["slots"]), p["slots"]
    assert p["config"]["vocab_size"] == 512 and p["n_params"] > 0
    st, h, data = s.request("HEAD", "/health")
    assert st == 200 and data == b""
    tags = s.get_json("/api/tags")
    assert tags["models"][0]["name"] == "tiny-model:latest"
    # the weights served: by default (--weights auto) the fast type of the kernels, q8_0 with SIMD
    assert p["weights"] == ("f32" if p["simd"] == "scalar" else "q8_0"), p["weights"]
    assert tags["models"][0]["details"]["quantization_level"] == p["weights"].upper()
    assert "tiny-model (" in s.banner and "%s weights (auto" % p["weights"] in s.banner, s.banner


def t_tokenize_roundtrip(s):
    for text in ["Hello, world!", "The café 日本語 😀 naïve", "", "<|endoftext|>x", "  indented\n\tcode()"]:
        st, r = s.post("/tokenize", {"content": text})
        assert st == 200, r
        ids = r["tokens"]
        assert all(isinstance(i, int) and 0 <= i < 512 for i in ids)
        st, d = s.post("/detokenize", {"tokens": ids})
        assert st == 200 and d["content"] == text, (text, d)
    st, r = s.post("/tokenize", {"content": "<|endoftext|>"})
    assert r["tokens"] == [0], r
    st, r = s.post("/tokenize", {"content": "<|endoftext|>", "parse_special": False})
    assert 0 not in r["tokens"] and len(r["tokens"]) > 1, r
    st, r = s.post("/tokenize", {"content": "café", "with_pieces": True})
    assert st == 200 and all("id" in p and "piece" in p for p in r["tokens"]), r
    check_error(*s.post("/tokenize", {"content": 5}), 400, "content")
    check_error(*s.post("/detokenize", {"tokens": [1, 512]}), 400, "tokens")
    check_error(*s.post("/detokenize", {"tokens": "abc"}), 400, "tokens")


def t_completion_shape_and_usage(s):
    prompt = "The café served"
    n_prompt = len(s.post("/tokenize", {"content": prompt})[1]["tokens"])
    st, r = s.post("/v1/completions", dict(SAMPLED, prompt=prompt, max_tokens=12, seed=5, ignore_eos=True,
                                           model="whatever", user="u1", some_unknown_field={"x": 1},
                                           token_healing=False))
    assert st == 200, r
    assert r["object"] == "text_completion" and r["id"].startswith("cmpl-") and r["model"] == "tiny-model"
    assert isinstance(r["created"], int)
    ch = r["choices"]
    assert len(ch) == 1 and ch[0]["index"] == 0 and ch[0]["finish_reason"] == "length" and ch[0]["logprobs"] is None
    assert r["usage"] == {"prompt_tokens": n_prompt, "completion_tokens": 12, "total_tokens": n_prompt + 12,
                          "prompt_tokens_details": {"cached_tokens": 0}}, r
    # default max_tokens is 16, as OpenAI's; token healing (on by default) backs off the prompt's last
    # token, which the usage does not count: the model read one token fewer
    st, r = s.post("/v1/completions", dict(SAMPLED, prompt=prompt, seed=5, ignore_eos=True))
    assert r["usage"]["completion_tokens"] == 16, r
    assert r["usage"]["prompt_tokens"] == n_prompt - 1, (r["usage"], n_prompt)
    # generation ends when the context is full: every position holds a token, the last one sampled
    # is returned without being fed back
    st, r = s.post("/v1/completions", dict(SAMPLED, prompt=[5] * 200, max_tokens=N_CTX, seed=5, ignore_eos=True))
    assert st == 200 and r["choices"][0]["finish_reason"] == "length", r
    assert r["usage"]["completion_tokens"] == N_CTX - 200 + 1, r["usage"]
    st, r = s.post("/v1/completions", dict(SAMPLED, prompt=[5] * N_CTX, max_tokens=5, seed=5, ignore_eos=True))
    assert st == 200 and r["usage"]["completion_tokens"] == 1 and r["choices"][0]["finish_reason"] == "length"


def t_stream_equals_nonstream(s):
    # sampled runs compared, the prompt cache on: a reused prefix gives a fresh prefill's logits bit for
    # bit (the kernels are batch-invariant), so the same seed draws the same tokens
    for seed in (1, 2, 3):
        req = dict(SAMPLED, prompt="Once upon a time", max_tokens=40, seed=seed)
        st, r = s.post("/v1/completions", req)
        assert st == 200
        events = s.stream("/v1/completions", dict(req, stream_options={"include_usage": True}))
        objs, done = parse_sse(events)
        assert done, "no [DONE]"
        text, finish = sse_text([o for o in objs if o["choices"]])
        assert text == r["choices"][0]["text"], (text, r)
        assert finish == r["choices"][0]["finish_reason"]
        usage = [o for o in objs if not o["choices"]]
        counts = lambda u: {k: v for k, v in u.items() if k != "prompt_tokens_details"}  # cached ones differ
        assert len(usage) == 1 and counts(usage[0]["usage"]) == counts(r["usage"]), (usage, r["usage"])
        assert usage[0]["usage"]["prompt_tokens_details"]["cached_tokens"] > 0  # the stream read the cache
        assert objs[-1] is usage[0], "the usage chunk comes last"
        # every streamed chunk carries the same id
        assert len({o["id"] for o in objs}) == 1
        # the same seed again gives the same text; another seed (almost surely) another
        st, r2 = s.post("/v1/completions", req)
        assert r2["choices"][0]["text"] == r["choices"][0]["text"]
    a = s.post("/v1/completions", dict(SAMPLED, prompt="x", max_tokens=30, seed=10, ignore_eos=True,
                                       cache_prompt=False))[1]
    b = s.post("/v1/completions", dict(SAMPLED, prompt="x", max_tokens=30, seed=11, ignore_eos=True))[1]
    assert a["choices"][0]["text"] != b["choices"][0]["text"]


def t_tokens_leave_one_by_one(s):
    # 20 generated tokens arrive as separate events (no buffering until the end)
    events = s.stream("/v1/completions", dict(prompt="abc", max_tokens=20, temperature=0, ignore_eos=True))
    objs, done = parse_sse(events)
    assert done and len(objs) >= 10, len(objs)


def t_chat(s):
    msgs = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "hi"}]}, {"role": "user", "content": "again"}]
    req = dict(SAMPLED, messages=msgs, max_tokens=25, seed=4)
    st, r = s.post("/v1/chat/completions", req)
    assert st == 200, r
    assert r["object"] == "chat.completion" and r["id"].startswith("chatcmpl-")
    msg = r["choices"][0]["message"]
    assert msg["role"] == "assistant" and isinstance(msg["content"], str)
    rendered = "System: You are terse.\nUser: Say hi\nAssistant: hi\nUser: again\nAssistant:"
    n_prompt = len(s.post("/tokenize", {"content": rendered})[1]["tokens"])
    assert r["usage"]["prompt_tokens"] == n_prompt, (r["usage"], n_prompt)
    events = s.stream("/v1/chat/completions", req)
    objs, done = parse_sse(events)
    assert done
    assert objs[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}, objs[0]
    assert all(o["object"] == "chat.completion.chunk" for o in objs)
    text, finish = sse_text(objs, chat=True)
    assert text == msg["content"] and finish == r["choices"][0]["finish_reason"]
    assert "\nUser:" not in text
    # max_completion_tokens is the newer name of max_tokens
    st, r = s.post("/v1/chat/completions", dict(SAMPLED, messages=msgs, max_completion_tokens=3, seed=4,
                                                ignore_eos=True))
    assert r["usage"]["completion_tokens"] <= 3
    # logprobs in chat's shape
    st, r = s.post("/v1/chat/completions", dict(messages=msgs, max_tokens=4, temperature=0, logprobs=True,
                                                top_logprobs=3, ignore_eos=True))
    lp = r["choices"][0]["logprobs"]["content"]
    assert 1 <= len(lp) <= 4
    for t in lp:
        assert set(t) == {"token", "logprob", "bytes", "top_logprobs"} and len(t["top_logprobs"]) == 3
        assert t["logprob"] <= 0 and t["top_logprobs"][0]["logprob"] >= t["top_logprobs"][1]["logprob"]
        assert t["token"] == t["top_logprobs"][0]["token"]  # greedy picks the most likely


def t_generate(s):
    req = {"model": "tiny-model", "prompt": "Hello", "options": dict(SAMPLED, num_predict=30, seed=8)}
    lines = s.stream("/api/generate", req)
    objs = [json.loads(l.decode("utf-8", errors="strict")) for l in lines]
    assert all(o["model"] == "tiny-model" and "created_at" in o for o in objs)
    assert all(not o["done"] for o in objs[:-1]) and objs[-1]["done"]
    final = objs[-1]
    for k in ("done_reason", "context", "total_duration", "load_duration", "prompt_eval_count",
              "prompt_eval_duration", "eval_count", "eval_duration"):
        assert k in final, k
    text = "".join(o["response"] for o in objs)
    st, r = s.post("/api/generate", dict(req, stream=False))
    assert st == 200 and r["done"] and r["response"] == text, (r, text)
    assert r["eval_count"] == final["eval_count"] and r["done_reason"] == final["done_reason"]
    n_prompt = len(s.post("/tokenize", {"content": "Hello"})[1]["tokens"])
    # token healing: the model read the prompt less its last token, and "context" holds what it read
    # and generated, whose text is the prompt and the response, nothing repeated
    assert r["prompt_eval_count"] in (n_prompt, n_prompt - 1), (r, n_prompt)
    assert len(r["context"]) == r["prompt_eval_count"] + r["eval_count"]
    full = s.post("/detokenize", {"tokens": [t for t in r["context"] if t != 0]})[1]["content"]
    if "\ufffd" not in full:  # (bytes that form no character are U+FFFD, placed differently by the two)
        assert full == "Hello" + r["response"], (full, r["response"])
    assert r["total_duration"] >= r["eval_duration"] >= 0
    # the context continues a conversation: same as sending the whole text's ids
    st, r2 = s.post("/api/generate", {"prompt": "", "context": r["context"], "stream": False,
                                      "options": {"num_predict": 3, "temperature": 0}})
    assert st == 200 and r2["prompt_eval_count"] == len(r["context"]), r2
    # an empty prompt only "loads the model"
    st, r3 = s.post("/api/generate", {"model": "tiny-model", "prompt": ""})
    assert st == 200 and r3["done"] and r3["response"] == ""


def t_prompt_forms(s):
    ids = s.post("/tokenize", {"content": "Hello there"})[1]["tokens"]
    base = dict(max_tokens=5, temperature=0, ignore_eos=True, token_healing=False)
    by_text = s.post("/v1/completions", dict(base, prompt="Hello there"))[1]
    by_ids = s.post("/v1/completions", dict(base, prompt=ids))[1]
    assert by_ids["choices"][0]["text"] == by_text["choices"][0]["text"]
    assert by_ids["usage"]["prompt_tokens"] == len(ids)
    many = s.post("/v1/completions", dict(base, prompt=["Hello there", "Other"]))[1]
    assert [c["index"] for c in many["choices"]] == [0, 1]
    assert many["choices"][0]["text"] == by_text["choices"][0]["text"]
    arrs = s.post("/v1/completions", dict(base, prompt=[ids, ids[:1]]))[1]
    assert len(arrs["choices"]) == 2 and arrs["choices"][0]["text"] == by_text["choices"][0]["text"]
    # echo puts the prompt first
    e = s.post("/v1/completions", dict(base, prompt="Hello there", echo=True))[1]
    assert e["choices"][0]["text"] == "Hello there" + by_text["choices"][0]["text"]
    ev = parse_sse(s.stream("/v1/completions", dict(base, prompt="Hello there", echo=True)))[0]
    assert sse_text(ev)[0] == e["choices"][0]["text"]
    # n choices: different seeds per choice, usage counts the prompt once
    n = s.post("/v1/completions", dict(SAMPLED, prompt="Hello there", max_tokens=8, n=3, seed=1, ignore_eos=True,
                                       token_healing=False))[1]
    assert len(n["choices"]) == 3 and n["usage"]["prompt_tokens"] == len(ids), n["usage"]
    assert n["usage"]["completion_tokens"] == 24
    # multiple prompts stream with their index
    objs, done = parse_sse(s.stream("/v1/completions", dict(base, prompt=["Hello there", "Other"])))
    assert done and sse_text(objs, 0)[0] == by_text["choices"][0]["text"]
    assert sse_text(objs, 1)[0] == many["choices"][1]["text"]
    # logprobs in the completions shape
    lp = s.post("/v1/completions", dict(base, prompt="Hello there", logprobs=2))[1]["choices"][0]["logprobs"]
    assert set(lp) == {"tokens", "token_logprobs", "top_logprobs", "text_offset"}
    assert len(lp["tokens"]) == 5 and all(len(t) <= 2 for t in lp["top_logprobs"])
    assert all(x <= 0 for x in lp["token_logprobs"])


def t_echo_logprobs(s):
    """echo with logprobs scores the prompt: the logprob of each prompt token given the ones before it
    equals the logprob the same token had when it was generated (no penalties, temperature 0)."""
    ids = s.post("/tokenize", {"content": "The café served"})[1]["tokens"]
    off = {"frequency_penalty": 0, "dry_multiplier": 0}  # the default penalties: off, to compare with scoring
    g = s.post("/api/generate", {"prompt": "The café served", "stream": False, "token_healing": False,
                                 "options": dict(off, temperature=0, num_predict=3)})[1]
    gen = g["context"][len(ids):]
    assert g["context"][:len(ids)] == ids and len(gen) == 3, g
    a = s.post("/v1/completions", dict(off, prompt=ids, max_tokens=3, temperature=0, logprobs=2,
                                       ignore_eos=True))[1]["choices"][0]["logprobs"]
    for stream in (False, True):
        req = {"prompt": ids + gen, "max_tokens": 1, "temperature": 0, "logprobs": 2, "echo": True,
               "ignore_eos": True}
        if stream:
            objs, done = parse_sse(s.stream("/v1/completions", req))
            lp = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
            for o in objs:
                if o["choices"][0]["logprobs"]:
                    for k in lp:
                        lp[k] += o["choices"][0]["logprobs"][k]
        else:
            lp = s.post("/v1/completions", req)[1]["choices"][0]["logprobs"]
        n = len(ids) + 3
        assert len(lp["tokens"]) == n + 1 and lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None, lp
        assert lp["text_offset"][0] == 0 and lp["text_offset"] == sorted(lp["text_offset"])
        assert all(x <= 0 for x in lp["token_logprobs"][1:])
        assert lp["tokens"][len(ids):n] == a["tokens"], (lp["tokens"], a["tokens"])
        # the same rows of logits, whether scored in the prompt or generated: equal, not close
        assert lp["token_logprobs"][len(ids):n] == a["token_logprobs"], (stream, lp["token_logprobs"], a)
        for t in lp["top_logprobs"][1:]:
            assert len(t) == 2


def t_batching_does_not_change_results(s):
    prompts = ["The %s of the" % w for w in ("end", "start", "café", "日本", "code", "Ωμέγα", "middle", "x")]
    results = {}

    def run(i, req, stream):
        if stream:
            results[i] = sse_text(parse_sse(s.stream("/v1/completions", req))[0])[0]
        else:
            results[i] = s.post("/v1/completions", req)[1]["choices"][0]["text"]

    # token healing and the prompt cache off: batching alone is under test (t_prompt_cache tests the
    # cache; t_same_answer_whatever_the_load the logprobs, bit for bit)
    for label, extra in (("greedy", dict(temperature=0)), ("seeded", dict(SAMPLED, seed=42))):
        reqs = [dict(extra, prompt=p, max_tokens=48, ignore_eos=True, token_healing=False, cache_prompt=False)
                for p in prompts]
        alone = []
        for i, r in enumerate(reqs):
            run(i, r, False)
            alone.append(results[i])
        for stream in (False, True):
            m0 = s.metrics()
            results.clear()
            th = [threading.Thread(target=run, args=(i, r, stream)) for i, r in enumerate(reqs)]
            for t in th:
                t.start()
            for t in th:
                t.join()
            together = [results[i] for i in range(len(reqs))]
            assert together == alone, (label, stream, together, alone)
            m1 = s.metrics()
            steps = m1["sasp_engine_steps_total"] - m0["sasp_engine_steps_total"]
            tokens = m1["sasp_generated_tokens_total"] - m0["sasp_generated_tokens_total"]
            assert tokens == 8 * 48 and steps < tokens / 2, ("the requests did not share steps", steps, tokens)


def t_same_answer_whatever_the_load(s):
    """The promise of docs/api.md: the same request gives the same tokens and logprobs, bit for bit,
    whatever else the server is doing. Greedy requests with logprobs (OpenAI completions, chat, and
    llama.cpp's n_probs), each run alone with the prompt cache cold, then alone with it hot, then all at
    once (their prompts cut into other chunks and batched with each other's decoding): the logprobs,
    printed with 9 significant digits, must be equal as numbers, not close. The server runs this once
    per weight type (--weights f32, bf16, q8_0)."""
    text = "def café(x):\n    return [y * 2 for y in range(x) if y % 3] + list('日本')\n" * 3
    reqs = []
    for n in (2, 15, 40, 80, 120, 160):  # prompts of one chunk (48 tokens) or several
        reqs.append(("/v1/completions", dict(prompt=text[:n], max_tokens=24, temperature=0, logprobs=5,
                                              ignore_eos=True, token_healing=False)))
    reqs.append(("/v1/chat/completions", dict(messages=[{"role": "user", "content": "Hello " * 12}], max_tokens=16,
                                              temperature=0, logprobs=True, top_logprobs=4)))
    reqs.append(("/completion", dict(prompt="The end of the " * 5, n_predict=16, temperature=0, n_probs=4,
                                     token_healing=False)))

    def answer(path, body):
        st, r = s.post(path, body)
        assert st == 200, (path, st, r)
        if path == "/v1/completions":
            lp = r["choices"][0]["logprobs"]
            return lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]
        if path == "/v1/chat/completions":
            c = r["choices"][0]["logprobs"]["content"]
            return [e["token"] for e in c], [e["logprob"] for e in c], [e["top_logprobs"] for e in c]
        p = r["completion_probabilities"]
        return [e["id"] for e in p], [e["logprob"] for e in p], [e["top_logprobs"] for e in p]

    cold = [answer(path, dict(body, cache_prompt=False)) for path, body in reqs]
    hot = [answer(path, body) for path, body in reqs]  # the second run of each prompt reads its cache
    hot = [answer(path, body) for path, body in reqs]
    for r in cold:
        assert len(r[0]) >= 16 and all(isinstance(x, float) for x in r[1]), r
    together = [None] * len(reqs)

    def run(i, cache):
        path, body = reqs[i]
        together[i] = answer(path, dict(body, cache_prompt=cache))

    for cache in (False, True):
        m0 = s.metrics()
        th = [threading.Thread(target=run, args=(i, cache)) for i in range(len(reqs))]
        for t in th:
            t.start()
        for t in th:
            t.join()
        steps = s.metrics()["sasp_engine_steps_total"] - m0["sasp_engine_steps_total"]
        assert steps < sum(len(r[0]) for r in cold), ("the requests did not share steps", steps)
        for i, (c, h, t) in enumerate(zip(cold, hot, together)):
            assert c == h, ("cold against hot", reqs[i], c, h)
            assert c == t, ("alone against together (cache %s)" % cache, reqs[i], c, t)


def first_boundary_stop(tokens, text):
    """A stop string that spans a token boundary: the last character of one token and the first of
    the next, both plain text; returns (stop, index of the token completing it) or None."""
    for i in range(1, len(tokens)):
        a, b = tokens[i - 1], tokens[i]
        if a.startswith("bytes:") or b.startswith("bytes:") or not a or not b:
            continue
        stop = a[-1] + b[0]
        if "\ufffd" in stop:
            continue
        return stop
    return None


def t_stop_strings(s):
    tried = 0
    for seed in range(1, 40):
        req = dict(SAMPLED, prompt="The cat", max_tokens=60, seed=seed, ignore_eos=True, logprobs=0)
        r = s.post("/v1/completions", req)[1]
        text = r["choices"][0]["text"]
        toks = r["choices"][0]["logprobs"]["tokens"]
        stop = first_boundary_stop(toks, text)
        if not stop or text.find(stop) < 0:
            continue
        tried += 1
        want = text[:text.find(stop)]
        for stream in (False, True):
            sreq = dict(req, stop=[stop, "NEVER-MATCHES"])
            if stream:
                objs, done = parse_sse(s.stream("/v1/completions", sreq))
                got, finish = sse_text(objs)
                for o in objs:  # no event leaks a piece that only the stop string explains
                    assert stop not in o["choices"][0]["text"]
            else:
                rr = s.post("/v1/completions", sreq)[1]
                got, finish = rr["choices"][0]["text"], rr["choices"][0]["finish_reason"]
            assert got == want and finish == "stop", (seed, stop, got, want, finish)
            assert stop not in got
        if tried >= 4:
            break
    assert tried >= 2, "no seed produced a stop string across a token boundary"
    # a stop string that never matches: finish_reason length, the whole text
    r = s.post("/v1/completions", dict(SAMPLED, prompt="x", max_tokens=20, seed=3, ignore_eos=True,
                                       stop="NEVER-MATCHES"))[1]
    assert r["choices"][0]["finish_reason"] == "length" and r["usage"]["completion_tokens"] == 20
    # a prefix of a stop string held back and then released at the end
    full = s.post("/v1/completions", dict(prompt="x", max_tokens=10, temperature=0, ignore_eos=True))[1]
    t = full["choices"][0]["text"]
    held = s.post("/v1/completions", dict(prompt="x", max_tokens=10, temperature=0, ignore_eos=True,
                                          stop=t[-1:] + "NEVER"))[1]
    assert held["choices"][0]["text"] == t and held["choices"][0]["finish_reason"] == "length"
    # usage counts every generated token up to the one completing the stop
    r = s.post("/v1/completions", dict(prompt="x", max_tokens=10, temperature=0, ignore_eos=True, stop=t[:1]))[1]
    assert r["choices"][0]["text"] == "" and r["usage"]["completion_tokens"] >= 1


def token_bytes_table():
    """Bytes of every token id, from the fixture's tokenizer.json (GPT-2's byte-to-unicode map)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    dec = {chr(c): b for b, c in zip(bs, cs)}
    tj = json.load(open(os.path.join(MODEL, "tokenizer.json"), encoding="utf-8"))
    table = {}
    for tok, i in tj["model"]["vocab"].items():
        table[i] = bytes(dec[ch] for ch in tok)
    for a in tj.get("added_tokens", []):
        table[a["id"]] = None  # special: no text
    return table


def t_multibyte_across_tokens(s):
    table = token_bytes_table()
    split_seen = 0
    for seed in range(1, 30):
        req = {"prompt": "日本語のテキスト café Ωμέγα", "stream": True, "token_healing": False,
               "options": {"temperature": 1.5, "top_k": 0, "top_p": 1, "min_p": 0, "seed": seed, "num_predict": 120}}
        lines = s.stream("/api/generate", req)
        objs = [json.loads(l.decode("utf-8", errors="strict")) for l in lines]  # each event valid UTF-8
        text = "".join(o["response"] for o in objs)
        final = objs[-1]
        n_prompt = final["prompt_eval_count"]
        gen = final["context"][n_prompt:]
        if gen and gen[-1] == 0:
            gen = gen[:-1]
        d = s.post("/detokenize", {"tokens": gen})[1]["content"]
        assert text == d, (seed, text, d)
        # find characters whose bytes span a token boundary in what was generated
        raw = b"".join(table[i] or b"" for i in gen)
        bounds, pos = set(), 0
        for i in gen:
            pos += len(table[i] or b"")
            bounds.add(pos)
        i = 0
        while i < len(raw):
            c = raw[i]
            n = 2 if 0xC2 <= c <= 0xDF else 3 if 0xE0 <= c <= 0xEF else 4 if 0xF0 <= c <= 0xF4 else 1
            if n > 1:
                try:
                    ch = raw[i:i + n].decode("utf-8")
                except UnicodeDecodeError:
                    ch = None
                if ch and any(i < b < i + n for b in bounds):
                    assert ch in text, (seed, ch, text)
                    split_seen += 1
                    i += n
                    continue
            i += 1
    assert split_seen >= 3, "the random outputs held too few split characters (%d) to test" % split_seen
    # and the same through the OpenAI stream: each event's text is valid UTF-8 on its own
    for seed in range(1, 6):
        events = s.stream("/v1/completions", dict(SAMPLED, temperature=1.5, prompt="日本語 café", max_tokens=80,
                                                  seed=seed))
        for e in events:
            e.decode("utf-8", errors="strict")


def t_bad_input(s):
    P = "/v1/completions"

    def raw(body, path=P, headers=None):
        st, h, data = s.request("POST", path, body, dict({"Content-Type": "application/json"}, **(headers or {})))
        return st, json.loads(data)

    check_error(*raw(b"{not json"), 400)
    check_error(*raw(b"[1,2]"), 400)
    check_error(*raw(b""), 400)
    check_error(*raw(b'{"prompt": "caf\xe9"}'), 400, contains=["UTF-8"])   # Latin-1, not UTF-8
    check_error(*raw(b'{"prompt": "\xff\xfe"}'), 400)
    check_error(*s.post(P, {"prompt": 5}), 400, "prompt")
    check_error(*s.post(P, {"prompt": []}), 400, "prompt")
    check_error(*s.post(P, {"prompt": [1, "a"]}), 400, "prompt")
    check_error(*s.post(P, {"prompt": [1, 99999]}), 400, "prompt")
    check_error(*s.post(P, {}), 400, "prompt")
    check_error(*s.post(P, {"prompt": "x", "temperature": "hot"}), 400, "temperature")
    check_error(*s.post(P, {"prompt": "x", "temperature": -0.5}), 400, "temperature")
    check_error(*s.post(P, {"prompt": "x", "top_p": 0}), 400, "top_p")
    check_error(*s.post(P, {"prompt": "x", "top_p": 1.5}), 400, "top_p")
    check_error(*s.post(P, {"prompt": "x", "top_k": -1}), 400, "top_k")
    check_error(*s.post(P, {"prompt": "x", "min_p": 2}), 400, "min_p")
    check_error(*s.post(P, {"prompt": "x", "frequency_penalty": 3}), 400, "frequency_penalty")
    check_error(*s.post(P, {"prompt": "x", "presence_penalty": -3}), 400, "presence_penalty")
    check_error(*s.post(P, {"prompt": "x", "repetition_penalty": 0}), 400, "repetition_penalty")
    check_error(*s.post(P, {"prompt": "x", "max_tokens": 0}), 400, "max_tokens")
    check_error(*s.post(P, {"prompt": "x", "max_tokens": -3}), 400, "max_tokens")
    check_error(*s.post(P, {"prompt": "x", "max_tokens": N_CTX + 1}), 400, "max_tokens")
    check_error(*s.post(P, {"prompt": "x", "max_tokens": "10"}), 400, "max_tokens")
    check_error(*s.post(P, {"prompt": "x", "max_tokens": 1.5}), 400, "max_tokens")
    check_error(*s.post(P, {"prompt": "x", "stream": "yes"}), 400, "stream")
    check_error(*s.post(P, {"prompt": "x", "stop": 5}), 400, "stop")
    check_error(*s.post(P, {"prompt": "x", "stop": ["a", 1]}), 400, "stop")
    check_error(*s.post(P, {"prompt": "x", "seed": "s"}), 400, "seed")
    check_error(*s.post(P, {"prompt": "x", "logprobs": 99}), 400, "logprobs")
    check_error(*s.post(P, {"prompt": "x", "echo": 1}), 400, "echo")
    check_error(*s.post(P, {"prompt": "x", "n": 0}), 400, "n")
    check_error(*s.post(P, {"prompt": "x", "stream_options": 3}), 400, "stream_options")
    check_error(*s.post(P, {"prompt": "x", "model": 3}), 400, "model")
    # a prompt longer than the context: 400 naming both counts
    long_ids = [5] * (N_CTX + 7)
    check_error(*s.post(P, {"prompt": long_ids}), 400, "prompt", contains=[str(N_CTX), str(N_CTX + 7)])
    check_error(*s.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "ab " * 400}]}), 400,
                "messages", contains=[str(N_CTX)])
    check_error(*s.post("/v1/chat/completions", {"messages": []}), 400, "messages")
    check_error(*s.post("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}), 400, "messages")
    check_error(*s.post("/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}), 400, "messages")
    check_error(*s.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                                                 "top_logprobs": 2}), 400, "top_logprobs")
    check_ollama_error(*s.post("/api/generate", {"prompt": 5}), 400, ["'prompt'"])
    check_ollama_error(*s.post("/api/generate", {"prompt": "x", "options": []}), 400, ["'options'"])
    check_ollama_error(*s.post("/api/generate", {"prompt": "x", "options": {"temperature": -1}}), 400, ["'temperature'"])
    # a body over the limit: 413
    big = b'{"prompt": "' + b"a" * (1 << 20) + b'"}'
    st, h, data = s.request("POST", P, big, {"Content-Type": "application/json"})
    check_error(st, json.loads(data), 413)
    c = s.conn()  # the same without a Content-Length (chunked upload)
    c.request("POST", P, body=iter([big[i:i + 65536] for i in range(0, len(big), 65536)]),
              headers={"Content-Type": "application/json"}, encode_chunked=True)
    r = c.getresponse()
    check_error(r.status, json.loads(r.read()), 413)
    c.close()
    # wrong method: 405 with Allow; unknown path: 404
    st, h, data = s.request("GET", P)
    check_error(st, json.loads(data), 405)
    assert "POST" in h["allow"]
    st, h, data = s.request("DELETE", "/health")
    check_error(st, json.loads(data), 405)
    st, h, data = s.request("POST", "/v1/nothing", {"prompt": "x"})
    check_error(st, json.loads(data), 404)
    st, h, data = s.request("GET", "/v1/nothing")
    check_error(st, json.loads(data), 404)
    # nothing broke: the server still answers
    st, r = s.post(P, {"prompt": "x", "max_tokens": 2})
    assert st == 200


def t_cors(s):
    """CORS for an allowed (loopback) origin, echoed; another origin is 403 (tests/fault/test_guard.py)."""
    st, h, data = s.request("OPTIONS", "/v1/chat/completions", headers={
        "Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert st == 204 and h["access-control-allow-origin"] == "http://localhost:5173", (st, h)
    assert "POST" in h["access-control-allow-methods"] and "authorization" in h["access-control-allow-headers"]
    st, h, data = s.request("GET", "/health", headers={"Origin": "http://localhost:5173"})
    assert h["access-control-allow-origin"] == "http://localhost:5173"
    st, h, data = s.request("GET", "/health", headers={"Origin": "http://example.com"})
    assert st == 403 and "access-control-allow-origin" not in h


def t_metrics(s):
    s.post("/v1/completions", {"prompt": "metrics", "max_tokens": 3, "ignore_eos": True})
    st, h, data = s.request("GET", "/metrics")
    assert st == 200 and h["content-type"].startswith("text/plain")
    text = data.decode()
    for series in ("sasp_requests_total", "sasp_prompt_tokens_total", "sasp_generated_tokens_total",
                   "sasp_slots_active", "sasp_queue_depth", "sasp_requests_cancelled_total",
                   "sasp_time_to_first_token_seconds_bucket", "sasp_time_to_first_token_seconds_sum",
                   "sasp_token_latency_seconds_bucket", "sasp_token_latency_seconds_count"):
        assert re.search(r"^# TYPE %s" % series.replace("_bucket", "").replace("_sum", "").replace("_count", ""),
                         text, re.M), series
        assert re.search(r"^%s[{ ]" % series, text, re.M), series
    m = s.metrics()
    assert m['sasp_requests_total{endpoint="/v1/completions",status="200"}'] >= 1
    assert m['sasp_time_to_first_token_seconds_bucket{le="+Inf"}'] == m["sasp_time_to_first_token_seconds_count"]
    # buckets are cumulative
    b = [v for k, v in m.items() if k.startswith("sasp_token_latency_seconds_bucket")]
    assert b == sorted(b)
    before = m["sasp_generated_tokens_total"]
    s.post("/v1/completions", {"prompt": "metrics", "max_tokens": 7, "ignore_eos": True})
    assert s.metrics()["sasp_generated_tokens_total"] == before + 7
    s.request("GET", "/definitely-missing")
    # counted when the connection completes, just after the answer left: wait for it (slow builds)
    wait_for(lambda: s.metrics().get('sasp_requests_total{endpoint="static",status="404"}', 0) >= 1, "404 counted")


def t_static(s, www):
    st, h, data = s.request("GET", "/")
    assert st == 200 and h["content-type"].startswith("text/html") and b"sasp test page" in data
    for path, ctype in (("/app.js", "text/javascript"), ("/style.css", "text/css"), ("/sub/", "text/html"),
                        ("/data.json", "application/json")):
        st, h, data = s.request("GET", path)
        assert st == 200 and h["content-type"].startswith(ctype), (path, st, h)
    # path traversal: raw "..", percent-encoded, and a symlink out of www are all refused
    for path in ("/../Makefile.am", "/sub/../../Makefile.am", "/%2e%2e/Makefile.am", "/..%2fMakefile.am",
                 "/sub/%2E%2E/%2E%2E/etc/passwd", "/outside-link"):
        c = s.conn()
        c.putrequest("GET", path, skip_host=False, skip_accept_encoding=True)
        c.endheaders()
        r = c.getresponse()
        body = r.read()
        c.close()
        assert r.status == 404 and b"root:" not in body and b"AUTOMAKE" not in body, (path, r.status)
    st, h, data = s.request("GET", "/missing.html")
    assert st == 404


def t_disconnects_free_slots(s):
    """Run on a server with --parallel 1 --step-delay: disconnect during generation, during prefill and
    while waiting for a non-streamed answer; each frees the slot (seen in /metrics) and the next
    request is served."""
    def counters():
        m = s.metrics()
        return m["sasp_requests_cancelled_total"], m["sasp_slots_active"], m["sasp_generated_tokens_total"]

    c0, active, _ = counters()
    assert active == 0
    # 1. during generation: hang up after 3 events
    s.stream("/v1/completions", dict(prompt="x", max_tokens=200, ignore_eos=True), on_event=lambda i, e: i >= 3)
    wait_for(lambda: counters()[0] == c0 + 1 and counters()[1] == 0, "cancel during generation")
    g = counters()[2]
    time.sleep(0.3)
    assert counters()[2] == g, "tokens still generated after the disconnect"
    # 2. during prefill: a long prompt fed 4 tokens per step, hang up before any token
    c = s.conn()
    c.request("POST", "/v1/completions", json.dumps({"prompt": [7] * 200, "max_tokens": 5, "stream": True}),
              {"Content-Type": "application/json"})
    wait_for(lambda: s.get_json("/props")["slots"][0]["state"] == "prefill", "prefill to start")
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    wait_for(lambda: counters()[0] == c0 + 2 and counters()[1] == 0, "cancel during prefill")
    assert s.get_json("/props")["slots"][0]["state"] == "idle"
    # 3. a non-streamed request whose client leaves
    c = s.conn()
    c.request("POST", "/v1/completions", json.dumps({"prompt": "x", "max_tokens": 200, "ignore_eos": True}),
              {"Content-Type": "application/json"})
    wait_for(lambda: s.get_json("/props")["slots"][0]["state"] == "generating", "generation to start")
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    wait_for(lambda: counters()[0] == c0 + 3 and counters()[1] == 0, "cancel of a non-streamed request")
    # the slot serves the next request
    st, r = s.post("/v1/completions", {"prompt": "x", "max_tokens": 2, "ignore_eos": True})
    assert st == 200 and r["usage"]["completion_tokens"] == 2


def t_queue_full_429(s):
    """--parallel 1 --max-queue 1 --step-delay: one running, one queued, the third gets 429."""
    holders = []
    for i in range(2):
        c = s.conn()
        c.request("POST", "/v1/completions", json.dumps({"prompt": "x", "max_tokens": 200, "ignore_eos": True,
                                                         "stream": True}), {"Content-Type": "application/json"})
        holders.append(c)
        if i == 0:  # the first must have left the queue for the slot before the second comes (slow builds)
            wait_for(lambda: s.metrics()["sasp_slots_active"] == 1, "the first request to take the slot")
    wait_for(lambda: s.metrics()["sasp_queue_depth"] == 1 and s.metrics()["sasp_slots_active"] == 1,
             "one request to run and one to wait in the queue")
    st, h, data = s.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 2})
    check_error(st, json.loads(data), 429)
    assert int(h["retry-after"]) >= 1
    for c in holders:
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
    wait_for(lambda: s.metrics()["sasp_slots_active"] == 0 and s.metrics()["sasp_queue_depth"] == 0, "slots freed")
    st, r = s.post("/v1/completions", {"prompt": "x", "max_tokens": 2})
    assert st == 200
    # more sequences than slots and queue together can never be served: 400, not 429
    check_error(*s.post("/v1/completions", {"prompt": "x", "max_tokens": 2, "n": 3}), 400, "n")


def t_api_key(s):
    """A server with --api-key."""
    st, r = s.post("/v1/completions", {"prompt": "x", "max_tokens": 2})
    check_error(st, r, 401)
    st, r = s.post("/v1/completions", {"prompt": "x", "max_tokens": 2}, {"Authorization": "Bearer wrong"})
    check_error(st, r, 401)
    st, h, data = s.request("POST", "/v1/completions", {"prompt": "x"})
    assert h["www-authenticate"].startswith("Bearer"), h
    st, h, data = s.request("POST", "/api/chat", {"messages": []})
    check_ollama_error(st, json.loads(data), 401)
    for path in ("/api/version", "/api/tags", "/v1/models", "/v1/models/tiny-model", "/props", "/slots"):
        assert s.request("GET", path)[0] == 401, path  # every endpoint but /health needs the key
    st, r = s.post("/v1/completions", {"prompt": "x", "max_tokens": 2}, {"Authorization": "Bearer sekrit-1"})
    assert st == 200, r
    st, h, data = s.request("GET", "/metrics")
    assert st == 401
    assert s.get_json("/health") == {"status": "ok"}
    st, h, data = s.request("GET", "/v1/models", None, {"Authorization": "Bearer sekrit-1"})
    assert st == 200 and json.loads(data)["data"][0]["id"] == "tiny-model"
    assert s.request("GET", "/")[0] != 401  # the demo page is served without the key; it asks for it


def t_sigterm_ends_streams(s):
    """SIGTERM while a stream is open: the stream ends with [DONE] and the server exits 0."""
    got = {}

    def reader():
        got["events"] = s.stream("/v1/completions", dict(prompt="x", max_tokens=200, ignore_eos=True))

    th = threading.Thread(target=reader)
    th.start()
    wait_for(lambda: s.metrics()["sasp_slots_active"] == 1, "the stream to start")
    time.sleep(0.1)
    rc = s.stop(signal.SIGTERM)
    th.join(30)
    assert rc == 0, rc
    objs, done = parse_sse(got["events"])
    assert done and sse_text(objs)[1] == "stop", got["events"][-3:]


def t_curl(s):
    if not shutil.which("curl"):
        print("  (curl not installed: skipped)")
        return
    out = subprocess.run(["curl", "-sN", "http://127.0.0.1:%d/v1/completions" % s.port, "-H",
                          "Content-Type: application/json", "-d",
                          json.dumps({"prompt": "curl", "max_tokens": 5, "stream": True, "temperature": 0,
                                      "ignore_eos": True})], capture_output=True, timeout=60)
    lines = [l for l in out.stdout.split(b"\n") if l.startswith(b"data: ")]
    assert lines[-1] == b"data: [DONE]" and len(lines) >= 3, out.stdout
    out = subprocess.run(["curl", "-s", "http://127.0.0.1:%d/api/generate" % s.port, "-d",
                          json.dumps({"prompt": "curl", "stream": False, "options": {"num_predict": 3}})],
                         capture_output=True, timeout=60)
    assert json.loads(out.stdout)["done"] is True


def t_command_line():
    """--help documents every option; bad options and a missing model fail with a message."""
    out = subprocess.run([SERVER, "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out
    for o in ("--model", "--host", "--port", "--threads", "--parallel", "--ctx", "--api-key", "--www",
              "--max-queue", "--chunk", "--max-body", "--step-delay", "--help", "--version"):
        assert o in out.stdout, o
    assert "models/sasp-small" in out.stdout and "127.0.0.1" in out.stdout and "8080" in out.stdout
    out = subprocess.run([SERVER, "--bogus"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "Usage" in out.stderr, out
    out = subprocess.run([SERVER, "--port", "99999"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "--port" in out.stderr, out
    out = subprocess.run([SERVER, "--weights", "q4"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "--weights takes f32, bf16, q8_0, auto or stored, not 'q4'" in out.stderr, out
    out = subprocess.run([SERVER, "-m", "/nonexistent/model", "--port", "0"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 1 and "/nonexistent/model" in out.stderr, out



def t_ollama_api(s):
    """Ollama's model endpoints, chat, errors in its shape, management refused, options reported."""
    assert s.get_json("/api/version")["version"].count(".") == 2
    tags = s.get_json("/api/tags")["models"]
    t = tags[0]
    for k in ("name", "model", "modified_at", "size", "digest", "details"):
        assert k in t, k
    assert re.fullmatch(r"[0-9a-f]{64}", t["digest"]) and t["size"] > 0
    for k in ("parent_model", "format", "family", "families", "parameter_size", "quantization_level"):
        assert k in t["details"], k
    ps = s.get_json("/api/ps")["models"]
    assert ps[0]["name"] == "tiny-model:latest" and "expires_at" in ps[0] and ps[0]["size_vram"] == 0
    for name in ("tiny-model", "tiny-model:latest"):
        st, show = s.post("/api/show", {"model": name})
        assert st == 200, show
        assert show["details"]["quantization_level"] == t["details"]["quantization_level"], show
        assert show["model_info"]["general.architecture"] == "sasp"
        assert show["model_info"]["sasp.context_length"] == N_CTX
        assert "Assistant:" in show["template"] and "temperature" in show["parameters"]
        assert show["details"]["family"] == "sasp" and "completion" in show["capabilities"]
    check_ollama_error(*s.post("/api/show", {"name": "nope"}), 404, ['model "nope" not found'])
    check_ollama_error(*s.post("/api/show", {}), 400)
    # chat, streamed and not
    req = {"model": "tiny-model", "messages": [{"role": "user", "content": "hi"}], "keep_alive": "5m",
           "options": dict(SAMPLED, num_predict=10, seed=3)}
    lines = [json.loads(l) for l in s.stream("/api/chat", req)]
    assert all(o["message"]["role"] == "assistant" and o["model"] == "tiny-model" for o in lines)
    assert lines[-1]["done"] and lines[-1]["eval_count"] == 10 and "context" not in lines[-1]
    st, whole = s.post("/api/chat", dict(req, stream=False))
    assert st == 200 and whole["message"]["content"] == "".join(o["message"]["content"] for o in lines), whole
    st, r = s.post("/api/chat", {"model": "tiny-model", "messages": []})
    assert st == 200 and r["done"] and r["done_reason"] == "load", r
    st, r = s.post("/api/generate", {"model": "tiny-model", "keep_alive": 0})
    assert st == 200 and r["done_reason"] == "unload", r
    # every error under /api/ has Ollama's shape, 404s for unknown models and paths included
    check_ollama_error(*s.post("/api/chat", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}), 404,
                       ['model "nope" not found'])
    check_ollama_error(*s.post("/api/generate", {"model": "nope:latest", "prompt": "x"}), 404)
    check_ollama_error(*s.post("/api/embed", {"model": "nope", "input": "x"}), 404)
    st, h, data = s.request("POST", "/api/nothing", {})
    check_ollama_error(st, json.loads(data), 404)
    st, h, data = s.request("GET", "/api/chat")
    check_ollama_error(st, json.loads(data), 405)
    for path in ("/api/pull", "/api/push", "/api/create", "/api/copy", "/api/blobs/sha256:00"):
        check_ollama_error(*s.post(path, {"model": "x"}), 403, ["serves the models it was started with"])
    st, h, data = s.request("DELETE", "/api/delete", {"model": "x"})
    check_ollama_error(st, json.loads(data), 403)
    # options: honoured, placement ones listed, the rest refused by name
    st, h, data = s.request("POST", "/api/generate", {"prompt": "x", "stream": False,
                                                      "options": {"num_predict": 2, "num_thread": 8, "num_gpu": 0}})
    assert st == 200 and h["x-sasp-ignored-options"] == "num_thread, num_gpu", h
    check_ollama_error(*s.post("/api/generate", {"prompt": "x", "options": {"mirostat": 1}}), 400, ["mirostat"])
    check_ollama_error(*s.post("/api/generate", {"prompt": "x", "options": {"nonsense": 1}}), 400, ["nonsense"])
    check_ollama_error(*s.post("/api/generate", {"prompt": "x", "options": {"num_ctx": N_CTX + 1}}), 400, ["num_ctx"])
    st, r = s.post("/api/generate", {"prompt": "x", "stream": False, "options": {"num_ctx": 20}, "ignore_eos": True})
    assert st == 200 and r["prompt_eval_count"] + r["eval_count"] == 21, r  # the context ends at num_ctx
    for body, field in (({"messages": [{"role": "user", "content": "x", "images": ["AA=="]}]}, "images"),
                        ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}, "tools"),
                        ({"messages": [{"role": "user", "content": "x"}], "think": True}, "think")):
        check_ollama_error(*s.post("/api/chat", body), 400, [field])
    check_ollama_error(*s.post("/api/generate", {"prompt": "x", "suffix": "y"}), 400, ["suffix"])


def t_openai_extras(s):
    """models.retrieve, headers on every answer, refusals by name, logit_bias, scoring only."""
    st, h, data = s.request("GET", "/v1/models/tiny-model")
    assert st == 200 and json.loads(data)["id"] == "tiny-model"
    st, h, data = s.request("GET", "/v1/models/gpt-4o")
    check_error(st, json.loads(data), 404, "model")
    assert json.loads(data)["error"]["code"] == "model_not_found"
    # x-request-id (the client's is echoed), and what a page may read
    st, h, data = s.request("GET", "/health", headers={"X-Request-Id": "abc-123"})
    assert h["x-request-id"] == "abc-123"
    st, h, data = s.request("GET", "/health")
    assert h["x-request-id"].startswith("req-") and "Retry-After" in h["access-control-expose-headers"]
    chat = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 4}
    for extra, field in (({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
                         ({"functions": [{"name": "f"}]}, "functions"),
                         ({"tool_choice": "required"}, "tool_choice"),
                         ({"response_format": {"type": "xml"}}, "response_format"),
                         ({"response_format": {"type": "json_object"}, "max_tokens": 1}, "max_tokens"),
                         ({"response_format": {"type": "json_object"}, "stop": ["}"]}, "stop"),
                         ({"logit_bias": {"99999": 1}}, "logit_bias")):
        check_error(*s.post("/v1/chat/completions", dict(chat, **extra)), 400, field)
    check_error(*s.post("/v1/completions", {"prompt": "x", "suffix": "y"}), 400, "suffix")
    st, r = s.post("/v1/chat/completions", dict(chat, tools=[], tool_choice="none"))
    assert st == 200, r
    # logit_bias is applied: +100 on one token makes greedy choose it
    st, r = s.post("/v1/completions", {"prompt": [5, 6], "max_tokens": 4, "temperature": 0, "logit_bias": {"77": 100},
                                       "logprobs": 0, "ignore_eos": True})
    toks = s.post("/tokenize", {"content": r["choices"][0]["text"]})[1]["tokens"]
    assert st == 200 and set(toks) == {77}, (r, toks)
    # max_tokens 0 with echo and logprobs scores the prompt, as lm-evaluation-harness sends it
    st, r = s.post("/v1/completions", {"prompt": ["The cat", "sat down"], "max_tokens": 0, "echo": True, "logprobs": 1,
                                       "temperature": 0})
    assert st == 200, r
    for c, p in zip(r["choices"], ["The cat", "sat down"]):
        assert c["text"] == p and c["logprobs"]["token_logprobs"][0] is None and c["finish_reason"] == "length"
        assert all(x <= 0 for x in c["logprobs"]["token_logprobs"][1:])
    assert r["usage"]["completion_tokens"] == 0
    check_error(*s.post("/v1/completions", {"prompt": "x", "max_tokens": 0, "echo": True}), 400, "max_tokens")


def validate(v, schema):
    """The subset of JSON Schema the server enforces (enough for the schemas below)."""
    t = schema.get("type")
    if "enum" in schema:
        return v in schema["enum"]
    if t == "object":
        return isinstance(v, dict) and all(k in v for k in schema.get("required", [])) and all(
            validate(v[k], sub) for k, sub in schema.get("properties", {}).items() if k in v)
    if t == "array":
        return isinstance(v, list) and all(validate(x, schema["items"]) for x in v) and len(v) <= schema.get(
            "maxItems", 1 << 30)
    if t == "string":
        return isinstance(v, str) and len(v) <= schema.get("maxLength", 1 << 30)
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool) and v >= schema.get("minimum", -(1 << 62))
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t == "boolean":
        return isinstance(v, bool)
    return v is None if t == "null" else True


def t_json_output(s):
    """response_format and format: whatever the random model prefers, the output parses and validates,
    and the answer ends ("stop") as the document closes."""
    schema = {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 10}, "age": {"type": "integer", "minimum": 0},
        "kind": {"type": "string", "enum": ["a", "b"]}, "tags": {"type": "array", "items": {"type": "boolean"},
                                                                 "maxItems": 3},
        "nested": {"type": "object", "properties": {"x": {"type": "number"}, "n": {"type": "null"}}, "required": ["x"]}},
        "required": ["name", "age", "kind", "tags", "nested"]}
    msgs = [{"role": "user", "content": "JSON please"}]
    for seed in range(6):
        st, r = s.post("/v1/chat/completions", dict(SAMPLED, messages=msgs, max_tokens=120, seed=seed,
                                                    response_format={"type": "json_object"}))
        assert st == 200 and isinstance(json.loads(r["choices"][0]["message"]["content"]), dict), r
        st, r = s.post("/v1/chat/completions", dict(SAMPLED, messages=msgs, max_tokens=150, seed=seed, response_format={
            "type": "json_schema", "json_schema": {"name": "p", "strict": True, "schema": schema}}))
        doc = json.loads(r["choices"][0]["message"]["content"])
        assert validate(doc, schema) and r["choices"][0]["finish_reason"] == "stop", r
        st, r = s.post("/api/generate", {"prompt": "x", "format": schema, "stream": False,
                                         "options": dict(SAMPLED, seed=seed, num_predict=150)})
        assert validate(json.loads(r["response"]), schema) and r["done_reason"] == "stop", r
        st, r = s.post("/api/chat", {"messages": msgs, "format": "json", "stream": False,
                                     "options": dict(SAMPLED, seed=seed, num_predict=100)})
        assert isinstance(json.loads(r["message"]["content"]), dict), r
    # the shortest document must fit
    check_error(*s.post("/v1/completions", {"prompt": "x", "max_tokens": 20, "response_format": {
        "type": "json_schema", "json_schema": {"schema": schema}}}), 400, "max_tokens")


def t_token_healing(s):
    """Text prompts are healed by default: the response starts where the prompt ended (its last
    token's bytes are not repeated), /api/generate's context decodes to prompt + response, the usage
    counts the tokens read; token_healing: false turns it off."""
    for prompt in ("def add(a, b):\n", "for i in ran", "import o", "x = [1, 2,"):
        n = len(s.post("/tokenize", {"content": prompt})[1]["tokens"])
        st, r = s.post("/api/generate", {"prompt": prompt, "stream": False, "raw": True,
                                         "options": {"temperature": 0, "num_predict": 6}})
        assert st == 200 and r["prompt_eval_count"] == n - 1, (r, n)
        ctx = [t for t in r["context"] if t != 0]
        full = s.post("/detokenize", {"tokens": ctx})[1]["content"]
        assert full == prompt + r["response"], (prompt, full, r["response"])
        st, off = s.post("/api/generate", {"prompt": prompt, "stream": False, "token_healing": False,
                                           "options": {"temperature": 0, "num_predict": 6}})
        assert off["prompt_eval_count"] == n
        st, c = s.post("/v1/completions", {"prompt": prompt, "max_tokens": 6, "temperature": 0})
        assert c["usage"]["prompt_tokens"] == n - 1 and c["choices"][0]["text"] == r["response"], (c, r)
        # with logprobs too (the demo page asks for them): the same text, and the tokens' strings and
        # text_offset without the bytes the prompt holds, so that they join into the text
        for stream in (False, True):
            body = {"prompt": prompt, "max_tokens": 6, "temperature": 0, "logprobs": 2}
            if stream:
                objs, done = parse_sse(s.stream("/v1/completions", body))
                text = "".join(o["choices"][0]["text"] for o in objs if o.get("choices"))
                toks = [t for o in objs if o.get("choices") and o["choices"][0]["logprobs"]
                        for t in o["choices"][0]["logprobs"]["tokens"]]
            else:
                ch = s.post("/v1/completions", body)[1]["choices"][0]
                text, toks = ch["text"], ch["logprobs"]["tokens"]
                offs = ch["logprobs"]["text_offset"]
                assert offs == [sum(len(t.encode()) for t in toks[:i]) for i in range(len(toks))], (toks, offs)
            assert text == r["response"] and "".join(toks) == text, (prompt, stream, text, toks)
        st, lc = s.post("/completion", {"prompt": prompt, "n_predict": 6, "temperature": 0, "n_probs": 2})
        assert lc["content"] == r["response"], (lc, r)
        assert "".join(p["token"] for p in lc["completion_probabilities"]) == lc["content"], lc


def t_embeddings(s):
    """Embeddings: unit vectors, the same for one input whichever endpoint, batch or position in the
    batch; different inputs give different vectors; last-token pooling differs from the mean."""
    st, show = s.post("/api/show", {"model": "tiny-model"})
    assert "embedding" in show["capabilities"], show["capabilities"]
    st, r = s.post("/v1/embeddings", {"input": ["a", "def f(x):", "b"], "model": "tiny-model"})
    assert st == 200 and len(r["data"]) == 3, (st, r)
    vec = [d["embedding"] for d in r["data"]]
    assert all(abs(sum(x * x for x in v) - 1) < 1e-3 for v in vec)
    assert max(abs(x - y) for x, y in zip(vec[0], vec[2])) > 1e-3, "a and b gave the same vector"
    st, e = s.post("/api/embed", {"model": "tiny-model", "input": ["def f(x):"]})
    assert st == 200 and len(e["embeddings"]) == 1
    assert max(abs(x - y) for x, y in zip(e["embeddings"][0], vec[1])) < 1e-5
    st, e = s.post("/api/embeddings", {"model": "tiny-model", "prompt": "def f(x):"})
    assert st == 200 and len(e["embedding"]) == 64
    assert max(abs(x - y) for x, y in zip(e["embedding"], vec[1])) < 1e-5
    st, last = s.post("/v1/embeddings", {"input": "def f(x):", "model": "tiny-model", "pooling": "last"})
    assert st == 200 and max(abs(x - y) for x, y in zip(last["data"][0]["embedding"], vec[1])) > 1e-3
    # more requests at once than HTTP threads, each of more inputs than slots (several batches, the
    # connection suspended between them): all answered, each input's vector the one it has alone
    inputs = ["a", "def f(x):", "b", "import os", "c", "x = 1", "d", "def f(x):", "e"]
    got = [None] * 6

    def one(i):
        got[i] = s.post("/v1/embeddings", {"input": inputs, "model": "tiny-model"})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for st, r in got:
        assert st == 200 and [d["index"] for d in r["data"]] == list(range(len(inputs))), (st, r)
        for k in (1, 7):
            assert max(abs(x - y) for x, y in zip(r["data"][k]["embedding"], vec[1])) < 1e-5


def t_two_models(s):
    """A server of a directory of two model directories (-m DIR): both listed, in name order; the
    request's model picks one; Ollama's unknown names are 404, OpenAI's go to the first model."""
    ids = [m["id"] for m in s.get_json("/v1/models")["data"]]
    assert ids == ["tiny-copy", "tiny-model"], ids
    assert [m["name"] for m in s.get_json("/api/tags")["models"]] == ["tiny-copy:latest", "tiny-model:latest"]
    st, r = s.post("/v1/completions", {"model": "tiny-model", "prompt": "x", "max_tokens": 2})
    assert st == 200 and r["model"] == "tiny-model"
    st, r = s.post("/v1/completions", {"model": "gpt-3.5-turbo", "prompt": "x", "max_tokens": 2})
    assert st == 200 and r["model"] == "tiny-copy"
    st, r = s.post("/api/generate", {"model": "tiny-copy:latest", "prompt": "x", "stream": False,
                                     "options": {"num_predict": 2}})
    assert st == 200 and r["model"] == "tiny-copy:latest"
    check_ollama_error(*s.post("/api/generate", {"model": "gpt-3.5-turbo", "prompt": "x"}), 404)
    # both serve at once, on one engine thread (same text as each alone)
    req = dict(SAMPLED, prompt="x", max_tokens=20, seed=2, ignore_eos=True, cache_prompt=False)
    alone = [s.post("/v1/completions", dict(req, model=m))[1]["choices"][0]["text"] for m in ids]
    out = {}
    th = [threading.Thread(target=lambda m=m: out.__setitem__(m, s.post("/v1/completions", dict(req, model=m))[1]))
          for m in ids]
    for t in th:
        t.start()
    for t in th:
        t.join()
    assert [out[m]["choices"][0]["text"] for m in ids] == alone

def check_name(check):
    name = getattr(check, "__name__", "?")
    return "t_static" if name == "<lambda>" else name


def run_plan(plan, only, prefix="", may_exit=()):
    """Each (args, name, checks) of plan against a server of its own started with args (None: no server),
    the checks whose names contain one of only (all when only is empty): PASS or FAIL with the trace per
    check, and the tail of the server's log after a failure. A server that exits during a check, or
    not cleanly on SIGTERM, is a failure too, unless its plan name is in may_exit. Returns the failures."""
    failures = 0
    for args, name, checks in plan:
        checks = [c for c in checks if not only or any(o in check_name(c) for o in only)]
        if not checks:
            continue
        s = Server(*args, name=prefix + name) if args is not None else None
        try:
            for check in checks:
                label, t0 = check_name(check), time.time()
                try:
                    check(s)
                    print("PASS %s (%.1fs)" % (label, time.time() - t0))
                except Exception:
                    failures += 1
                    print("FAIL %s" % label)
                    traceback.print_exc(file=sys.stdout)
                if s and s.proc.poll() is not None and name not in may_exit:
                    failures += 1
                    print("FAIL: the server exited (status %s) during %s" % (s.proc.returncode, label))
                    break
        finally:
            if s:
                rc = s.stop()
                if rc not in (0, None) and name not in may_exit:
                    failures += 1
                    print("FAIL: server '%s' exited with %s on SIGTERM" % (name, rc))
                if failures:
                    print("---- server log (%s) ----" % name)
                    sys.stdout.write(open(s.log_path, errors="replace").read()[-4000:])
    return failures


def report(failures):
    """The last line of a test file's run, and its exit status; the logs go when all passed."""
    print("%s: %d failure(s)" % ("FAIL" if failures else "PASS", failures))
    if not failures:
        shutil.rmtree(LOG_DIR, ignore_errors=True)
    return 1 if failures else 0


def main():
    only = sys.argv[1:]
    if not os.path.exists(SERVER):
        print("test_server.py: %s not built" % SERVER)
        return 1
    www = tempfile.mkdtemp(prefix="sasp-www-")
    with open(os.path.join(www, "index.html"), "w") as f:
        f.write("<!doctype html><title>sasp test page</title>")
    for name, body in (("app.js", "1;"), ("style.css", "p{}"), ("data.json", "{}")):
        with open(os.path.join(www, name), "w") as f:
            f.write(body)
    os.mkdir(os.path.join(www, "sub"))
    with open(os.path.join(www, "sub", "index.html"), "w") as f:
        f.write("<p>sub")
    os.symlink(os.path.join(SRC, "Makefile.am"), os.path.join(www, "outside-link"))

    models = tempfile.mkdtemp(prefix="sasp-models-")
    for name in ("tiny-model", "tiny-copy"):
        shutil.copytree(MODEL, os.path.join(models, name))
    plan = [
        (("--parallel", "8", "--www", www), "main", [
            t_health_models_props, t_tokenize_roundtrip, t_completion_shape_and_usage, t_stream_equals_nonstream,
            t_tokens_leave_one_by_one, t_chat, t_generate, t_prompt_forms, t_echo_logprobs, t_stop_strings, t_multibyte_across_tokens, t_bad_input, t_cors, t_metrics,
            lambda s: t_static(s, www), t_curl, t_ollama_api, t_openai_extras, t_json_output, t_token_healing,
            t_embeddings]),
        (("-m", models, "--parallel", "2"), "two-models", [t_two_models]),
        (("--parallel", "8", "--step-delay", "5"), "batch", [t_batching_does_not_change_results]),
        *[(("--parallel", "8", "--step-delay", "2", "--chunk", "48", "--weights", wt), "load-" + wt,
           [t_same_answer_whatever_the_load]) for wt in ("f32", "bf16", "q8_0")],
        (("--parallel", "1", "--max-queue", "1", "--step-delay", "20", "--chunk", "4"), "slow",
         [t_disconnects_free_slots, t_queue_full_429, t_echo_logprobs]),
        (("--api-key", "sekrit-1"), "key", [t_api_key]),
        (("--parallel", "2", "--step-delay", "10"), "sigterm", [t_sigterm_ends_streams]),
    ]
    failures = 0
    if not only or any(o in "t_command_line" for o in only):
        try:
            t_command_line()
            print("PASS t_command_line")
        except Exception:
            failures += 1
            print("FAIL t_command_line")
            traceback.print_exc(file=sys.stdout)
    failures += run_plan(plan, only, may_exit=("sigterm",))
    shutil.rmtree(www, ignore_errors=True)
    shutil.rmtree(models, ignore_errors=True)
    return report(failures)


if __name__ == "__main__":
    sys.exit(main())
