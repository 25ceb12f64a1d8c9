#!/usr/bin/python3
"""A PNG of run.py's table: one panel per (measure, threads), shapes A and B side by side, one bar
per (engine, weights), on a log scale (llama2.c's token-by-token prefill is 10-100x below the rest).

    bench/peers/chart.py [--per-core] OUT/runs.jsonl OUT.png
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import table  # noqa: E402

COLOR = {"sasp": "#d62728", "llama.cpp": "#1f77b4", "ggml gpt-2": "#2ca02c", "llama2.c": "#9467bd"}
SHADE = {"f32": 1.0, "f16": 0.75, "bf16": 0.55, "q8_0": 0.35}


def draw(data, path):
    rows = table.medians(data)
    threads = sorted({c[1] for c in data["columns"]})
    shapes = sorted({c[0] for c in data["columns"]})
    fig, axes = plt.subplots(2, len(threads), figsize=(6 * len(threads), 8), squeeze=False)
    width = 0.8 / max(len(rows), 1)
    for i, m in enumerate(table.METRICS):
        for j, t in enumerate(threads):
            ax = axes[i][j]
            for k, ((engine, w), med) in enumerate(rows):
                xs = [x + k * width for x, s in enumerate(shapes) if (s, t, m) in med]
                ys = [med[(s, t, m)] for s in shapes if (s, t, m) in med]
                ax.bar(xs, ys, width, color=COLOR[engine], alpha=SHADE[w], edgecolor="black", linewidth=0.3,
                       label="%s %s" % (engine, w))
            ax.set_xticks([x + 0.4 - width / 2 for x in range(len(shapes))], ["shape " + s for s in shapes])
            ax.set_yscale("log")
            ax.set_ylabel("tokens/s" + (" per core-share" if data["per_core"] else ""))
            ax.set_title("%s, %d thread%s" % ("decode (batch 1)" if m == "decode" else "prefill (256 tokens)",
                                              t, "" if t == 1 else "s"))
            ax.grid(axis="y", which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--per-core"]
    if len(args) != 2:
        sys.exit(__doc__)
    draw(table.load([args[0]], "--per-core" in sys.argv), args[1])
