"""How each engine is run and where its figures are read from. Every function runs one process
and returns {"prefill": tokens/s} and/or {"decode": tokens/s} (wall clock, as the engine reports it).

  sasp       sasp-bench -m DIR --weights W --reps 1: prefill256_tok_s (one forward of a 256-token
             prompt) and decode_b1_tok_s (greedy, 128 tokens after a 32-token prompt).
  llama.cpp  llama-bench -p 256 -n 128 -r 1: pp256 (one 256-token batch) and tg128 (128 tokens at
             batch 1 from an empty context).
  llama2.c   run / runq -t 0 (arg max), "achieved tok/s": it has no batched prefill, so prefill is a
             256-token prompt fed token by token (-n 256); decode is 130 forwards after a 3-token
             prompt (-n 131).
  ggml       examples/gpt-2's gpt-2-backend --top_k 1 -b 256, "predict time": prefill is a
             256-token prompt and one token (-n 1: one batch of 256); decode a 1-token prompt and
             -n 128 (128 evaluations at batch 1).

Each result also has "cpu_share": the process's CPU time (all threads, user + system) over its wall
time, which table.py --per-core uses to scale a figure to what the process would have done with its
threads' cores to itself (tokens/s x threads / cpu_share): on a machine where other work takes the
cores, a run that got half a core reads half as fast, and this undoes that, roughly (it counts
threads that spin while they wait as working, and loading as running).
"""
import json
import os
import re
import resource
import subprocess
import time
import tempfile


def _cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run(cmd, env=None, timeout=3600):
    """(stdout, stderr, cpu_share) of one process."""
    e = dict(os.environ, **(env or {}))
    c0, t0 = _cpu(), time.time()
    p = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("%s exited %d: %s" % (os.path.basename(cmd[0]), p.returncode, p.stderr[-300:]))
    return p.stdout, p.stderr, (_cpu() - c0) / (time.time() - t0)


def sasp(bench, model_dir, wtype, threads):
    with tempfile.TemporaryDirectory() as tmp:
        js = os.path.join(tmp, "out.json")
        _, _, share = _run([bench, "-m", model_dir, "--weights", wtype, "-t", str(threads), "--reps", "1",
              "--decode-tokens", "128", "--bw-mb", "64", "--json", js])
        with open(js) as f:
            r = json.load(f)["models"][0]["results"][0]
    return {"prefill": r["prefill256_tok_s"], "decode": r["decode_b1_tok_s"],
            "cpu_share": share}


def llama_cpp(bench, model, threads):
    out, _, share = _run([bench, "-m", model, "-p", "256", "-n", "128", "-r", "1", "-t", str(threads), "-o", "json"])
    res = {"cpu_share": share}
    for e in json.loads(out):
        if e["n_prompt"] == 256 and e["n_gen"] == 0:
            res["prefill"] = e["avg_ts"]
        elif e["n_prompt"] == 0 and e["n_gen"] == 128:
            res["decode"] = e["avg_ts"]
    return res


def llama2c(binary, model, tokenizer, threads, kind):
    # BOS + the dummy-prefix " " + 254 letters = 256 tokens (the vocabulary has no merges)
    args = ["-n", "256", "-i", "a" * 254] if kind == "prefill" else ["-n", "131", "-i", "a"]
    _, err, share = _run([binary, model, "-z", tokenizer, "-t", "0"] + args, env={"OMP_NUM_THREADS": str(threads)})
    return {kind: float(re.search(r"achieved tok/s: ([0-9.]+)", err).group(1)), "cpu_share": share}


def ggml_gpt2(binary, model, threads, kind):
    prompt, n_predict, n_tok = ("a" * 256, "1", 256) if kind == "prefill" else ("a", "128", 128)
    out, _, share = _run([binary, "-m", model, "-t", str(threads), "-b", "256", "--top_k", "1", "-p", prompt,
                   "-n", n_predict])
    n_prompt = int(re.search(r"number of tokens in prompt = (\d+)", out).group(1))
    if n_prompt != len(prompt):
        raise RuntimeError("gpt-2 prompt is %d tokens, not %d" % (n_prompt, len(prompt)))
    ms = float(re.search(r"predict time =\s*([0-9.]+) ms", out).group(1))
    return {kind: n_tok / (ms / 1000.0), "cpu_share": share}
