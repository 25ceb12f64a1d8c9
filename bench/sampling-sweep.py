#!/usr/bin/env python3
"""sampling-sweep.py: choose the server's default sampling by measurement, against a running sasp-server.

Runs bench/code-quality.py's measures (valid Python, degenerate, empty, distinct-2 of completions of
function headers; the share of fill-in-the-middle middles with which the file parses) for each
candidate setting of the sampling fields (docs/api.md, Sampling), with several seeds each, and prints
one Markdown row per candidate: the figures over all seeds, and the lowest and highest valid and
degenerate shares of a single seed (how much the seed moves them). Every request carries only the
candidate's fields, so a field the candidate does not set is the server's default: the candidate
"defaults" (no fields) is the server as it is.

Tune on the prompts of bench/completion_prompts.py (--set tune, the default), then confirm the winner,
against the current defaults, on bench/heldout_prompts.py (--set heldout), which the tuning never
sees. The issue's targets: valid >= 60%, degenerate <= 5%. A full run on the 48 + 24 tuning prompts is
(48 + 24) x seeds x candidates requests of up to --max-tokens tokens: start the server with the model
to measure and several slots, and use --jobs to keep them busy:

  ./sasp-server -m models/sasp-small --parallel 4 &
  python3 bench/sampling-sweep.py --seeds 4 --jobs 4 --json sweep.json           # every candidate
  python3 bench/sampling-sweep.py --list                                         # their names and fields
  python3 bench/sampling-sweep.py --set heldout --seeds 4 --jobs 4 --only defaults,dry-0.8+fp-0.5
  python3 bench/sampling-sweep.py --candidates mine.json --seeds 4               # [{"name", "fields", "fim"}]
  python3 bench/sampling-sweep.py --only defaults,dry-0.8 --seeds 1 --prompts 4 --fim-cases 2   # a smoke test

A candidate's "fim" fields are added to its fields on the fill-in-the-middle requests only (/infill, e.g.
"samplers" with "infill"). Only the standard library; any python3.
"""
import argparse
import importlib.util
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from completion_prompts import COMPLETIONS, FIM  # noqa: E402
from heldout_prompts import HELDOUT_COMPLETIONS, HELDOUT_FIM  # noqa: E402

_spec = importlib.util.spec_from_file_location("code_quality", os.path.join(HERE, "code-quality.py"))
cq = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cq)

DRY = {"dry_allowed_length": 2, "dry_penalty_last_n": -1}

# The candidates: the server's defaults, then one lever at a time, then the levers that issue 23's first
# measurements favoured (frequency penalty; DRY, made for exactly this failure) together.
CANDIDATES = [
    ("defaults", {}),
    ("greedy", {"temperature": 0}),
    ("t-0.5", {"temperature": 0.5}),
    ("t-1.0", {"temperature": 1.0}),
    ("top_k-20", {"top_k": 20}),
    ("top_p-0.9", {"top_p": 0.9}),
    ("min_p-0.1", {"min_p": 0.1}),
    ("fp-0.5", {"frequency_penalty": 0.5}),
    ("fp-1.0", {"frequency_penalty": 1.0}),
    ("pp-0.3", {"presence_penalty": 0.3}),
    ("rp-1.1", {"repeat_penalty": 1.1}),
    ("dry-0.4", dict(DRY, dry_multiplier=0.4)),
    ("dry-0.8", dict(DRY, dry_multiplier=0.8)),
    ("dry-1.5", dict(DRY, dry_multiplier=1.5)),
    ("dry-0.8-len3", dict(DRY, dry_multiplier=0.8, dry_allowed_length=3)),
    ("dry-0.8-last256", dict(DRY, dry_multiplier=0.8, dry_penalty_last_n=256)),
    ("dry-0.8-nobreak", dict(DRY, dry_multiplier=0.8, dry_sequence_breakers=["@@no breaker@@"])),
    ("dry-0.8+fp-0.5", dict(DRY, dry_multiplier=0.8, frequency_penalty=0.5)),
    ("dry-0.8+t-0.6", dict(DRY, dry_multiplier=0.8, temperature=0.6)),
    ("dry-0.8+min_p-0.1", dict(DRY, dry_multiplier=0.8, min_p=0.1)),
    ("fp-0.5+t-0.6", {"frequency_penalty": 0.5, "temperature": 0.6}),
    # fill in the middle as the editor plugins ask for it (llama.vscode: top_k, top_p 0.99, infill)
    ("editor-fim", {}, {"samplers": ["top_k", "top_p", "infill"], "top_p": 0.99}),
    ("dry-0.8+editor-fim", dict(DRY, dry_multiplier=0.8),
     {"samplers": ["penalties", "dry", "top_k", "top_p", "infill"], "top_p": 0.99}),
]


def load_candidates(path):
    with open(path) as f:
        items = json.load(f)
    return [(c["name"], c.get("fields", {}), c.get("fim", {})) for c in items]


def run_candidate(args, name, fields, fim_fields, prompts, fim_cases):
    """The figures of one candidate: over all seeds, and per seed."""
    per_seed, all_rows, all_fim = [], [], []
    for seed in range(1, args.seeds + 1):
        summary, rows, fim_rows = cq.evaluate(args.url, prompts, fim_cases, [seed], args.max_tokens, args.fim,
                                              fields, fim_fields, jobs=args.jobs)
        per_seed.append(summary)
        all_rows += rows
        all_fim += fim_rows
    total = cq.summarize(all_rows, all_fim)
    return {"name": name, "fields": fields, "fim_fields": fim_fields, "summary": total, "per_seed": per_seed,
            "completions": all_rows, "fim": all_fim}


def row(r, with_fim):
    s, seeds = r["summary"], r["per_seed"]
    span = lambda k: f"{min(x[k] for x in seeds):.0%}–{max(x[k] for x in seeds):.0%}"  # noqa: E731
    fim = f" {s['fim_valid']:.0%} |" if with_fim else ""
    return (f"| {r['name']} | {s['completions']} | {s['valid']:.0%} | {span('valid')} | {s['degenerate']:.0%} | "
            f"{span('degenerate')} | {s['empty']:.0%} | {s['distinct_2']:.2f} |{fim}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--set", choices=["tune", "heldout"], default="tune", help="the prompts (default: tune)")
    ap.add_argument("--seeds", "--samples", type=int, default=4, help="seeds 1..N per prompt (default 4)")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--fim", choices=["auto", "infill", "tokens", "off"], default="auto")
    ap.add_argument("--only", help="comma-separated candidate names")
    ap.add_argument("--candidates", help="a JSON file: [{\"name\": ..., \"fields\": {...}, \"fim\": {...}}, ...]")
    ap.add_argument("--prompts", type=int, help="only the first N prompts (a smoke test)")
    ap.add_argument("--fim-cases", type=int, help="only the first N FIM cases")
    ap.add_argument("--jobs", type=int, default=1, help="requests at a time (match the server's --parallel)")
    ap.add_argument("--json", help="write every figure and completion here")
    ap.add_argument("--list", action="store_true", help="list the candidates and exit")
    args = ap.parse_args(argv)

    cands = load_candidates(args.candidates) if args.candidates else [(c[0], c[1], c[2] if len(c) > 2 else {})
                                                                        for c in CANDIDATES]
    if args.list:
        for name, fields, fim in cands:
            print(f"{name}: {json.dumps(fields)}" + (f" fim: {json.dumps(fim)}" if fim else ""))
        return 0
    if args.only:
        want = args.only.split(",")
        unknown = [w for w in want if w not in [c[0] for c in cands]]
        if unknown:
            sys.exit(f"sampling-sweep: no candidate named {', '.join(unknown)} (--list shows them)")
        cands = [c for c in cands if c[0] in want]
    prompts, fim_cases = (COMPLETIONS, FIM) if args.set == "tune" else (HELDOUT_COMPLETIONS, HELDOUT_FIM)
    prompts = prompts[:args.prompts] if args.prompts else prompts
    fim_cases = fim_cases[:args.fim_cases] if args.fim_cases is not None else fim_cases
    with_fim = args.fim != "off" and len(fim_cases) > 0

    print(f"prompts: {args.set} ({len(prompts)} completions, {len(fim_cases) if with_fim else 0} FIM cases), "
          f"seeds 1..{args.seeds}, max_tokens {args.max_tokens}\n")
    print("| candidate | completions | valid | valid per seed | degenerate | degenerate per seed | empty | distinct-2 |"
          + (" FIM parses |" if with_fim else ""))
    print("|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if with_fim else ""), flush=True)
    results = []
    for name, fields, fim_fields in cands:
        t0 = time.time()
        r = run_candidate(args, name, fields, fim_fields, prompts, fim_cases if with_fim else [])
        r["seconds"] = time.time() - t0
        results.append(r)
        print(row(r, with_fim), flush=True)
    ok = [r for r in results if r["summary"]["degenerate"] <= 0.05]
    best = max(ok or results, key=lambda r: (r["summary"]["valid"], -r["summary"]["degenerate"]))
    print(f"\nmost valid{' with degenerate <= 5%' if ok else ' (none reaches degenerate <= 5%)'}: {best['name']} "
          f"{json.dumps(best['fields'])}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"set": args.set, "seeds": args.seeds, "max_tokens": args.max_tokens, "results": results}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
