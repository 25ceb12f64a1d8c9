#!/usr/bin/env python3
"""test_models.py: models loaded and unloaded while sasp-server runs, over HTTP, as llama.cpp's router
and Ollama's clients drive it (Python standard library only): --models-dir (a model loads on the first
request that names it; requests that come while it loads wait for it), --models-max (the least recently
used model unloaded beyond it, never one with a request in flight), GET /models with each model's
status, POST /models/load and /models/unload and their errors, Ollama's keep_alive (0, a duration, -1)
on /api/generate, /api/chat and /api/embed, /api/ps's expires_at, and the "name:latest" forms.

A temporary models directory holds copies of the committed fixtures tests/fixtures/tiny-model (as "a"
and "b") and tests/fixtures/tiny-fim (as "fim"), and "broken", a model whose weights file is cut short.
Uses the Server class and helpers of test_server.py. Run by tests/server/run.sh under `make check`; by
hand: SASP_BUILDDIR=. SASP_SRCDIR=. python3 tests/server/test_models.py [name-substring ...]
"""
import calendar
import json
import os
import shutil
import sys
import tempfile
import threading
import time

import test_server as ts
from test_server import check_error, check_ollama_error, wait_for

FIM = os.path.join(ts.SRC, "tests", "fixtures", "tiny-fim")
GREEDY = {"temperature": 0, "ignore_eos": True}


def make_models_dir():
    d = tempfile.mkdtemp(prefix="sasp-models-dir-")
    for name, src in (("a", ts.MODEL), ("b", ts.MODEL), ("fim", FIM), ("broken", ts.MODEL)):
        shutil.copytree(src, os.path.join(d, name))
    with open(os.path.join(d, "broken", "model.safetensors"), "r+b") as f:
        f.truncate(1000)
    os.mkdir(os.path.join(d, "not-a-model"))  # no config.json: not listed
    return d


def states(s):
    """{id: status value} of GET /models, checking its shape (llama.cpp's router's)."""
    j = s.get_json("/models")
    assert j["object"] == "list", j
    out = {}
    for m in j["data"]:
        assert m["object"] == "model" and m["path"].endswith("/" + m["id"]), m
        assert m["status"]["value"] in ("loaded", "loading", "unloaded"), m
        out[m["id"]] = m["status"]["value"]
    return out


def loaded(s):
    return sorted(k for k, v in states(s).items() if v == "loaded")


def ps(s):
    """{name: expires_at as unix seconds} of /api/ps."""
    out = {}
    for m in s.get_json("/api/ps")["models"]:
        t = m["expires_at"]
        out[m["name"]] = calendar.timegm(time.strptime(t, "%Y-%m-%dT%H:%M:%SZ"))
        assert m["size_vram"] == 0 and m["context_length"] > 0, m
    return out


def levels(s):
    """{name: details.quantization_level} of /api/tags."""
    return {m["name"]: m["details"]["quantization_level"] for m in s.get_json("/api/tags")["models"]}


def t_levels_named(s):
    """--weights bf16: every model that loads is listed as BF16 before and after it loads; the one whose
    file is cut short cannot say."""
    assert levels(s) == {"a:latest": "BF16", "b:latest": "BF16", "fim:latest": "BF16", "broken:latest": "unknown"}
    complete(s, "b")
    assert levels(s)["b:latest"] == "BF16" and s.get_json("/props?model=b")["weights"] == "bf16"


def complete(s, model, n=4, **kw):
    st, r = s.post("/v1/completions", dict({"model": model, "prompt": "hi", "max_tokens": n}, **GREEDY, **kw))
    assert st == 200, (model, st, r)
    assert r["usage"]["completion_tokens"] == n, r
    return r


def long_stream(s, model, n, out, key):
    """A streamed completion of n tokens (slow: --step-delay), its tokens counted into out[key]."""
    body = {"model": model, "prompt": "hi", "max_tokens": n, **GREEDY}
    events = s.stream("/v1/completions", body)
    chunks = [json.loads(e) for e in events if e != b"[DONE]"]
    out[key] = (chunks[-1]["choices"][0]["finish_reason"], sum(1 for c in chunks if c["choices"][0]["text"]))


def start(target, *args):
    t = threading.Thread(target=target, args=args)
    t.start()
    return t


# --- --models-dir, --models-max 1 ---

def t_load_on_first_use(s):
    assert states(s) == {"a": "unloaded", "b": "unloaded", "broken": "unloaded", "fim": "unloaded"}, states(s)
    assert ps(s) == {}
    st, h, data = s.request("GET", "/metrics")  # no model loaded: still every series
    assert st == 200 and b'sasp_time_to_first_token_seconds_bucket{le="0.005"} 0' in data, data[:3000]
    v1 = s.get_json("/v1/models")  # OpenAI's shape unchanged: every model, loaded or not
    assert sorted(m["id"] for m in v1["data"]) == ["a", "b", "broken", "fim"], v1
    assert all(set(m) == {"id", "object", "created", "owned_by", "meta"} for m in v1["data"]), v1
    before = levels(s)
    complete(s, "a")
    assert states(s)["a"] == "loaded" and ps(s).keys() == {"a:latest"}
    # the weight type a listing gives a model before it loads (from its file's header) is the one it
    # is served in once loaded
    assert levels(s) == before and before["a:latest"] == s.get_json("/props?model=a")["weights"].upper(), before
    # requests that come together for a model that is not loaded wait for one load
    out = {}
    th = [start(lambda i=i: out.__setitem__(i, s.post("/v1/completions", {"model": "b", "prompt": "x",
                                                                          "max_tokens": 2})[0])) for i in range(6)]
    for t in th:
        t.join()
    assert list(out.values()) == [200] * 6, out
    log = open(s.log_path).read()
    assert log.count("loaded b in") == 1 and "unloaded a" in log, log[-2000:]
    assert loaded(s) == ["b"]


def t_lru_max1_never_evicts_in_flight(s):
    complete(s, "a")  # b goes (at once, or when its last answered request's connection is freed)
    wait_for(lambda: loaded(s) == ["a"], "b unloaded")
    out = {}
    t = start(long_stream, s, "a", 40, out, "a")  # about 40 steps of 20 ms
    wait_for(lambda: s.get_json("/slots?model=a")[0]["state"] != "idle", "a's stream to run")
    complete(s, "b")  # a runs: b loads beside it, beyond --models-max for now (then, idle, b may go first)
    assert "a" in loaded(s) and "loaded b in" in open(s.log_path).read(), states(s)
    t.join()
    assert out["a"] == ("length", 40), out
    # once a's request has ended, b is the least recently used of the two
    wait_for(lambda: loaded(s) == ["a"], "b, the least recently used, unloaded once a is idle")
    complete(s, "b")
    wait_for(lambda: loaded(s) == ["b"], "a unloaded")


def t_unload_endpoint(s):
    complete(s, "a")
    st, r = s.post("/models/unload", {"model": "a"})
    # the answer of the request before may still hold a until its connection is freed: then deferred
    assert st == 200 and r["success"] is True and r["deferred"] in (False, True), r
    wait_for(lambda: states(s)["a"] == "unloaded", "a unloaded")
    assert ps(s) == {}
    check_error(*s.post("/models/unload", {"model": "a"}), 400, "model", ['"a" is not loaded'])
    check_error(*s.post("/models/unload", {"model": "nope"}), 404, "model", ['model "nope" not found'])
    check_error(*s.post("/models/load", {"model": "nope:latest"}), 404, "model")
    for bad in ([1], {}, {"model": 3}, {"model": ""}, "not json"):
        check_error(*s.post("/models/unload", bad), 400, "model")
        check_error(*s.post("/models/load", bad), 400, "model")
    st, r = s.post("/models/load", {"model": "b:latest"})
    assert st == 200 and r == {"success": True}, r
    assert loaded(s) == ["b"]
    st, r = s.post("/models/load", {"model": "b"})  # loaded already
    assert st == 200 and r == {"success": True}, r
    # in flight: deferred until the request ends, which ends whole
    out = {}
    t = start(long_stream, s, "b", 30, out, "b")
    wait_for(lambda: s.get_json("/slots?model=b")[0]["state"] != "idle", "b's stream to run")
    st, r = s.post("/models/unload", {"model": "b"})
    assert st == 200 and r == {"success": True, "deferred": True}, r
    assert states(s)["b"] == "loaded"
    t.join()
    assert out["b"] == ("length", 30), out
    wait_for(lambda: states(s)["b"] == "unloaded", "b unloaded after its request")


def t_load_fails(s):
    st, r = s.post("/models/load", {"model": "broken"})
    check_error(st, r, 500, "model", ["cannot load the model broken"])
    m = [m for m in s.get_json("/models")["data"] if m["id"] == "broken"][0]
    assert m["status"]["value"] == "unloaded" and m["status"]["failed"] is True and m["status"]["error"], m
    check_error(*s.post("/v1/completions", {"model": "broken", "prompt": "x"}), 500, None, ["broken"])
    check_ollama_error(*s.post("/api/generate", {"model": "broken", "prompt": "x"}), 500, ["broken"])
    complete(s, "a")  # the others still load


def t_unload_races_engine(s):
    """Unloads asked for while streams run on the model, again and again: every stream ends whole (the
    model is freed only once no request holds it; run under ASan, scripts/check-sanitizers.sh)."""
    for round in range(6):
        out = {}
        th = [start(long_stream, s, "a", 12, out, i) for i in range(2)]
        for _ in range(5):
            st, r = s.post("/models/unload", {"model": "a"})
            assert st in (200, 400), (st, r)
            time.sleep(0.02)
        for t in th:
            t.join()
        assert list(out.values()) == [("length", 12)] * 2, (round, out)
    wait_for(lambda: states(s)["a"] == "unloaded", "a unloaded after its last stream")


# --- --models-max 2, Ollama's keep_alive ---

def t_lru_max2(s):
    for m in ("a", "b"):
        complete(s, m)
    assert loaded(s) == ["a", "b"]
    # the least recently used goes, at once or, while the connection of its last (answered) request is
    # not yet freed, right after: the client can read the answer before the server frees it
    complete(s, "fim")
    wait_for(lambda: loaded(s) == ["b", "fim"], "a, the least recently used, unloaded", 5)
    complete(s, "b")
    complete(s, "a")
    wait_for(lambda: loaded(s) == ["a", "b"], "fim, the least recently used, unloaded", 5)
    for m in ("a", "b"):
        s.post("/models/unload", {"model": m})
    # a request holds its model until its answer is sent, which the client can see first: an unload
    # that comes meanwhile takes effect when the request ends (docs/api.md)
    wait_for(lambda: loaded(s) == [], "a and b unloaded", 10)


def t_keep_alive(s):
    # 0 with nothing to generate: unloads, and does not load a model that is not loaded
    st, r = s.post("/api/generate", {"model": "a", "keep_alive": 0})
    assert st == 200 and r["done"] and r["done_reason"] == "unload" and r["response"] == "", r
    assert states(s)["a"] == "unloaded"
    st, r = s.post("/api/chat", {"model": "b:latest", "messages": [], "keep_alive": "5m"})
    assert st == 200 and r["done_reason"] == "load", r
    now = time.time()
    assert abs(ps(s)["b:latest"] - (now + 300)) <= 3, (ps(s), now)
    st, r = s.post("/api/chat", {"model": "b", "messages": [], "keep_alive": 0})
    assert st == 200 and r["done_reason"] == "unload" and r["message"] == {"role": "assistant", "content": ""}, r
    wait_for(lambda: ps(s) == {}, "b unloaded (at once, or when the load request's connection is freed)", 5)
    # 0 with a prompt: unloaded once the answer is sent
    st, r = s.post("/api/generate", {"model": "a", "prompt": "hi", "stream": False, "keep_alive": 0,
                                     "options": {"num_predict": 3}})
    assert st == 200 and r["done_reason"] == "length", r
    wait_for(lambda: ps(s) == {}, "a unloaded after its keep_alive 0 request", 5)
    # a duration: listed with expires_at, unloaded after it
    st, r = s.post("/api/generate", {"model": "a", "prompt": "hi", "stream": False, "keep_alive": "1s",
                                     "options": {"num_predict": 2}})
    assert st == 200, r
    now = time.time()
    assert abs(ps(s)["a:latest"] - (now + 1)) <= 2, (ps(s), now)
    wait_for(lambda: ps(s) == {}, "a unloaded 1 s after its request", 10)
    # seconds as a number; then -1: for ever (a later request's keep_alive wins)
    s.post("/api/generate", {"model": "a", "prompt": "hi", "stream": False, "keep_alive": 1.5,
                             "options": {"num_predict": 2}})
    assert "a:latest" in ps(s)
    s.post("/api/generate", {"model": "a", "prompt": "hi", "stream": False, "keep_alive": -1,
                             "options": {"num_predict": 2}})
    assert ps(s)["a:latest"] >= calendar.timegm((9999, 1, 1, 0, 0, 0)), ps(s)
    time.sleep(2)
    assert "a:latest" in ps(s)
    # /api/embed honours it too
    st, r = s.post("/api/embed", {"model": "a", "input": "hi", "keep_alive": 0})
    assert st == 200 and len(r["embeddings"]) == 1, r
    wait_for(lambda: ps(s) == {}, "a unloaded after its keep_alive 0 embedding", 5)
    # a streamed chat: unloaded after its last line
    lines = s.stream("/api/chat", {"model": "b", "messages": [{"role": "user", "content": "hi"}], "keep_alive": "0s",
                                   "options": {"num_predict": 3}})
    assert json.loads(lines[-1])["done"], lines
    wait_for(lambda: ps(s) == {}, "b unloaded after its streamed chat", 5)
    for bad in ("soon", "5 m", [1], "", True):
        check_ollama_error(*s.post("/api/generate", {"model": "a", "prompt": "x", "keep_alive": bad}), 400,
                           ["keep_alive"])
    check_ollama_error(*s.post("/api/embed", {"model": "a", "input": "x", "keep_alive": "x"}), 400, ["keep_alive"])


def t_latest_forms(s):
    st, h, data = s.request("GET", "/v1/models/fim:latest")
    m = json.loads(data)
    assert st == 200 and m["id"] == "fim" and m["object"] == "model", (st, m)
    st, h, data = s.request("GET", "/models/fim:latest")
    assert st == 200 and json.loads(data)["id"] == "fim"
    st, h, data = s.request("GET", "/v1/models/fim:other")
    check_error(st, json.loads(data), 404, "model")
    st, h, data = s.request("GET", "/v1/models/nope:latest")
    check_error(st, json.loads(data), 404, "model")
    r = complete(s, "fim:latest")
    st, r = s.post("/v1/chat/completions", {"model": "a:latest", "messages": [{"role": "user", "content": "x"}],
                                            "max_tokens": 2})
    assert st == 200, r
    assert s.get_json("/props?model=a:latest")["model"] == "a"
    st, r = s.post("/api/show", {"model": "b:latest"})  # not loaded: its config is enough
    assert st == 200 and r["model_info"]["sasp.context_length"] > 0, r
    assert states(s)["b"] == "unloaded"
    st, r = s.post("/tokenize", {"model": "b:latest", "content": "hi"})
    assert st == 200 and r["tokens"], r
    st, r = s.post("/v1/embeddings", {"model": "fim:latest", "input": "x"})
    assert st == 200 and r["model"] == "fim", r


# --- -m with --models-max ---

def t_m_loads_up_to_models_max(s):
    assert states(s) == {"a": "loaded", "b": "loaded", "broken": "unloaded", "fim": "unloaded"}, states(s)
    assert sorted(ps(s)) == ["a:latest", "b:latest"]
    r = complete(s, None)  # no model named: the first, as before
    assert r["model"] == "a", r


def main():
    only = sys.argv[1:]
    d = make_models_dir()
    m_dir = tempfile.mkdtemp(prefix="sasp-m-dir-")
    for name in ("a", "b", "broken", "fim"):  # -m loads a and b, the first --models-max 2
        shutil.copytree(os.path.join(d, name), os.path.join(m_dir, name))
    plan = [
        (("--models-dir", d, "--models-max", "1", "--parallel", "2", "--step-delay", "20"), "models-max-1",
         [t_load_on_first_use, t_lru_max1_never_evicts_in_flight, t_unload_endpoint, t_load_fails,
          t_unload_races_engine]),
        (("--models-dir", d, "--models-max", "2", "--weights", "bf16"), "models-max-2",
         [t_levels_named, t_lru_max2, t_keep_alive, t_latest_forms]),
        (("-m", m_dir, "--models-max", "2"), "m-models-max", [t_m_loads_up_to_models_max]),
    ]
    failures = ts.run_plan(plan, only)
    shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(m_dir, ignore_errors=True)
    return ts.report(failures)


if __name__ == "__main__":
    sys.exit(main())
