#!/usr/bin/python3
"""The Markdown table of run.py's runs: per (engine, weights) the median tokens/s over the rounds in
each (shape, threads, decode | prefill) column, then sasp's ratio to the fastest peer per column.

    bench/peers/table.py [--per-core] OUT/runs.jsonl [more.jsonl ...]

--per-core scales every run's figure by threads / its cpu_share (engines.py): what it would have
done with its threads' cores to itself, the fairer figure on a machine that other work loads.
"""
import json
import statistics
import sys
from collections import defaultdict

ENGINES = ["sasp", "llama.cpp", "ggml gpt-2", "llama2.c"]
LABEL = {"sasp": "sasp (SAS-P)", "llama.cpp": "llama.cpp llama-bench (LLaMA)",
         "ggml gpt-2": "ggml gpt-2 (GPT-2)", "llama2.c": "llama2.c run / runq (LLaMA)"}
WEIGHTS = ["f32", "f16", "bf16", "q8_0"]
METRICS = ["decode", "prefill"]


def load(paths, per_core=False):
    """{"values": {(engine, weights): {column: [tok/s, ...]}}, "errors": {...}, "columns": [...]}"""
    values, errors, threads, shapes = defaultdict(lambda: defaultdict(list)), defaultdict(int), set(), set()
    for p in paths:
        for line in open(p):
            if not line.strip():
                continue
            r = json.loads(line)
            row = (r["engine"], r["weights"])
            threads.add(r["threads"])
            shapes.add(r["shape"])
            if "error" in r:
                errors[row] += 1
            scale = r["threads"] / r["cpu_share"] if per_core and r.get("cpu_share") else 1.0
            for m in METRICS:
                if m in r:
                    values[row][(r["shape"], r["threads"], m)].append(r[m] * scale)
    columns = [(s, t, m) for t in sorted(threads) for s in sorted(shapes) for m in METRICS]
    return {"values": values, "errors": errors, "columns": columns, "per_core": per_core}


def medians(data):
    """[((engine, weights), {column: median})] in table order."""
    rows = sorted(data["values"], key=lambda k: (ENGINES.index(k[0]), WEIGHTS.index(k[1])))
    return [(k, {c: statistics.median(v) for c, v in data["values"][k].items() if v}) for k in rows]


def fastest_peers(rows, columns):
    """{column: (tok/s, "engine weights")}: the fastest non-sasp row of each column."""
    best = {}
    for (engine, w), med in rows:
        for c in columns:
            if engine != "sasp" and c in med and med[c] > best.get(c, (0, ""))[0]:
                best[c] = (med[c], "%s %s" % (engine, w))
    return best


def markdown(data):
    cols, rows = data["columns"], medians(data)
    best = fastest_peers(rows, cols)
    rounds = max((len(v) for r in data["values"].values() for v in r.values()), default=0)
    head = ["%s %s, %d thr" % (s, "decode" if m == "decode" else "prefill-256", t) for s, t, m in cols]
    out = ["| engine (architecture), weights | " + " | ".join(head) + " |",
           "|---|" + "---:|" * len(cols)]
    for (engine, w), med in rows:
        cells = ["{:,.0f}".format(med[c]) if c in med else "—" for c in cols]
        name = "%s, %s" % (LABEL[engine], w)
        if data["errors"].get((engine, w)):
            name += " (%d failed runs)" % data["errors"][(engine, w)]
        out.append("| " + ("**%s**" % name if engine == "sasp" else name) + " | " + " | ".join(cells) + " |")
    for (engine, w), med in rows:
        if engine == "sasp":
            cells = ["%.2fx" % (med[c] / best[c][0]) if c in med and c in best else "—" for c in cols]
            out.append("| sasp %s / fastest peer | " % w + " | ".join(cells) + " |")
    out.append("| fastest peer | " + " | ".join(best[c][1] if c in best else "—" for c in cols) + " |")
    out.append("")
    out.append("Tokens/s, %s, median of %d round(s); decode: greedy at batch 1; prefill: one "
               "256-token prompt." % ("scaled to the threads' cores (x threads / CPU share)" if data["per_core"]
                                      else "wall clock", rounds))
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    args = sys.argv[1:]
    per_core = "--per-core" in args
    paths = [a for a in args if a != "--per-core"]
    if not paths:
        sys.exit(__doc__)
    print(markdown(load(paths, per_core)), end="")
