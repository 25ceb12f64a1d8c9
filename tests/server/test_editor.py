#!/usr/bin/env python3
"""test_editor.py: sasp-server as a code-completion backend, over HTTP as editors drive it (Python
standard library only): llama.cpp's /infill and /completion with their fields and errors, suffix on
/v1/completions and /api/generate, /slots and /props in llama.cpp's shape, the prompt cache (a hot
request gives what a cold one gives: the same greedy text, logprobs within 1e-5; also two requests
sharing a prefix at once; reported in usage, timings, /slots and /metrics), long prompts cut next to
the cursor (or refused when asked), and a model without FIM tokens refused with a clear 400.

Runs on tests/fixtures/tiny-fim (scripts/gen-fim-fixture.sh: the tiny test model with the three FIM
tokens) and tests/fixtures/tiny-model (none). Run by tests/server/run.sh under `make check`; by hand:
SASP_BUILDDIR=. SASP_SRCDIR=. python3 tests/server/test_editor.py [name-substring ...]
"""
import json
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server import SERVER, SRC, check_error, check_ollama_error, report, run_plan  # noqa: E402

FIM = os.path.join(SRC, "tests", "fixtures", "tiny-fim")
PLAIN = os.path.join(SRC, "tests", "fixtures", "tiny-model")
CTX = 64  # the FIM server's --ctx: prompts beyond it are cut to 48 tokens (three quarters)
GREEDY = {"temperature": 0}
CODE = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n"  # with AFTER, fits 3/4 of CTX: not cut
AFTER = "\nprint(1)\n"


def infill(s, **kw):
    body = dict(GREEDY, input_prefix=CODE, input_suffix=AFTER, n_predict=8)
    body.update(kw)
    return s.post("/infill", body)


def tokens_of(s, text):
    return s.post("/tokenize", {"content": text, "parse_special": False})[1]["tokens"]


def text_of(s, ids):
    return s.post("/detokenize", {"tokens": ids})[1]["content"]




def sse_objects(s, path, body):
    """The streamed objects of llama.cpp's shape (no [DONE] at the end)."""
    events = s.stream(path, body)
    assert b"[DONE]" not in events, "llama.cpp's streams end without [DONE]"
    return [json.loads(e) for e in events]


# --- the checks (each gets its server) ---


def t_infill_shape(s):
    st, r = infill(s, prompt="    ret", return_tokens=True, n_probs=3)
    assert st == 200, r
    for k in ("content", "tokens", "id_slot", "stop", "model", "tokens_predicted", "tokens_evaluated",
              "generation_settings", "prompt", "has_new_line", "truncated", "stop_type", "stopping_word",
              "tokens_cached", "tokens_dropped", "timings", "completion_probabilities"):
        assert k in r, (k, r)
    assert r["stop"] is True and r["model"] == "tiny-fim" and r["stop_type"] in ("eos", "limit", "word")
    t = r["timings"]
    for k in ("prompt_n", "prompt_ms", "predicted_n", "predicted_ms", "cache_n", "prompt_per_second",
              "predicted_per_second"):
        assert k in t, (k, t)
    assert t["prompt_n"] + t["cache_n"] == r["tokens_evaluated"] and t["predicted_n"] == r["tokens_predicted"]
    # the prompt is the trainer's order, and the answer is the middle alone: the generated tokens' text
    # less the bytes of the healed token before the cursor (the prompt's "    ret" lost its last token)
    p = r["prompt"]
    assert p.startswith("<|fim_prefix|>" + CODE) and ("<|fim_suffix|>" + AFTER + "<|fim_middle|>") in p, p
    assert p.endswith("<|fim_middle|>" + "    ret"[:len("    ret") - len(text_of(s, tokens_of(s, "    ret")[-1:]))]), p
    healed = text_of(s, tokens_of(s, "    ret")[-1:])
    generated = text_of(s, r["tokens"])
    assert generated.startswith(healed) and r["content"] == generated[len(healed):], (healed, generated, r["content"])
    assert len(r["completion_probabilities"]) == r["tokens_predicted"]
    assert all(len(c["top_logprobs"]) == 3 for c in r["completion_probabilities"])
    # without healing the text is every generated token's
    st, r = infill(s, prompt="    ret", return_tokens=True, token_healing=False)
    assert r["content"] == text_of(s, r["tokens"]) and r["prompt"].endswith("<|fim_middle|>    ret")
    # input_extra goes first, each chunk a document of its own
    st, r = infill(s, input_prefix="def f():\n", input_extra=[{"filename": "util.py", "text": "import os\n"},
                                                              {"text": "X = 1\n"}])
    assert st == 200 and r["prompt"].startswith("import os\n<|endoftext|>X = 1\n<|endoftext|><|fim_prefix|>"), r
    # streamed: the same text, chunks with their tokens, the final object last (stop: true)
    st, whole = infill(s, n_predict=12)
    objs = sse_objects(s, "/infill", dict(GREEDY, input_prefix=CODE, input_suffix=AFTER, n_predict=12))
    assert all(o["stop"] is False for o in objs[:-1]) and objs[-1]["stop"] is True
    assert "".join(o["content"] for o in objs) == whole["content"]
    assert objs[-1]["tokens_predicted"] == whole["tokens_predicted"]
    # the fields llama.vim and llama.vscode ask for, unnested under their paths
    st, r = infill(s, response_fields=["content", "timings/prompt_n", "timings/predicted_ms", "truncated",
                                       "tokens_cached"])
    assert set(r) == {"content", "timings/prompt_n", "timings/predicted_ms", "truncated", "tokens_cached"}, r


def t_infill_as_editors_send_it(s):
    """llama.vscode's request: samplers with "infill", top_p 0.99, n_indent, the time limits, cache_prompt."""
    body = {"input_prefix": CODE, "input_suffix": AFTER, "input_extra": [], "prompt": "    ",
            "n_predict": 16, "top_k": 40, "top_p": 0.99, "stream": False, "n_indent": 4,
            "samplers": ["top_k", "top_p", "infill"], "cache_prompt": True, "t_max_prompt_ms": 500,
            "t_max_predict_ms": 1000, "id_slot": -1,
            "response_fields": ["content", "timings/prompt_n", "timings/prompt_ms", "timings/prompt_per_token_ms",
                                "timings/prompt_per_second", "timings/predicted_n", "timings/predicted_ms",
                                "timings/predicted_per_token_ms", "timings/predicted_per_second", "truncated",
                                "tokens_cached"]}
    st, h, data = s.request("POST", "/infill", body)
    assert st == 200, data
    r = json.loads(data)
    assert "content" in r and r["timings/predicted_n"] <= 16
    assert "t_max_prompt_ms" in h.get("x-sasp-ignored-options", ""), h
    # n_indent: no line of the answer after its first starts with fewer than 4 blanks
    for line in r["content"].split("\n")[1:]:
        if line.strip():
            assert len(line) - len(line.lstrip(" \t")) >= 4, r["content"]
    st, r = s.post("/infill", dict(body, response_fields=["generation_settings"]))
    gs = r["generation_settings"]
    assert gs["samplers"][-1] == "infill" and gs["n_indent"] == 4 and gs["t_max_predict_ms"] == 1000, gs


def t_infill_errors(s):
    for body, param in (({"input_suffix": ""}, "input_prefix"), ({"input_prefix": ""}, "input_suffix"),
                        ({"input_prefix": "", "input_suffix": "", "input_extra": "x"}, "input_extra"),
                        ({"input_prefix": "", "input_suffix": "", "input_extra": [{"filename": "a"}]}, "input_extra"),
                        ({"input_prefix": "", "input_suffix": "", "prompt": 3}, "prompt"),
                        ({"input_prefix": "", "input_suffix": "", "grammar": "root ::= \"x\""}, "grammar"),
                        ({"input_prefix": "", "input_suffix": "", "samplers": ["mirostat"]}, "samplers"),
                        ({"input_prefix": "", "input_suffix": "", "n_discard": 8}, "n_discard")):
        check_error(*s.post("/infill", body), 400, param)
    st, h, data = s.request("GET", "/infill")
    assert st == 405


def t_suffix_paths(s):
    """suffix on /v1/completions and /api/generate is the same fill in the middle (greedy: the same text)."""
    st, r = infill(s, n_predict=6)
    want = r["content"]
    st, v1 = s.post("/v1/completions", dict(GREEDY, prompt=CODE, suffix=AFTER, max_tokens=6))
    assert st == 200 and v1["choices"][0]["text"] == want, (v1, want)
    st, og = s.post("/api/generate", {"prompt": CODE, "suffix": AFTER, "stream": False,
                                      "options": {"temperature": 0, "num_predict": 6}})
    assert st == 200 and og["response"] == want, (og, want)
    check_error(*s.post("/v1/completions", {"prompt": [1, 2], "suffix": "x"}), 400, "suffix")
    check_error(*s.post("/v1/completions", {"prompt": "a", "suffix": "x", "echo": True}), 400, "echo")


def t_completion_native(s):
    st, r = s.post("/completion", dict(GREEDY, prompt="def add(a, b):", n_predict=5, return_tokens=True))
    assert st == 200 and r["tokens_predicted"] == 5 and len(r["tokens"]) == 5 and r["stop_type"] == "limit", r
    assert r["timings"]["predicted_n"] == 5 and r["truncated"] is False
    ids = tokens_of(s, "def add(a, b):")
    st, r2 = s.post("/completion", dict(GREEDY, prompt=ids, n_predict=5, return_tokens=True))
    assert st == 200 and r2["tokens_evaluated"] == len(ids)
    st, r3 = s.post("/completion", dict(GREEDY, prompt=[ids[0], "add(a, b):"], n_predict=2))
    assert st == 200 and r3["prompt"].startswith("def"), r3
    # n_predict 0 reads the prompt into the cache and generates nothing; the next request reuses it
    st, r = s.post("/completion", {"prompt": "class Stack:\n    def push(self, x):", "n_predict": 0})
    assert st == 200 and r["content"] == "" and r["tokens_predicted"] == 0, r
    st, r = s.post("/completion", dict(GREEDY, prompt="class Stack:\n    def push(self, x):", n_predict=2,
                                       token_healing=False))
    assert r["tokens_cached"] == r["tokens_evaluated"] - 1, r
    objs = sse_objects(s, "/completion", dict(GREEDY, prompt="x = ", n_predict=4))
    assert objs[-1]["stop"] is True and "timings" in objs[-1]
    check_error(*s.post("/completion", {"prompt": ["a", "b"]}), 400, "prompt")
    check_error(*s.post("/completion", {}), 400, "prompt")
    check_error(*s.post("/completion", {"prompt": "x", "n_predict": -5}), 400, "n_predict")


def t_samplers(s):
    """llama.cpp's samplers over HTTP: DRY refuses to extend a repeat (a logit_bias makes it the favourite,
    a large multiplier takes it away, and the pre-sampling logprob shows the penalty); post_sampling_probs
    gives the final distribution; generation_settings reports every field and the chain; the same seed
    gives the same text with every sampler on; each one at its off value changes nothing; OpenAI's extra
    fields and Ollama's options carry DRY."""
    rep = [100, 101, 102, 103] * 2 + [100, 101, 102]  # 103 would extend the repeat
    base = dict(GREEDY, prompt=rep, n_predict=1, n_probs=20, return_tokens=True, logit_bias=[[103, 30]])
    st, r = s.post("/completion", base)
    assert st == 200 and r["tokens"] == [103], r
    dry = dict(dry_multiplier=1000, dry_base=1.75, dry_allowed_length=2, dry_penalty_last_n=-1,
               dry_sequence_breakers=["@@@@"])
    st, r = s.post("/completion", dict(base, **dry))
    assert st == 200 and r["tokens"] != [103], r
    lp = {t["id"]: t["logprob"] for t in r["completion_probabilities"][0]["top_logprobs"]}
    assert 103 not in lp or lp[103] < -100, lp
    # post-sampling: the final distribution (top_k 3 at temperature 1), probabilities summing to 1
    st, r = s.post("/completion", {"prompt": "def f(x):", "n_predict": 3, "seed": 5, "top_k": 3, "top_p": 1,
                                   "min_p": 0, "temperature": 1, "n_probs": 5, "post_sampling_probs": True})
    assert st == 200 and len(r["completion_probabilities"]) == 3, r
    for tok in r["completion_probabilities"]:
        assert 0 < tok["prob"] <= 1 and "logprob" not in tok and 1 <= len(tok["top_probs"]) <= 3, tok
        assert abs(sum(t["prob"] for t in tok["top_probs"]) - 1) < 1e-5, tok
        assert tok["id"] in [t["id"] for t in tok["top_probs"]], tok
    # generation_settings and the chain, in llama.cpp's names
    every = dict(dry, dry_multiplier=0.8, xtc_probability=0.5, xtc_threshold=0.1, typical_p=0.9, top_n_sigma=2,
                 dynatemp_range=0.5, dynatemp_exponent=1.5, min_keep=1, frequency_penalty=0.3, repeat_penalty=1.1)
    st, r = s.post("/completion", dict(every, prompt="def f(x):", n_predict=8, seed=42, samplers="edsykpmxt",
                                       response_fields=["generation_settings", "content"]))
    gs = r["generation_settings"]
    assert gs["samplers"] == ["penalties", "dry", "top_n_sigma", "typ_p", "top_k", "top_p", "min_p", "xtc",
                              "temperature"], gs
    for k, v in every.items():
        assert gs[k] == v or (isinstance(v, float) and abs(gs[k] - v) < 1e-6), (k, gs[k], v)
    st, again = s.post("/completion", dict(every, prompt="def f(x):", n_predict=8, seed=42, samplers="edsykpmxt",
                                           response_fields=["content"]))
    assert again["content"] == r["content"], (again, r)
    # each sampler at its off value: the same text as without it
    plain = {"prompt": "def f(x):", "n_predict": 8, "seed": 7}
    off = dict(dry_multiplier=0, xtc_probability=0, typical_p=1, top_n_sigma=-1, dynatemp_range=0, min_keep=0)
    assert s.post("/completion", plain)[1]["content"] == s.post("/completion", dict(plain, **off))[1]["content"]
    # DRY as OpenAI's extra fields and in Ollama's options
    st, r = s.post("/v1/completions", dict(dry, prompt="x", max_tokens=2, samplers=["penalties", "dry", "top_k"]))
    assert st == 200, r
    st, r = s.post("/api/generate", {"prompt": "x", "stream": False, "options": dict(dry, num_predict=2, typical_p=0.9)})
    assert st == 200 and r["done"], r
    check_ollama_error(*s.post("/api/generate", {"prompt": "x", "options": {"xtc_probability": 0.5}}), 400, ["xtc"])
    check_error(*s.post("/completion", {"prompt": "x", "dry_sequence_breakers": []}), 400, "dry_sequence_breakers")


def t_slots_and_props(s):
    slots = s.get_json("/slots")
    assert len(slots) == 4, slots
    for sl in slots:
        for k in ("id", "id_task", "n_ctx", "is_processing", "params", "next_token", "n_cached", "n_reused", "state"):
            assert k in sl, (k, sl)
        assert sl["n_ctx"] == CTX
    assert max(sl["n_cached"] for sl in slots) > 0  # earlier checks left prompts in the caches
    st, h, data = s.request("GET", "/slots?fail_on_no_slot=1")
    assert st == 200
    p = s.get_json("/props")
    for k in ("default_generation_settings", "n_ctx", "total_slots", "model_path", "chat_template", "slots", "simd"):
        assert k in p, k
    d = p["default_generation_settings"]
    assert d["n_ctx"] == CTX and abs(d["params"]["temperature"] - 0.8) < 1e-6 and d["params"]["n_predict"] == -1
    assert p["total_slots"] == 4 and p["infill"] is True and p["model_path"].endswith("tiny-fim")
    assert s.get_json("/props?model=tiny-fim")["model"] == "tiny-fim"
    st, h, data = s.request("GET", "/props?model=nope")
    assert st == 404


def t_prompt_cache(s):
    """Greedy, with logprobs: the same request cold (cache_prompt: false) and hot gives the same tokens
    and logprobs, equal (the kernels are batch-invariant); the hot one reads all but one prompt token
    from the cache."""
    body = dict(GREEDY, input_prefix="def fib(n):\n", input_suffix="\n\nprint(fib(10))\n", n_predict=10,
                n_probs=5, return_tokens=True)
    st, cold = s.post("/infill", dict(body, cache_prompt=False))
    st, hot = s.post("/infill", body)
    assert cold["timings"]["cache_n"] == 0 and hot["timings"]["cache_n"] == hot["tokens_evaluated"] - 1, hot
    assert hot["tokens"] == cold["tokens"] and hot["content"] == cold["content"]
    for a, b in zip(cold["completion_probabilities"], hot["completion_probabilities"]):
        assert a == b, (a, b)
    # typing at the cursor: the next request shares everything up to the cursor
    st, r1 = infill(s, prompt="    return")
    st, r2 = infill(s, prompt="    return a")
    assert r2["tokens_cached"] >= r1["tokens_evaluated"] - 3, (r1["tokens_evaluated"], r2["tokens_cached"])
    # OpenAI's usage reports it
    req = dict(GREEDY, prompt="import os\nimport sys\n", max_tokens=3)
    s.post("/v1/completions", req)
    st, r = s.post("/v1/completions", req)
    assert r["usage"]["prompt_tokens_details"]["cached_tokens"] == r["usage"]["prompt_tokens"] - 1, r["usage"]
    m = s.metrics()
    assert m["sasp_prompt_tokens_cached_total"] > 0 and "sasp_prompt_cache_host_entries" in m


def t_prompt_cache_at_once(s):
    """Two requests sharing a prefix, at once, after it is cached: each gives what it gives cold, alone."""
    shared = "def area(w, h):\n    return w * h\n\n"
    bodies = [dict(GREEDY, prompt=shared + tail, n_predict=8, n_probs=3, token_healing=False)
              for tail in ("def perimeter(w, h):", "def volume(w, h, d):")]
    s.post("/completion", {"prompt": shared, "n_predict": 0})
    cold = [s.post("/completion", dict(b, cache_prompt=False))[1] for b in bodies]
    s.post("/completion", {"prompt": shared, "n_predict": 0})
    hot = [None, None]
    th = [threading.Thread(target=lambda i=i: hot.__setitem__(i, s.post("/completion", bodies[i])[1])) for i in (0, 1)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    for c, h in zip(cold, hot):
        assert h["tokens_cached"] >= len(tokens_of(s, shared)) - 1, h
        assert h["content"] == c["content"], (h["content"], c["content"])
        for a, b in zip(c["completion_probabilities"], h["completion_probabilities"]):
            assert a == b, (a, b)


def t_long_prompts(s):
    """Beyond the context (64): cut to three quarters, keeping the text next to the cursor; the answer and
    a header say how many tokens went; "truncate": false keeps the 400."""
    prefix = "".join("x%d = f(x%d)\n" % (i, i) for i in range(40)) + "y = "
    st, h, data = s.request("POST", "/infill", dict(GREEDY, input_prefix=prefix, input_suffix="\nprint(y)\n",
                                                    n_predict=4, token_healing=False))
    assert st == 200, data
    r = json.loads(data)
    assert r["truncated"] is True and r["tokens_dropped"] > 0 and r["tokens_evaluated"] <= 48, r
    assert int(h["x-sasp-prompt-tokens-dropped"]) == r["tokens_dropped"]
    assert "x39 = f(x39)\ny = <|fim_suffix|>\nprint(y)\n<|fim_middle|>" in r["prompt"] and "x0 =" not in r["prompt"]
    st, e = s.post("/infill", dict(input_prefix=prefix, input_suffix="", truncate=False))
    check_error(st, e, 400)
    assert e["error"]["code"] == "context_length_exceeded"
    ids = list(range(1, 101))
    st, r = s.post("/completion", dict(GREEDY, prompt=ids, n_predict=2, n_keep=3, return_tokens=True))
    assert st == 200 and r["tokens_dropped"] == 100 - r["tokens_evaluated"], r
    st, e = s.post("/v1/completions", {"prompt": ids, "max_tokens": 2})
    check_error(st, e, 400, "prompt")
    st, r = s.post("/v1/completions", {"prompt": ids, "max_tokens": 2, "truncate": True})
    assert st == 200 and r["usage"]["prompt_tokens_dropped"] > 0, r
    st, r = s.post("/api/generate", {"prompt": prefix, "stream": False, "options": {"num_predict": 2}})
    assert st == 200 and r["truncated"] is True and r["prompt_tokens_dropped"] > 0 and r["prompt_eval_count"] <= 48
    # generation that reaches the end of the context stops with "length" (the context is not shifted)
    st, r = s.post("/completion", dict(GREEDY, prompt=ids[:60], n_predict=-1, ignore_eos=True))
    assert r["stop_type"] == "limit" and r["truncated"] is True and r["tokens_predicted"] == CTX - 60 + 1, r
    m = s.metrics()
    assert m["sasp_prompt_tokens_dropped_total"] > 0


def t_no_fim_model(s):
    for path, body, param in (("/infill", {"input_prefix": "a", "input_suffix": "b"}, "input_prefix"),
                              ("/v1/completions", {"prompt": "a", "suffix": "b"}, "suffix")):
        st, e = s.post(path, body)
        check_error(st, e, 400, param, ["<|fim_prefix|>", "tiny-model"])
    check_ollama_error(*s.post("/api/generate", {"prompt": "a", "suffix": "b"}), 400, ["<|fim_prefix|>"])
    assert s.get_json("/props")["infill"] is False
    st, r = s.post("/completion", {"prompt": "a", "n_predict": 2})
    assert st == 200


def main():
    only = sys.argv[1:]
    if not os.path.exists(SERVER):
        print("test_editor.py: %s not built" % SERVER)
        return 1
    plan = [
        (("-m", FIM, "--parallel", "4", "--ctx", str(CTX), "--cache-ram", "8"), "fim", [
            t_infill_shape, t_infill_as_editors_send_it, t_infill_errors, t_suffix_paths, t_completion_native,
            t_prompt_cache, t_prompt_cache_at_once, t_long_prompts, t_samplers, t_slots_and_props]),
        (("-m", PLAIN, "--parallel", "1"), "no-fim", [t_no_fim_model]),
    ]
    failures = run_plan(plan, only, prefix="editor-")
    return report(failures)


if __name__ == "__main__":
    sys.exit(main())
