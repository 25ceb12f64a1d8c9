#!/usr/bin/python3
"""Time sasp and its peers side by side: every (engine, weights, shape, threads) configuration once
per round, round-robin, so that all of them see the same machine; then the Markdown table (medians
over the rounds, sasp's ratio to the fastest peer per column) and a PNG chart.

    bench/peers/run.py --sasp BUILD_DIR --peers PEERS_DIR [--rounds 5] [--threads 1,2] [--shapes A,B]
                       [--only ENGINE[:WEIGHTS]] [--out DIR] [--resume]

BUILD_DIR holds a built sasp-bench; PEERS_DIR is where build-peers.sh built the peers (llama.cpp/,
ggml/, llama2.c/) and make-models.sh wrote the models (PEERS_DIR/models unless --models). A peer
that is not built is left out. Every run goes to OUT/runs.jsonl as it finishes (--resume appends
rounds to an existing one). At the end OUT/table.md (wall clock) and OUT/table-per-core.md (each run
scaled to its threads' cores: table.py --per-core), and the charts of both, OUT/chart.png and
OUT/chart-per-core.png.
"""
import argparse
import json
import os
import sys
import time

import engines
import table

HERE = os.path.dirname(os.path.abspath(__file__))


def configs(a, shape, t):
    """[(engine, weights, measure)] for one shape and thread count, in the order they run."""
    m, c = a.models, []
    for w in ("f32", "bf16", "q8_0"):
        c.append(("sasp", w, lambda w=w: engines.sasp(os.path.join(a.sasp, "sasp-bench"),
                                                      "%s/sasp_%s" % (m, shape), w, t)))
    lb = os.path.join(a.peers, "llama.cpp/build/bin/llama-bench")
    if not os.path.exists(lb):  # build-peers.sh with LLAMA_PREBUILT=1
        lb = os.path.join(a.peers, "llama.cpp/build-prebuilt/bin/llama-bench")
    if os.path.exists(lb):
        for w in ("f32", "f16", "bf16", "q8_0"):
            c.append(("llama.cpp", w, lambda w=w: engines.llama_cpp(lb, "%s/llama_%s_%s.gguf" % (m, shape, w), t)))
    gpt2 = os.path.join(a.peers, "ggml/build/bin/gpt-2-backend")
    if os.path.exists(gpt2):
        for w in ("f32", "f16", "q8_0"):
            for kind in ("prefill", "decode"):
                c.append(("ggml gpt-2", w, lambda w=w, kind=kind: engines.ggml_gpt2(
                    gpt2, "%s/gpt2_%s_%s.bin" % (m, shape, w), t, kind)))
    for w, binary, model in (("f32", "run", "l2c_%s.bin"), ("q8_0", "runq", "l2c_%s_q80.bin")):
        path = os.path.join(a.peers, "llama2.c", binary)
        if os.path.exists(path):
            for kind in ("prefill", "decode"):
                c.append(("llama2.c", w, lambda path=path, model=model, kind=kind: engines.llama2c(
                    path, "%s/%s" % (m, model % shape), "%s/tok_%s.bin" % (m, shape), t, kind)))
    return c


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sasp", required=True, help="a sasp build directory (with sasp-bench)")
    ap.add_argument("--peers", required=True, help="where build-peers.sh built the peers")
    ap.add_argument("--models", help="where make-models.sh wrote the models (default PEERS/models)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--shapes", default="A,B")
    ap.add_argument("--out", default="peers-results")
    ap.add_argument("--only", action="append", default=[],
                    help="run only this engine (sasp, llama.cpp, ggml gpt-2, llama2.c) or ENGINE:WEIGHTS; repeatable")
    ap.add_argument("--resume", action="store_true", help="append to OUT/runs.jsonl instead of starting anew")
    a = ap.parse_args()
    a.models = a.models or os.path.join(a.peers, "models")
    threads = [int(x) for x in a.threads.split(",")]
    os.makedirs(a.out, exist_ok=True)
    runs = os.path.join(a.out, "runs.jsonl")
    with open(runs, "a" if a.resume else "w") as f:
        for r in range(a.rounds):
            for t in threads:
                for shape in a.shapes.split(","):
                    for engine, w, measure in configs(a, shape, t):
                        if a.only and engine not in a.only and "%s:%s" % (engine, w) not in a.only:
                            continue
                        rec = {"round": r, "engine": engine, "weights": w, "shape": shape, "threads": t,
                               "time": time.strftime("%H:%M:%S"), "load": os.getloadavg()[0]}
                        try:
                            rec.update(measure())
                        except Exception as e:  # record it and keep going
                            rec["error"] = str(e)[:300]
                        f.write(json.dumps(rec) + "\n")
                        f.flush()
                        print(json.dumps(rec), file=sys.stderr, flush=True)
    try:
        import chart
    except ImportError as e:
        chart = None
        print("no chart (%s): apt-get install python3-matplotlib" % e, file=sys.stderr)
    for suffix, per_core in (("", False), ("-per-core", True)):
        data = table.load([runs], per_core)
        md = table.markdown(data)
        with open(os.path.join(a.out, "table%s.md" % suffix), "w") as f:
            f.write(md)
        print(md)
        if chart:
            chart.draw(data, os.path.join(a.out, "chart%s.png" % suffix))


if __name__ == "__main__":
    main()
